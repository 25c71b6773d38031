/*
 * cairnctl_check.c — `check perf`, etcdctl's performance check: puts of
 * 256-byte keys and 1 KiB values under --prefix at the load model's rate
 * from its number of clients for its duration, then PASS/FAIL on
 * throughput (> 90% of the rate), slowest request (<= 0.5 s) and standard
 * deviation (<= 0.1 s), then the prefix is deleted (and optionally the
 * store compacted and defragmented).
 *
 * The load itself is cairn-bench's (`put --rate`), run from the directory
 * cairnctl lives in, so there is one load generator to trust.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cairnctl.h"

static struct {
	const char *load, *prefix;
	bool auto_compact, auto_defrag;
	int64_t duration;
} cp = {"s", "/etcdctl-check-perf/", false, false, 60};

static const struct ctl_flag check_perf_flags[] = {
    {"load", 0, FLAG_STR, &cp.load, "s",
     "The performance check's workload model. Accepted workloads: s(small), m(medium), "
     "l(large), xl(xLarge)"},
    {"prefix", 0, FLAG_STR, &cp.prefix, "/etcdctl-check-perf/",
     "The prefix for writing the performance check's keys."},
    {"auto-compact", 0, FLAG_BOOL, &cp.auto_compact, "false",
     "Compact storage with last revision after test is finished."},
    {"auto-defrag", 0, FLAG_BOOL, &cp.auto_defrag, "false",
     "Defragment storage after test is finished."},
    {"duration", 0, FLAG_INT, &cp.duration, "60", "Seconds of load (cairnctl only)"},
    {0},
};

static const struct {
	const char *names[2];
	int limit, clients;
} models[] = {
    {{"s", "small"}, 150, 50},
    {{"m", "medium"}, 1000, 200},
    {{"l", "large"}, 8000, 500},
    {{"xl", "xLarge"}, 15000, 1000},
};

/* A number from cairn-bench's "result:" line ("key=value ..."). */
static double field(const char *line, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

static int cmd_check_perf(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("check perf takes no arguments");
	int m = -1;
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (!strcmp(cp.load, models[i].names[0]) || !strcmp(cp.load, models[i].names[1]))
			m = (int)i;
	if (m < 0)
		ctl_die(EXIT_BAD_FEATURE, "unknown load option %s", cp.load);
	if (cp.duration < 1)
		ctl_bad_args("--duration must be >= 1");

	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = (ProtobufCBinaryData){strlen(cp.prefix), (uint8_t *)ctl_strdup(cp.prefix)};
	rr.limit = 1;
	ctl_key_range(&rr.key, &rr.range_end, true, false);
	Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)ctl_must_call(
	    "/etcdserverpb.KV/Range", &rr.base, &etcdserverpb__range_response__descriptor,
	    EXIT_ERROR);
	if (r->n_kvs > 0)
		ctl_die(EXIT_INVALID_INPUT,
		        "prefix \"%s\" has keys. Delete with etcdctl del --prefix %s first",
		        cp.prefix, cp.prefix);

	char exe[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (l <= 0)
		ctl_die(EXIT_ERROR, "cannot find cairn-bench: %s", strerror(errno));
	exe[l] = 0;
	char *slash = strrchr(exe, '/');
	if (slash)
		slash[1] = 0;
	char cmd[PATH_MAX + 1024];
	int limit = models[m].limit, clients = models[m].clients;
	snprintf(
	    cmd, sizeof(cmd),
	    "'%scairn-bench' --endpoints '%s' put --clients %d --conns %d --rate %d --total "
	    "%lld --key-size 236 --val-size 1024 --key-space-size 1000000000 --key-prefix '%s' "
	    "--quiet",
	    exe, ctl_g.endpoints[0], clients, clients < 16 ? clients : 16, limit,
	    (long long)limit * (long long)cp.duration, cp.prefix);
	FILE *p = popen(cmd, "r");
	if (!p)
		ctl_die(EXIT_ERROR, "cannot run cairn-bench: %s", strerror(errno));
	char line[1024], result[1024] = "";
	while (fgets(line, sizeof(line), p))
		if (!strncmp(line, "result:", 7))
			snprintf(result, sizeof(result), "%s", line);
	pclose(p);
	if (!*result)
		ctl_die(EXIT_ERROR, "cairn-bench gave no result");

	Etcdserverpb__DeleteRangeRequest dr = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	dr.key = rr.key;
	dr.range_end = rr.range_end;
	Etcdserverpb__DeleteRangeResponse *d = (Etcdserverpb__DeleteRangeResponse *)ctl_must_call(
	    "/etcdserverpb.KV/DeleteRange", &dr.base,
	    &etcdserverpb__delete_range_response__descriptor, EXIT_ERROR);
	if (cp.auto_compact && d->header) {
		Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
		c.revision = d->header->revision;
		ctl_must_call("/etcdserverpb.KV/Compact", &c.base,
		              &etcdserverpb__compaction_response__descriptor, EXIT_ERROR);
	}
	if (cp.auto_defrag) {
		Etcdserverpb__DefragmentRequest df = ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
		ctl_must_call("/etcdserverpb.Maintenance/Defragment", &df.base,
		              &etcdserverpb__defragment_response__descriptor, EXIT_ERROR);
	}

	bool ok = true;
	double errors = field(result, "errors"), rps = field(result, "rps");
	double slowest = field(result, "max_ms") / 1e3, sd = field(result, "stddev_ms") / 1e3;
	if (errors > 0) {
		printf("FAIL: too many errors\nFAIL: ERROR(cairn-bench) -> %.0f\n", errors);
		ok = false;
	}
	if (rps / limit <= 0.9) {
		printf("FAIL: Throughput too low: %d writes/s\n", (int)rps + 1);
		ok = false;
	} else {
		printf("PASS: Throughput is %d writes/s\n", (int)rps + 1);
	}
	if (slowest > 0.5) {
		printf("Slowest request took too long: %fs\n", slowest);
		ok = false;
	} else {
		printf("PASS: Slowest request took %fs\n", slowest);
	}
	if (sd > 0.1) {
		printf("Stddev too high: %fs\n", sd);
		ok = false;
	} else {
		printf("PASS: Stddev is %fs\n", sd);
	}
	puts(ok ? "PASS" : "FAIL");
	return ok ? 0 : EXIT_ERROR;
}

const struct ctl_cmd ctl_check_cmds[] = {
    {"check perf", cmd_check_perf, "check perf [options]",
     "Check the performance of the etcd cluster", check_perf_flags},
};
const size_t ctl_n_check_cmds = sizeof(ctl_check_cmds) / sizeof(ctl_check_cmds[0]);
