/*
 * main.c — cairnd: parse flags (etcd's names), start one member, run the
 * loop until SIGTERM/SIGINT, then stop cleanly and exit 0.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "server/member.h"

int main(int argc, char **argv)
{
	struct srv_config cfg;
	char err[512];
	if (srv_config_parse(&cfg, argc, argv, err, sizeof(err))) {
		fprintf(stderr, "cairnd: %s\n", err);
		fprintf(stderr, "Try 'cairnd --help' for more information.\n");
		return 2;
	}
	if (cfg.show_help) {
		srv_config_usage(stdout);
		srv_config_free(&cfg);
		return 0;
	}
	if (cfg.show_version) {
		printf("cairnd Version: %s\netcd API Version: %s\n", SRV_CAIRN_VERSION,
		       SRV_VERSION);
		srv_config_free(&cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	/* glibc gives freed memory back to the kernel as soon as the top of the
	 * heap holds 128 KiB free, and mmaps every block above 128 KiB afresh.
	 * The loop allocates and frees every request's state in bursts of a
	 * few thousand calls, and a watch fan-out queues tens of MiB of
	 * responses per put and frees them once written: with the defaults
	 * both paid a page fault per fresh 4 KiB each time (perf: a third of
	 * the loop's malloc time under put-1000c; 2/3 of cairnd's CPU in a
	 * 100k-watcher fan-out). Keep up to 64 MiB of freed heap for reuse and
	 * take blocks up to 4 MiB from the heap. */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	struct srv_log log;
	srv_log_init(&log, cfg.log_level, cfg.log_format, STDERR_FILENO);
	uv_loop_t loop;
	uv_loop_init(&loop);
	static struct srv_member m;
	int rv = srv_member_start(&m, &loop, &cfg, &log);
	if (rv) {
		srv_log(&log, SRV_LOG_FATAL, "cairnd failed to start", "error", cairn_strerror(rv),
		        NULL);
		return 1;
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	srv_member_close(&m);
	srv_log(&log, SRV_LOG_INFO, "cairnd stopped", NULL);
	uv_loop_close(&loop);
	srv_config_free(&cfg);
	return 0;
}
