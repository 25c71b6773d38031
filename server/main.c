/*
 * main.c — cairnd: parse flags (etcd's names), start one member, run the
 * loop until SIGTERM/SIGINT, then stop cleanly and exit 0.
 */
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
