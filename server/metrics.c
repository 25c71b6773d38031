/* metrics.c — Prometheus text rendering of struct srv_metrics; see metrics.h. */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const grpc_code_names[SRV_GRPC_CODES] = {
    "OK",       "Canceled",        "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",      "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated",
};

void srv_histogram_observe(struct srv_histogram *h, uint64_t ns)
{
	/* Bucket i holds observations ≤ 1ms·2^i; the +Inf bucket is count. */
	uint64_t bound = 1000000;
	for (int i = 0; i < SRV_HIST_BUCKETS; i++, bound *= 2)
		if (ns <= bound) {
			atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
			break;
		}
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

int srv_metrics_add_method(struct srv_metrics *m, const char *service, const char *method,
                           const char *type)
{
	if (m->n_methods == SRV_METRICS_MAX_METHODS)
		return -1;
	struct srv_method_metrics *mm = &m->methods[m->n_methods];
	memset(mm, 0, sizeof(*mm));
	mm->service = service;
	mm->method = method;
	mm->type = type;
	return m->n_methods++;
}

struct out {
	char *buf;
	size_t cap, len;
};

static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t room = o->len < o->cap ? o->cap - o->len : 0;
	int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static void metric(struct out *o, const char *name, const char *type, const char *help, double v)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void histogram(struct out *o, const char *name, const char *help,
                      const struct srv_histogram *h)
{
	outf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	uint64_t cum = 0;
	double bound = 0.001;
	for (int i = 0; i < SRV_HIST_BUCKETS; i++, bound *= 2) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		outf(o, "%s_bucket{le=\"%g\"} %llu\n", name, bound, (unsigned long long)cum);
	}
	uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
	outf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
	outf(o, "%s_sum %.9f\n", name,
	     (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
	outf(o, "%s_count %llu\n", name, (unsigned long long)count);
}

static void process_metrics(struct out *o)
{
	FILE *f = fopen("/proc/self/stat", "r");
	if (!f)
		return;
	unsigned long utime = 0, stime = 0, vsize = 0;
	long rss = 0;
	unsigned long long start = 0;
	/* Fields 14,15 utime stime; 22 starttime; 23 vsize; 24 rss. The comm
	 * field may hold spaces, so parse from the last ')'. */
	char line[1024];
	if (fgets(line, sizeof(line), f)) {
		char *p = strrchr(line, ')');
		if (p)
			sscanf(
			    p + 2,
			    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d "
			    "%*d %*d %llu %lu %ld",
			    &utime, &stime, &start, &vsize, &rss);
	}
	fclose(f);
	double hz = (double)sysconf(_SC_CLK_TCK);
	metric(o, "process_cpu_seconds_total", "counter",
	       "Total user and system CPU time spent in seconds.", (double)(utime + stime) / hz);
	metric(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	       (double)rss * (double)sysconf(_SC_PAGESIZE));
	metric(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	       (double)vsize);
	struct timespec bt;
	clock_gettime(CLOCK_REALTIME, &bt);
	struct timespec up;
	clock_gettime(CLOCK_BOOTTIME, &up);
	double boot = (double)bt.tv_sec - (double)up.tv_sec;
	metric(o, "process_start_time_seconds", "gauge",
	       "Start time of the process since unix epoch in seconds.", boot + (double)start / hz);
}

size_t srv_metrics_render(const struct srv_metrics *m, const char *version, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0};
	metric(&o, "etcd_server_has_leader", "gauge",
	       "Whether or not a leader exists. 1 is existence, 0 is not.", m->has_leader);
	metric(&o, "etcd_server_is_leader", "gauge",
	       "Whether or not this member is a leader. 1 if is, 0 otherwise.", m->is_leader);
	metric(&o, "etcd_server_leader_changes_seen_total", "counter",
	       "The number of leader changes seen.", (double)m->leader_changes_seen);
	metric(&o, "etcd_server_proposals_committed_total", "gauge",
	       "The total number of consensus proposals committed.",
	       (double)m->proposals_committed);
	metric(&o, "etcd_server_proposals_applied_total", "gauge",
	       "The total number of consensus proposals applied.", (double)m->proposals_applied);
	metric(&o, "etcd_server_proposals_pending", "gauge",
	       "The current number of pending proposals to commit.", (double)m->proposals_pending);
	metric(&o, "etcd_server_proposals_failed_total", "counter",
	       "The total number of failed proposals seen.", (double)m->proposals_failed);
	metric(&o, "etcd_server_slow_apply_total", "counter",
	       "The total number of slow apply requests (likely overloaded from slow disk).",
	       (double)m->slow_apply);
	outf(&o,
	     "# HELP etcd_server_id Server or member ID in hexadecimal format. 1 for 'server_id' "
	     "label with current ID.\n# TYPE etcd_server_id gauge\n"
	     "etcd_server_id{server_id=\"%llx\"} 1\n",
	     (unsigned long long)m->server_id);
	outf(&o,
	     "# HELP etcd_server_version Which version is running. 1 for 'server_version' label "
	     "with current version.\n# TYPE etcd_server_version gauge\n"
	     "etcd_server_version{server_version=\"%s\"} 1\n",
	     version);
	metric(&o, "etcd_mvcc_db_total_size_in_bytes", "gauge",
	       "Total size of the underlying database physically allocated in bytes.",
	       (double)m->db_total_size_bytes);
	metric(&o, "etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
	       "Total size of the underlying database logically in use in bytes.",
	       (double)m->db_total_size_in_use_bytes);
	metric(&o, "etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.",
	       (double)m->keys_total);
	metric(&o, "etcd_debugging_mvcc_current_revision", "gauge",
	       "The current revision of store.", (double)m->current_revision);
	metric(&o, "etcd_debugging_mvcc_compact_revision", "gauge",
	       "The revision of the last compaction in store.", (double)m->compact_revision);
	metric(&o, "etcd_debugging_mvcc_watch_stream_total", "gauge",
	       "Total number of watch streams.", (double)m->watch_streams);
	metric(&o, "etcd_debugging_mvcc_watcher_total", "gauge", "Total number of watchers.",
	       (double)m->watchers);
	metric(&o, "etcd_debugging_mvcc_slow_watcher_total", "gauge",
	       "Total number of unsynced slow watchers.", (double)m->slow_watchers);
	metric(&o, "etcd_mvcc_put_total", "counter", "Total number of puts seen by this member.",
	       (double)m->put_total);
	metric(&o, "etcd_mvcc_delete_total", "counter",
	       "Total number of deletes seen by this member.", (double)m->delete_total);
	metric(&o, "etcd_mvcc_range_total", "counter",
	       "Total number of ranges seen by this member.", (double)m->range_total);
	metric(&o, "etcd_mvcc_txn_total", "counter", "Total number of txns seen by this member.",
	       (double)m->txn_total);
	histogram(&o, "etcd_disk_wal_fsync_duration_seconds",
	          "The latency distributions of fsync called by WAL.", &m->wal_fsync);
	histogram(&o, "etcd_disk_backend_commit_duration_seconds",
	          "The latency distributions of commit called by backend.", &m->backend_commit);
	metric(&o, "etcd_network_client_grpc_received_bytes_total", "counter",
	       "The total number of bytes received from grpc clients.",
	       (double)m->grpc_received_bytes);
	metric(&o, "etcd_network_client_grpc_sent_bytes_total", "counter",
	       "The total number of bytes sent to grpc clients.", (double)m->grpc_sent_bytes);
	outf(&o, "# HELP grpc_server_started_total Total number of RPCs started on the server.\n"
	         "# TYPE grpc_server_started_total counter\n");
	for (int i = 0; i < m->n_methods; i++) {
		const struct srv_method_metrics *mm = &m->methods[i];
		outf(&o,
		     "grpc_server_started_total{grpc_method=\"%s\",grpc_service=\"%s\","
		     "grpc_type=\"%s\"} %llu\n",
		     mm->method, mm->service, mm->type, (unsigned long long)mm->started);
	}
	outf(&o, "# HELP grpc_server_handled_total Total number of RPCs completed on the server, "
	         "regardless of success or failure.\n# TYPE grpc_server_handled_total counter\n");
	for (int i = 0; i < m->n_methods; i++) {
		const struct srv_method_metrics *mm = &m->methods[i];
		for (int c = 0; c < SRV_GRPC_CODES; c++) {
			if (!mm->handled[c] && c != 0)
				continue;
			outf(&o,
			     "grpc_server_handled_total{grpc_code=\"%s\",grpc_method=\"%s\","
			     "grpc_service=\"%s\",grpc_type=\"%s\"} %llu\n",
			     grpc_code_names[c], mm->method, mm->service, mm->type,
			     (unsigned long long)mm->handled[c]);
		}
	}
	process_metrics(&o);
	return o.len;
}
