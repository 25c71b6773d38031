/* test_server_config.c — cairnd's flags follow etcd's names and defaults, and
 * ids are derived as etcd derives them (checked against etcd's well-known ids
 * for a default single member). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "server/config.h"
#include "server/ids.h"

static int parse(struct srv_config *cfg, char *err, size_t n, const char **args)
{
	char *argv[32] = {"cairnd"};
	int argc = 1;
	for (; args[argc - 1]; argc++)
		argv[argc] = (char *)args[argc - 1];
	return srv_config_parse(cfg, argc, argv, err, n);
}

static void test_defaults_match_etcd(void **state)
{
	(void)state;
	struct srv_config c;
	char err[256];
	const char *args[] = {NULL};
	assert_int_equal(parse(&c, err, sizeof(err), args), 0);
	assert_string_equal(c.name, "default");
	assert_string_equal(c.data_dir, "default.etcd");
	assert_string_equal(c.listen_client_urls.url[0], "http://localhost:2379");
	assert_int_equal(c.n_members, 1);
	assert_string_equal(c.members[0].peer_urls.url[0], "http://localhost:2380");
	assert_int_equal(c.max_request_bytes, 1572864);
	assert_int_equal(c.quota_backend_bytes, 2LL << 30);
	assert_int_equal(c.election_timeout_ms, 1000);
	assert_int_equal(c.watch_progress_notify_interval_ms, 600000);
	assert_false(c.initial_cluster_existing);
	srv_config_free(&c);
}

static void test_flags_forms_and_cluster(void **state)
{
	(void)state;
	struct srv_config c;
	char err[256];
	const char *args[] = {
	    "--name=m2",
	    "-data-dir",
	    "/tmp/x",
	    "--initial-cluster",
	    "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2480,m3=http://127.0.0.1:2580",
	    "--initial-advertise-peer-urls=http://127.0.0.1:2480",
	    "--initial-cluster-state",
	    "existing",
	    "--experimental-watch-progress-notify-interval=1.5s",
	    "--unsafe-no-fsync",
	    "--log-format=json",
	    NULL};
	assert_int_equal(parse(&c, err, sizeof(err), args), 0);
	assert_string_equal(c.name, "m2");
	assert_string_equal(c.data_dir, "/tmp/x");
	assert_int_equal(c.n_members, 3);
	assert_string_equal(c.members[2].name, "m3");
	assert_true(c.initial_cluster_existing);
	assert_int_equal(c.watch_progress_notify_interval_ms, 1500);
	assert_true(c.unsafe_no_fsync);
	assert_int_equal(c.log_format, SRV_LOG_JSON);
	srv_config_free(&c);
}

static void test_bad_flags_are_clear_errors(void **state)
{
	(void)state;
	struct srv_config c;
	char err[256];
	const char *a1[] = {"--no-such-flag=1", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a1), CAIRN_ECONFIG);
	assert_non_null(strstr(err, "flag provided but not defined: -no-such-flag"));
	const char *a2[] = {"--initial-cluster-state=maybe", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a2), CAIRN_ECONFIG);
	assert_non_null(strstr(err, "initial-cluster-state"));
	const char *a3[] = {"--name=x", "--initial-cluster=y=http://127.0.0.1:1", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a3), CAIRN_ECONFIG);
	assert_non_null(strstr(err, "couldn't find local name \"x\""));
	const char *a4[] = {"--election-timeout=100", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a4), CAIRN_ECONFIG);
	const char *a5[] = {"--listen-client-urls=ftp//nope", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a5), CAIRN_ECONFIG);
	const char *a6[] = {"--max-txn-ops", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), a6), CAIRN_ECONFIG);
	assert_non_null(strstr(err, "flag needs an argument"));
}

static void test_environment(void **state)
{
	(void)state;
	struct srv_config c;
	char err[256];
	setenv("ETCD_NAME", "fromenv", 1);
	setenv("ETCD_INITIAL_CLUSTER", "fromenv=http://localhost:2380", 1);
	const char *args[] = {NULL};
	assert_int_equal(parse(&c, err, sizeof(err), args), 0);
	assert_string_equal(c.name, "fromenv");
	srv_config_free(&c);
	const char *args2[] = {"--name=cli", "--initial-cluster=cli=http://localhost:2380", NULL};
	assert_int_equal(parse(&c, err, sizeof(err), args2), 0);
	assert_string_equal(c.name, "cli");
	srv_config_free(&c);
	unsetenv("ETCD_NAME");
	unsetenv("ETCD_INITIAL_CLUSTER");
}

static void test_durations_and_urls(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(srv_parse_duration_ms("1h30m", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(srv_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_not_equal(srv_parse_duration_ms("10x", &ms), 0);
	char host[64];
	int port;
	assert_int_equal(srv_url_split("http://[::1]:2379", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 2379);
	assert_int_not_equal(srv_url_split("https://a:1", host, sizeof(host), &port), 0);
}

static void test_ids_match_etcd(void **state)
{
	(void)state;
	/* etcd's default member (peer http://localhost:2380, token etcd-cluster)
	 * is 8e9e05c52164694d in cluster cdf818194e3a8c32. */
	const char *urls[] = {"http://localhost:2380"};
	uint64_t m = srv_member_id(urls, 1, "etcd-cluster", -1);
	assert_true(m == 0x8e9e05c52164694dULL);
	assert_true(srv_cluster_id(&m, 1) == 0xcdf818194e3a8c32ULL);
	uint8_t d[20];
	srv_sha1("abc", 3, d);
	assert_int_equal(d[0], 0xa9);
	assert_int_equal(d[19], 0x9d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults_match_etcd),
	    cmocka_unit_test(test_flags_forms_and_cluster),
	    cmocka_unit_test(test_bad_flags_are_clear_errors),
	    cmocka_unit_test(test_environment),
	    cmocka_unit_test(test_durations_and_urls),
	    cmocka_unit_test(test_ids_match_etcd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
