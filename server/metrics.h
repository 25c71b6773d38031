/*
 * metrics.h — cairnd's Prometheus metrics under etcd's names, so that etcd
 * dashboards and alerts work unchanged.
 *
 * The member owns one struct srv_metrics. Counters and gauges are plain
 * fields updated by the loop thread. Histograms are updated by the thread that
 * measures (the storage thread for fsync and commit durations) with relaxed
 * atomics, and rendered by the loop thread; a render may see a histogram one
 * observation behind, as Prometheus clients may.
 */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_HIST_BUCKETS 14 /* etcd: ExponentialBuckets(0.001, 2, 14) */

struct srv_histogram {
	_Atomic uint64_t bucket[SRV_HIST_BUCKETS]; /* not cumulative; cumulated when rendered */
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
};

void srv_histogram_observe(struct srv_histogram *h, uint64_t ns);

/* gRPC method counters, indexed by the server's method table. */
#define SRV_METRICS_MAX_METHODS 64
#define SRV_GRPC_CODES          17

struct srv_method_metrics {
	const char *service; /* "etcdserverpb.KV" */
	const char *method;  /* "Range" */
	const char *type;    /* "unary" or "bidi_stream" */
	uint64_t started;
	uint64_t handled[SRV_GRPC_CODES];
};

struct srv_metrics {
	/* etcd_server_* */
	int has_leader;
	int is_leader;
	uint64_t leader_changes_seen;
	uint64_t proposals_committed;
	uint64_t proposals_applied;
	int64_t proposals_pending;
	uint64_t proposals_failed;
	uint64_t slow_apply;
	int64_t server_id;
	/* etcd_mvcc_* / etcd_debugging_mvcc_* (refreshed before render) */
	int64_t db_total_size_bytes;
	int64_t db_total_size_in_use_bytes;
	int64_t keys_total;
	int64_t current_revision;
	int64_t compact_revision;
	uint64_t watch_streams;
	uint64_t watchers;
	uint64_t slow_watchers;
	uint64_t put_total;
	uint64_t delete_total;
	uint64_t range_total;
	uint64_t txn_total;
	/* disk */
	struct srv_histogram wal_fsync;
	struct srv_histogram backend_commit;
	/* grpc */
	int n_methods;
	struct srv_method_metrics methods[SRV_METRICS_MAX_METHODS];
	uint64_t grpc_received_bytes;
	uint64_t grpc_sent_bytes;
};

/* Adds a method row; returns its index or -1 when the table is full. */
int srv_metrics_add_method(struct srv_metrics *m, const char *service, const char *method,
                           const char *type);

/* Renders the Prometheus text exposition (version 0.0.4) into buf. Returns the
 * length it needed; if that is ≥ cap, the output was truncated and the
 * caller retries with a bigger buffer. version is reported in
 * etcd_server_version{server_version=...}; process figures come from /proc. */
size_t srv_metrics_render(const struct srv_metrics *m, const char *version, char *buf, size_t cap);

#endif
