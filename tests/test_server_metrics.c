/* test_server_metrics.c — /metrics renders etcd's metric names in Prometheus
 * text format, with cumulative histogram buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"

static void test_render_names_and_histograms(void **state)
{
	(void)state;
	static struct srv_metrics m;
	m.has_leader = 1;
	m.leader_changes_seen = 2;
	m.server_id = 0x8e9e05c52164694dLL;
	srv_histogram_observe(&m.wal_fsync, 500000);         /* 0.5 ms → le 0.001 */
	srv_histogram_observe(&m.wal_fsync, 3000000);        /* 3 ms → le 0.004 */
	srv_histogram_observe(&m.wal_fsync, 20000000000ULL); /* 20 s → only +Inf */
	int kv = srv_metrics_add_method(&m, "etcdserverpb.KV", "Range", "unary");
	assert_int_equal(kv, 0);
	m.methods[kv].started = 5;
	m.methods[kv].handled[0] = 4;
	m.methods[kv].handled[11] = 1;
	char buf[65536];
	size_t n = srv_metrics_render(&m, "3.5.0", buf, sizeof(buf));
	assert_true(n < sizeof(buf));
	assert_non_null(strstr(buf, "\netcd_server_has_leader 1\n"));
	assert_non_null(strstr(buf, "\netcd_server_leader_changes_seen_total 2\n"));
	assert_non_null(strstr(buf, "etcd_server_id{server_id=\"8e9e05c52164694d\"} 1"));
	assert_non_null(
	    strstr(buf, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n"));
	assert_non_null(
	    strstr(buf, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1\n"));
	assert_non_null(
	    strstr(buf, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 2\n"));
	assert_non_null(
	    strstr(buf, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 2\n"));
	assert_non_null(
	    strstr(buf, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(buf, "etcd_disk_wal_fsync_duration_seconds_count 3\n"));
	assert_non_null(strstr(buf, "grpc_server_started_total{grpc_method=\"Range\","
	                            "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 5"));
	assert_non_null(strstr(buf, "grpc_server_handled_total{grpc_code=\"OutOfRange\","
	                            "grpc_method=\"Range\""));
	assert_non_null(strstr(buf, "\nprocess_resident_memory_bytes "));
	/* Truncation reports the size needed. */
	char small[64];
	size_t need = srv_metrics_render(&m, "3.5.0", small, sizeof(small));
	assert_true(need > sizeof(small)); /* process figures may change between renders */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render_names_and_histograms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
