/*
 * cairn_bench.c — cairn-bench, a load generator for the etcd v3 API
 * (cairnd or etcd), after etcd's tools/benchmark: the same flags and the
 * same report (summary, latency histogram, percentiles), plus p99.9 and,
 * when the server runs on this machine, its CPU seconds and RSS from /proc
 * so the cost per operation of two servers can be compared.
 *
 * HOW IT WORKS
 *
 * One libuv loop drives everything. --conns rpc_clients (one HTTP/2
 * connection each) carry --clients logical clients, assigned round robin.
 * A client has at most one request in flight: when it completes, the
 * latency (issue to completion) is recorded and the client takes the next
 * request number from a shared counter until --total is reached. With
 * --rate, request i is not issued before start + i/rate (open-loop pacing,
 * so a slow server shows as latency, not as a lower offered rate).
 * Latencies are kept in one array (8 bytes per request) and sorted once
 * at the end: exact percentiles, no bucket error.
 *
 * Subcommands: put, range, txn-put, watch (watch creation), watch-latency
 * (put to event delivery) and lease-keepalive.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proto/rpc.pb-c.h"
#include "rpc/rpc.h"

/* ------------------------------------------------------------- options */

static struct {
	char *endpoints;
	int64_t conns, clients, total, rate;
	int64_t key_size, val_size, key_space, server_pid;
	bool sequential, watch_prefix;
	const char *consistency;
	int64_t streams, watchers_per_stream, put_total, put_rate, txn_ops;
	const char *cmd;
	const char *range_key, *range_end;
	const char *dir;
	const char *key_prefix;
	char **eps;
	size_t n_eps;
	bool quiet;
} o = {
    .conns = 1,
    .clients = 1,
    .total = 10000,
    .key_size = 8,
    .val_size = 8,
    .key_space = 1,
    .consistency = "l",
    .streams = 10,
    .watchers_per_stream = 10,
    .put_total = 1000,
    .put_rate = 100,
    .txn_ops = 1,
};

static void usage(void)
{
	printf("Usage: cairn-bench [flags] <put|range KEY [END]|txn-put|watch|watch-latency|"
	       "lease-keepalive|fsync --dir DIR> [flags]\n\n"
	       "  --endpoints LIST        comma-separated endpoints (default 127.0.0.1:2379)\n"
	       "  --conns N               gRPC connections (default 1)\n"
	       "  --clients N             concurrent clients (default 1)\n"
	       "  --total N               total requests (default 10000)\n"
	       "  --rate N                requests per second, 0 = as fast as possible\n"
	       "  --key-size N            key bytes (default 8)\n"
	       "  --val-size N            value bytes (default 8)\n"
	       "  --key-space-size N      distinct keys (default 1)\n"
	       "  --sequential-keys       keys in order instead of random\n"
	       "  --key-prefix P          put/txn-put: keys are P + the key (default none)\n"
	       "  --consistency l|s       range: linearizable or serializable\n"
	       "  --txn-ops N             txn-put: puts per txn (default 1)\n"
	       "  --streams N             watch*: watch streams (default 10)\n"
	       "  --watchers-per-stream N watch*: watchers per stream (default 10)\n"
	       "  --put-total N           watch-latency: puts (default 1000)\n"
	       "  --put-rate N            watch-latency: puts per second (default 100)\n"
	       "  --watch-prefix          watch-latency: watch the prefix watchlatency/ and\n"
	       "                          put distinct keys under it (default: one key)\n"
	       "  --server-pid PID        server to measure (default: found by port)\n"
	       "  --dir DIR               fsync: directory on the filesystem to test\n"
	       "  --quiet                 summary line only\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct {
		const char *name;
		int64_t *ip;
	} ints[] = {
	    {"conns", &o.conns},
	    {"clients", &o.clients},
	    {"total", &o.total},
	    {"rate", &o.rate},
	    {"key-size", &o.key_size},
	    {"val-size", &o.val_size},
	    {"key-space-size", &o.key_space},
	    {"server-pid", &o.server_pid},
	    {"streams", &o.streams},
	    {"watchers-per-stream", &o.watchers_per_stream},
	    {"put-total", &o.put_total},
	    {"put-rate", &o.put_rate},
	    {"txn-ops", &o.txn_ops},
	};
	o.endpoints = "127.0.0.1:2379";
	const char *pos[3];
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			if (npos < 3)
				pos[npos++] = a;
			continue;
		}
		char *name = a + 2, *val = strchr(name, '=');
		size_t len = val ? (size_t)(val - name) : strlen(name);
		if (val)
			val++;
#define IS(s) (len == strlen(s) && !strncmp(name, s, len))
		if (IS("help")) {
			usage();
			exit(0);
		}
		if (IS("sequential-keys")) {
			o.sequential = !val || !strcmp(val, "true");
			continue;
		}
		if (IS("quiet")) {
			o.quiet = true;
			continue;
		}
		if (IS("watch-prefix")) {
			o.watch_prefix = true;
			continue;
		}
		if (!val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "flag needs an argument: %s\n", a);
				return -1;
			}
			val = argv[++i];
		}
		if (IS("endpoints")) {
			o.endpoints = val;
			continue;
		}
		if (IS("key-prefix")) {
			o.key_prefix = val;
			continue;
		}
		if (IS("dir")) {
			o.dir = val;
			continue;
		}
		if (IS("consistency")) {
			o.consistency = val;
			continue;
		}
		bool found = false;
		for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
			if (IS(ints[k].name)) {
				char *end;
				*ints[k].ip = strtoll(val, &end, 10);
				if (*end || !*val) {
					fprintf(stderr, "bad value for --%s: %s\n", ints[k].name,
					        val);
					return -1;
				}
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "unknown flag: %s\n", a);
			return -1;
		}
#undef IS
	}
	if (npos < 1) {
		usage();
		return -1;
	}
	o.cmd = pos[0];
	if (!strcmp(o.cmd, "range")) {
		if (npos < 2) {
			fprintf(stderr, "range needs a key\n");
			return -1;
		}
		o.range_key = pos[1];
		o.range_end = npos > 2 ? pos[2] : NULL;
	}
	if (o.conns < 1 || o.clients < 1 || o.total < 1 || o.key_space < 1 || o.key_size < 1) {
		fprintf(stderr,
		        "--conns, --clients, --total, --key-size, --key-space-size must be >= "
		        "1\n");
		return -1;
	}
	if (strcmp(o.consistency, "l") && strcmp(o.consistency, "s")) {
		fprintf(stderr, "--consistency must be l or s\n");
		return -1;
	}
	char *eps = strdup(o.endpoints);
	o.eps = calloc(64, sizeof(char *));
	for (char *t = strtok(eps, ","); t && o.n_eps < 64; t = strtok(NULL, ","))
		o.eps[o.n_eps++] = t;
	return 0;
}

/* --------------------------------------------------------- /proc probes */

/* Finds the pid listening on TCP `port` (via /proc/net/tcp{,6} inodes). */
static long find_pid_by_port(int port)
{
	char inodes[16][32];
	int n = 0;
	const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		if (!fp)
			continue;
		char line[512];
		if (!fgets(line, sizeof(line), fp)) {
			fclose(fp);
			continue;
		}
		while (fgets(line, sizeof(line), fp) && n < 16) {
			char local[128], rem[128], st[8];
			unsigned long inode;
			if (sscanf(line, "%*d: %127s %127s %7s %*s %*s %*s %*s %*s %lu", local, rem,
			           st, &inode) != 4)
				continue;
			char *colon = strrchr(local, ':');
			if (!colon || strcmp(st, "0A") != 0)
				continue;
			if ((int)strtol(colon + 1, NULL, 16) == port)
				snprintf(inodes[n++], sizeof(inodes[0]), "socket:[%lu]", inode);
		}
		fclose(fp);
	}
	if (n == 0)
		return 0;
	DIR *proc = opendir("/proc");
	if (!proc)
		return 0;
	struct dirent *de;
	long found = 0;
	while (!found && (de = readdir(proc))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		if (!fds)
			continue;
		struct dirent *fe;
		while (!found && (fe = readdir(fds))) {
			char lp[320], target[64];
			snprintf(lp, sizeof(lp), "%s/%s", path, fe->d_name);
			ssize_t l = readlink(lp, target, sizeof(target) - 1);
			if (l <= 0)
				continue;
			target[l] = 0;
			for (int i = 0; i < n; i++)
				if (!strcmp(target, inodes[i]))
					found = pid;
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

struct proc_sample {
	bool ok;
	double cpu_s; /* user + system */
	double user_s, sys_s;
	uint64_t rss_kb, hwm_kb;
};

static void proc_sample(long pid, struct proc_sample *s)
{
	memset(s, 0, sizeof(*s));
	if (pid <= 0)
		return;
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* comm may contain spaces */
	if (!p)
		return;
	unsigned long long ut, st;
	/* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	 * utime(14) stime(15) */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return;
	double hz = (double)sysconf(_SC_CLK_TCK);
	s->user_s = (double)ut / hz;
	s->sys_s = (double)st / hz;
	s->cpu_s = s->user_s + s->sys_s;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
			s->rss_kb = v;
		else if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
			s->hwm_kb = v;
	}
	fclose(f);
	s->ok = true;
}

/* -------------------------------------------------------------- state */

struct client {
	int idx;
	struct rpc_client *conn;
	uv_timer_t timer;
	uint64_t issued_at;
	struct rpc_client_stream *stream; /* lease-keepalive */
	int64_t lease;
};

static uv_loop_t *loop;
static struct rpc_client **conns;
static struct client *clients;
static uint64_t *lat_ns;
static int64_t next_req, completed, errors, active;
static uint64_t t_start, t_end;
static char first_error[256];
static uint8_t *key_buf, *val_buf;
static uint32_t rng = 2463534242u;

static uint32_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static size_t key_prefix_len;

/* The key of request i: its number in decimal, zero-padded to --key-size
 * (the low digits kept when the number is longer), after --key-prefix
 * (which the caller copied into the start of `out`). */
static void make_key(int64_t i, uint8_t *out)
{
	uint64_t k = o.sequential
	                 ? (uint64_t)i % (uint64_t)o.key_space
	                 : ((uint64_t)xorshift() << 32 | xorshift()) % (uint64_t)o.key_space;
	char tmp[300];
	int l = snprintf(tmp, sizeof(tmp), "%0*" PRIu64, (int)o.key_size, k);
	memcpy(out + key_prefix_len, tmp + (l - (int)o.key_size), (size_t)o.key_size);
}

static void record(uint64_t ns, int status, const char *message)
{
	if (status != RPC_OK) {
		errors++;
		if (!first_error[0])
			snprintf(first_error, sizeof(first_error), "status %d: %s", status,
			         message);
	} else {
		lat_ns[completed] = ns;
		completed++;
	}
}

static void issue(struct client *c);

static void timer_cb(uv_timer_t *t)
{
	issue(t->data);
}

static void unary_done(int grpc_status, const char *message, const uint8_t *resp, size_t len,
                       void *arg)
{
	(void)resp;
	(void)len;
	struct client *c = arg;
	record(uv_hrtime() - c->issued_at, grpc_status, message);
	issue(c);
}

static const char *op_path;

/* Packs request i of the current subcommand into *buf (malloc'd once). */
static size_t pack_request(int64_t i, uint8_t **buf, size_t *cap)
{
	ProtobufCMessage *m;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp ops[64], *opp[64];
	Etcdserverpb__PutRequest puts[64];
	uint8_t keys[64][512];
	if (!strcmp(o.cmd, "put")) {
		make_key(i, key_buf);
		put.key = (ProtobufCBinaryData){key_prefix_len + (size_t)o.key_size, key_buf};
		put.value = (ProtobufCBinaryData){(size_t)o.val_size, val_buf};
		m = &put.base;
	} else if (!strcmp(o.cmd, "range")) {
		rr.key = (ProtobufCBinaryData){strlen(o.range_key), (uint8_t *)o.range_key};
		if (o.range_end)
			rr.range_end =
			    (ProtobufCBinaryData){strlen(o.range_end), (uint8_t *)o.range_end};
		rr.serializable = !strcmp(o.consistency, "s");
		m = &rr.base;
	} else { /* txn-put */
		size_t n = (size_t)o.txn_ops;
		for (size_t k = 0; k < n; k++) {
			etcdserverpb__request_op__init(&ops[k]);
			etcdserverpb__put_request__init(&puts[k]);
			memcpy(keys[k], key_buf, key_prefix_len);
			make_key(i * o.txn_ops + (int64_t)k, keys[k]);
			puts[k].key =
			    (ProtobufCBinaryData){key_prefix_len + (size_t)o.key_size, keys[k]};
			puts[k].value = (ProtobufCBinaryData){(size_t)o.val_size, val_buf};
			ops[k].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
			ops[k].request_put = &puts[k];
			opp[k] = &ops[k];
		}
		txn.success = opp;
		txn.n_success = n;
		m = &txn.base;
	}
	size_t need = protobuf_c_message_get_packed_size(m);
	if (need > *cap) {
		*buf = realloc(*buf, need);
		*cap = need;
	}
	return protobuf_c_message_pack(m, *buf);
}

static void issue(struct client *c)
{
	static uint8_t *buf;
	static size_t cap;
	if (next_req >= o.total) {
		if (--active == 0)
			t_end = uv_hrtime();
		return;
	}
	if (o.rate > 0) {
		uint64_t due = t_start + (uint64_t)((double)next_req * 1e9 / (double)o.rate);
		uint64_t now = uv_hrtime();
		if (due > now + 500000) {
			uv_timer_start(&c->timer, timer_cb, (due - now) / 1000000, 0);
			return;
		}
	}
	int64_t i = next_req++;
	size_t len = pack_request(i, &buf, &cap);
	c->issued_at = uv_hrtime();
	if (rpc_client_call(c->conn, op_path, buf, len, 0, unary_done, c) != 0)
		unary_done(RPC_UNAVAILABLE, "call failed", NULL, 0, c);
}

/* ------------------------------------------------------ lease-keepalive */

static void ka_send(struct client *c)
{
	if (next_req >= o.total) {
		rpc_client_stream_half_close(c->stream);
		return;
	}
	next_req++;
	Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	req.id = c->lease;
	c->issued_at = uv_hrtime();
	rpc_client_stream_send_msg(c->stream, &req.base);
}

static void ka_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	(void)msg;
	(void)len;
	struct client *c = rpc_client_stream_data(s);
	record(uv_hrtime() - c->issued_at, RPC_OK, "");
	ka_send(c);
}

static void ka_close(struct rpc_client_stream *s, int st, const char *message)
{
	struct client *c = rpc_client_stream_data(s);
	if (st != RPC_OK && st != RPC_CANCELLED)
		record(0, st, message);
	c->stream = NULL;
	if (--active == 0)
		t_end = uv_hrtime();
}

static void ka_granted(int st, const char *message, const uint8_t *resp, size_t len, void *arg)
{
	struct client *c = arg;
	if (st != RPC_OK) {
		record(0, st, message);
		if (--active == 0)
			t_end = uv_hrtime();
		return;
	}
	Etcdserverpb__LeaseGrantResponse *r =
	    etcdserverpb__lease_grant_response__unpack(NULL, len, resp);
	c->lease = r ? r->id : 0;
	if (r)
		etcdserverpb__lease_grant_response__free_unpacked(r, NULL);
	struct rpc_client_stream_cbs cbs = {.on_message = ka_msg, .on_close = ka_close};
	if (rpc_client_stream_open(c->conn, "/etcdserverpb.Lease/LeaseKeepAlive", &cbs, c,
	                           &c->stream) != 0) {
		record(0, RPC_UNAVAILABLE, "stream open failed");
		if (--active == 0)
			t_end = uv_hrtime();
		return;
	}
	ka_send(c);
}

/* ---------------------------------------------------- watch benchmarks */

/* watch-latency's key, or with --watch-prefix the prefix (its range end:
 * '/' + 1) under which each put writes a new key. */
#define WL_KEY        "watchlatency"
#define WL_PREFIX     "watchlatency/"
#define WL_PREFIX_END "watchlatency0"

struct wstream {
	struct rpc_client_stream *s;
	int64_t pending_creates;
	uint64_t *create_sent; /* per watcher, for watch creation latency */
	int64_t created;
};

static struct wstream *wstreams;
static int64_t watchers_total, watchers_created, events_expected, events_seen;
static uint64_t *put_sent_at; /* watch-latency: per revision offset */
static uint64_t *put_all_ns;  /* watch-latency: put to its last event, per put */
static int64_t base_rev;
static bool measuring_watch_create;

static void wl_put_next(void);

/* A WatchResponse read in place: only what the benchmark needs. With
 * 100,000 watchers one put makes 100,000 responses, and unpacking each
 * (allocating the header, the event, its key-value) made this client's one
 * thread the bottleneck of the measure. */
struct wresp {
	bool created;
	size_t n_events;
	int64_t mod_rev[64]; /* of the first events; the rest are only counted */
};

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* Steps over one field; for a length-delimited one *sub and *sub_end frame it. */
static bool pb_field(const uint8_t **p, const uint8_t *end, uint32_t *field, uint64_t *v,
                     const uint8_t **sub, const uint8_t **sub_end)
{
	uint64_t key;
	if (!pb_varint(p, end, &key))
		return false;
	*field = (uint32_t)(key >> 3);
	switch (key & 7) {
	case 0:
		return pb_varint(p, end, v);
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		return true;
	case 2:
		if (!pb_varint(p, end, v) || *v > (uint64_t)(end - *p))
			return false;
		*sub = *p;
		*sub_end = *p + *v;
		*p += *v;
		return true;
	case 5:
		if (end - *p < 4)
			return false;
		*p += 4;
		return true;
	}
	return false;
}

/* mvccpb.Event.kv (2) -> KeyValue.mod_revision (3); 0 when absent. */
static int64_t event_mod_rev(const uint8_t *p, const uint8_t *end)
{
	uint32_t f;
	uint64_t v;
	const uint8_t *sp, *se;
	while (p < end && pb_field(&p, end, &f, &v, &sp, &se)) {
		if (f != 2)
			continue;
		const uint8_t *q = sp, *kv_end = se;
		while (q < kv_end && pb_field(&q, kv_end, &f, &v, &sp, &se))
			if (f == 3)
				return (int64_t)v;
		return 0;
	}
	return 0;
}

static bool parse_wresp(const uint8_t *p, size_t len, struct wresp *r)
{
	const uint8_t *end = p + len, *sp, *se;
	uint32_t f;
	uint64_t v;
	memset(r, 0, sizeof(*r));
	while (p < end) {
		if (!pb_field(&p, end, &f, &v, &sp, &se))
			return false;
		if (f == 3) /* created */
			r->created = v != 0;
		else if (f == 11) { /* events */
			if (r->n_events < sizeof(r->mod_rev) / sizeof(r->mod_rev[0]))
				r->mod_rev[r->n_events] = event_mod_rev(sp, se);
			r->n_events++;
		}
	}
	return true;
}

static void w_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	struct wstream *w = rpc_client_stream_data(s);
	struct wresp r;
	if (!parse_wresp(msg, len, &r))
		return;
	uint64_t now = uv_hrtime();
	if (r.created) {
		if (measuring_watch_create)
			record(now - w->create_sent[w->created], RPC_OK, "");
		w->created++;
		watchers_created++;
		if (watchers_created == watchers_total) {
			if (measuring_watch_create)
				t_end = now;
			else
				wl_put_next();
		}
	}
	for (size_t i = 0; i < r.n_events && put_sent_at; i++) {
		if (i < sizeof(r.mod_rev) / sizeof(r.mod_rev[0])) {
			int64_t k = r.mod_rev[i] - base_rev - 1;
			if (k >= 0 && k < o.put_total) {
				record(now - put_sent_at[k], RPC_OK, "");
				if (now - put_sent_at[k] > put_all_ns[k])
					put_all_ns[k] = now - put_sent_at[k];
			}
		}
		events_seen++;
	}
	if (events_expected && events_seen >= events_expected)
		t_end = now;
}

static void w_close(struct rpc_client_stream *s, int st, const char *message)
{
	(void)s;
	if (st != RPC_OK && st != RPC_CANCELLED)
		record(0, st, message);
}

static void open_watchers(const char *key)
{
	wstreams = calloc((size_t)o.streams, sizeof(*wstreams));
	watchers_total = o.streams * o.watchers_per_stream;
	for (int64_t i = 0; i < o.streams; i++) {
		struct wstream *w = &wstreams[i];
		w->create_sent = calloc((size_t)o.watchers_per_stream, sizeof(uint64_t));
		struct rpc_client_stream_cbs cbs = {.on_message = w_msg, .on_close = w_close};
		if (rpc_client_stream_open(conns[i % o.conns], "/etcdserverpb.Watch/Watch", &cbs, w,
		                           &w->s) != 0) {
			fprintf(stderr, "cannot open watch stream\n");
			exit(1);
		}
		for (int64_t j = 0; j < o.watchers_per_stream; j++) {
			Etcdserverpb__WatchCreateRequest cr =
			    ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
			char kb[64];
			if (key) {
				cr.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
				if (o.watch_prefix)
					cr.range_end = (ProtobufCBinaryData){
					    strlen(WL_PREFIX_END), (uint8_t *)WL_PREFIX_END};
			} else {
				snprintf(kb, sizeof(kb), "watch-%" PRId64,
				         (i * o.watchers_per_stream + j) % o.key_space);
				cr.key = (ProtobufCBinaryData){strlen(kb), (uint8_t *)kb};
			}
			Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
			req.request_union_case =
			    ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
			req.create_request = &cr;
			w->create_sent[j] = uv_hrtime();
			rpc_client_stream_send_msg(w->s, &req.base);
		}
	}
}

static int64_t wl_next;
static uv_timer_t wl_timer;

static void wl_put_done(int st, const char *message, const uint8_t *resp, size_t len, void *arg)
{
	(void)arg;
	if (st != RPC_OK) {
		record(0, st, message);
		return;
	}
	Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, resp);
	if (r) {
		/* the first put fixes the revision base */
		if (base_rev == 0 && r->header)
			base_rev = r->header->revision - 1;
		etcdserverpb__put_response__free_unpacked(r, NULL);
	}
}

static void wl_tick(uv_timer_t *t)
{
	(void)t;
	wl_put_next();
}

static void wl_put_next(void)
{
	if (wl_next >= o.put_total)
		return;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	char kb[64];
	if (o.watch_prefix)
		snprintf(kb, sizeof(kb), WL_PREFIX "%08" PRId64, wl_next);
	else
		snprintf(kb, sizeof(kb), WL_KEY);
	put.key = (ProtobufCBinaryData){strlen(kb), (uint8_t *)kb};
	put.value = (ProtobufCBinaryData){(size_t)o.val_size, val_buf};
	put_sent_at[wl_next++] = uv_hrtime();
	rpc_client_call_msg(conns[0], "/etcdserverpb.KV/Put", &put.base, 0, wl_put_done, NULL);
	uint64_t every = o.put_rate > 0 ? (uint64_t)(1000 / o.put_rate) : 0;
	uv_timer_start(&wl_timer, wl_tick, every ? every : 1, 0);
}

/* Reads the current revision (watch-latency must know which revisions are
 * its puts: base_rev + 1 .. base_rev + put_total, nobody else writing). */
static void rev_done(int st, const char *message, const uint8_t *resp, size_t len, void *arg)
{
	(void)message;
	bool *done = arg;
	*done = true;
	if (st == RPC_OK) {
		Etcdserverpb__RangeResponse *r =
		    etcdserverpb__range_response__unpack(NULL, len, resp);
		if (r && r->header)
			base_rev = r->header->revision;
		if (r)
			etcdserverpb__range_response__free_unpacked(r, NULL);
	}
}

/* ------------------------------------------------------------ reporting */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, int64_t n, double p)
{
	if (n == 0)
		return 0;
	int64_t i = (int64_t)ceil(p / 100.0 * (double)n) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1e9;
}

/* This process's CPU seconds: a load generator that is itself saturated
 * measures itself, not the server. */
static double self_cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double self_cpu0;

static void report(double secs, long pid, const struct proc_sample *p0,
                   const struct proc_sample *p1)
{
	int64_t n = completed;
	qsort(lat_ns, (size_t)n, sizeof(uint64_t), cmp_u64);
	double sum = 0, sq = 0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)lat_ns[i] / 1e9;
	double avg = n ? sum / (double)n : 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)lat_ns[i] / 1e9 - avg;
		sq += d * d;
	}
	double sd = n ? sqrt(sq / (double)n) : 0;
	double rps = secs > 0 ? (double)n / secs : 0;
	double fastest = n ? (double)lat_ns[0] / 1e9 : 0,
	       slowest = n ? (double)lat_ns[n - 1] / 1e9 : 0;
	if (!o.quiet) {
		printf("\nSummary:\n  Total:\t%.4f secs.\n  Slowest:\t%.4f secs.\n"
		       "  Fastest:\t%.4f secs.\n  Average:\t%.4f secs.\n  Stddev:\t%.4f secs.\n"
		       "  Requests/sec:\t%.4f\n",
		       secs, slowest, fastest, avg, sd, rps);
		if (n > 0) {
			printf("\nResponse time histogram:\n");
			int nb = 10;
			int64_t counts[11] = {0};
			double bs = (slowest - fastest) / nb;
			int64_t maxc = 0;
			for (int64_t i = 0, b = 0; i < n; i++) {
				double v = (double)lat_ns[i] / 1e9;
				while (b < nb && v > fastest + bs * (double)b)
					b++;
				counts[b]++;
			}
			for (int b = 0; b <= nb; b++)
				if (counts[b] > maxc)
					maxc = counts[b];
			for (int b = 0; b <= nb; b++) {
				int bar = maxc ? (int)(counts[b] * 40 / maxc) : 0;
				printf("  %.4f [%" PRId64 "]\t|", fastest + bs * b, counts[b]);
				for (int k = 0; k < bar; k++)
					fputs("\xe2\x88\x8e", stdout);
				putchar('\n');
			}
			printf("\nLatency distribution:\n");
			const double ps[] = {10, 25, 50, 75, 90, 95, 99, 99.9};
			for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++)
				printf("  %g%% in %.4f secs.\n", ps[k], pct(lat_ns, n, ps[k]));
		}
		if (errors)
			printf("\nError distribution:\n  [%" PRId64 "]\t%s\n", errors, first_error);
	}
	double cpu = p0->ok && p1->ok ? p1->cpu_s - p0->cpu_s : -1;
	if (!o.quiet) {
		if (cpu >= 0)
			printf("\nServer (pid %ld):\n  CPU:\t%.2f secs (user %.2f, sys %.2f), %.1f "
			       "us/op\n"
			       "  RSS:\t%.1f MiB (peak %.1f MiB)\n",
			       pid, cpu, p1->user_s - p0->user_s, p1->sys_s - p0->sys_s,
			       n ? cpu * 1e6 / (double)n : 0, (double)p1->rss_kb / 1024.0,
			       (double)p1->hwm_kb / 1024.0);
		else
			printf("\nServer: not on this machine or not found (use --server-pid)\n");
	}
	if (errors && o.quiet)
		fprintf(stderr, "errors: %" PRId64 " (first: %s)\n", errors, first_error);
	/* watch-latency: per put, the time until its last watcher had it */
	double all50 = -1, all_max = -1;
	if (put_all_ns) {
		if (!o.quiet) {
			printf("\nPut to all watchers (ms), per put:\n ");
			for (int64_t k = 0; k < o.put_total; k++)
				printf(" %.0f", (double)put_all_ns[k] / 1e6);
			putchar('\n');
		}
		qsort(put_all_ns, (size_t)o.put_total, sizeof(uint64_t), cmp_u64);
		all50 = pct(put_all_ns, o.put_total, 50) * 1e3;
		all_max = pct(put_all_ns, o.put_total, 100) * 1e3;
	}
	/* One line for scripts (tools/bench.sh). */
	printf("result: cmd=%s ops=%" PRId64 " errors=%" PRId64 " secs=%.4f rps=%.1f avg_ms=%.3f "
	       "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f stddev_ms=%.3f "
	       "cpu_s=%.3f "
	       "cpu_us_per_op=%.1f rss_mib=%.1f bench_cpu_s=%.3f all_p50_ms=%.3f "
	       "all_max_ms=%.3f\n",
	       o.cmd, n, errors, secs, rps, avg * 1e3, pct(lat_ns, n, 50) * 1e3,
	       pct(lat_ns, n, 90) * 1e3, pct(lat_ns, n, 99) * 1e3, pct(lat_ns, n, 99.9) * 1e3,
	       slowest * 1e3, sd * 1e3, cpu, cpu >= 0 && n ? cpu * 1e6 / (double)n : -1,
	       p1->ok ? (double)p1->rss_kb / 1024.0 : -1, self_cpu_s() - self_cpu0, all50, all_max);
}

/* ---------------------------------------------------------------- fsync */

/* The disk's durable-write latency: --total rounds of a 4 KiB overwrite
 * plus fdatasync in a scratch file under --dir (what one raft batch costs
 * at least, whatever the server). */
static int run_fsync(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/cairn-bench-fsync.%ld", o.dir ? o.dir : ".",
	         (long)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		fprintf(stderr, "cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	char page[4096];
	memset(page, 'f', sizeof(page));
	for (int64_t i = 0; i < o.total; i++) {
		uint64_t t0 = uv_hrtime();
		if (pwrite(fd, page, sizeof(page), (off_t)((i % 16) * 4096)) !=
		        (ssize_t)sizeof(page) ||
		    fdatasync(fd) != 0) {
			record(0, RPC_UNKNOWN, strerror(errno));
			continue;
		}
		record(uv_hrtime() - t0, RPC_OK, "");
	}
	close(fd);
	unlink(path);
	return 0;
}

/* --------------------------------------------------------------- main */

static void run_until(bool (*done)(void))
{
	while (!done())
		if (uv_run(loop, UV_RUN_ONCE) == 0)
			break;
}

static bool all_done(void)
{
	return t_end != 0;
}

static bool flag_done;
static bool flag_is_done(void)
{
	return flag_done;
}

int main(int argc, char **argv)
{
	if (parse_args(argc, argv) != 0)
		return 2;
	loop = uv_default_loop();
	conns = calloc((size_t)o.conns, sizeof(*conns));
	for (int64_t i = 0; i < o.conns; i++) {
		char url[300];
		const char *ep = o.eps[i % (int64_t)o.n_eps];
		snprintf(url, sizeof(url), strstr(ep, "://") ? "%s" : "http://%s", ep);
		if (rpc_client_new(loop, url, NULL, &conns[i]) != 0) {
			fprintf(stderr, "bad endpoint %s\n", ep);
			return 2;
		}
	}
	key_prefix_len = o.key_prefix ? strlen(o.key_prefix) : 0;
	if (key_prefix_len + (size_t)o.key_size > 511) {
		fprintf(stderr, "--key-prefix plus --key-size must stay under 512 bytes\n");
		return 2;
	}
	key_buf = calloc(key_prefix_len + (size_t)o.key_size + 1, 1);
	if (key_prefix_len)
		memcpy(key_buf, o.key_prefix, key_prefix_len);
	val_buf = malloc((size_t)o.val_size + 1);
	for (int64_t i = 0; i < o.val_size; i++)
		val_buf[i] = (uint8_t)('a' + xorshift() % 26);

	long pid = o.server_pid;
	if (!pid) {
		const char *colon = strrchr(o.eps[0], ':');
		if (colon)
			pid = find_pid_by_port(atoi(colon + 1));
	}
	int64_t cap = o.total;
	if (!strcmp(o.cmd, "watch"))
		cap = o.streams * o.watchers_per_stream;
	if (!strcmp(o.cmd, "watch-latency"))
		cap = o.put_total * o.streams * o.watchers_per_stream;
	lat_ns = calloc((size_t)cap + 1, sizeof(uint64_t));
	if (!lat_ns) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	/* Touched now, not page by page while measuring: 100,000 watchers x
	 * 20 puts is 16 MB of samples, and faulting them in showed as a tenth
	 * of this client's time during the measure. */
	for (int64_t i = 0; i <= cap; i += 512)
		((volatile uint64_t *)lat_ns)[i] = 0;

	struct proc_sample p0, p1;
	proc_sample(pid, &p0);
	self_cpu0 = self_cpu_s();
	t_start = uv_hrtime();
	if (!strcmp(o.cmd, "fsync")) {
		pid = 0;
		if (run_fsync() != 0)
			return 2;
		t_end = uv_hrtime();
	} else if (!strcmp(o.cmd, "put") || !strcmp(o.cmd, "range") || !strcmp(o.cmd, "txn-put")) {
		if (o.txn_ops < 1 || o.txn_ops > 64) {
			fprintf(stderr, "--txn-ops must be 1..64\n");
			return 2;
		}
		op_path = !strcmp(o.cmd, "put")     ? "/etcdserverpb.KV/Put"
		          : !strcmp(o.cmd, "range") ? "/etcdserverpb.KV/Range"
		                                    : "/etcdserverpb.KV/Txn";
		clients = calloc((size_t)o.clients, sizeof(*clients));
		active = o.clients;
		for (int64_t i = 0; i < o.clients; i++) {
			clients[i].idx = (int)i;
			clients[i].conn = conns[i % o.conns];
			uv_timer_init(loop, &clients[i].timer);
			clients[i].timer.data = &clients[i];
		}
		for (int64_t i = 0; i < o.clients; i++)
			issue(&clients[i]);
		run_until(all_done);
	} else if (!strcmp(o.cmd, "lease-keepalive")) {
		clients = calloc((size_t)o.clients, sizeof(*clients));
		active = o.clients;
		for (int64_t i = 0; i < o.clients; i++) {
			clients[i].conn = conns[i % o.conns];
			Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
			g.ttl = 60;
			rpc_client_call_msg(clients[i].conn, "/etcdserverpb.Lease/LeaseGrant",
			                    &g.base, 0, ka_granted, &clients[i]);
		}
		run_until(all_done);
	} else if (!strcmp(o.cmd, "watch")) {
		measuring_watch_create = true;
		open_watchers(NULL);
		run_until(all_done);
	} else if (!strcmp(o.cmd, "watch-latency")) {
		Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
		rr.key = (ProtobufCBinaryData){12, (uint8_t *)"watchlatency"};
		rpc_client_call_msg(conns[0], "/etcdserverpb.KV/Range", &rr.base, 0, rev_done,
		                    &flag_done);
		run_until(flag_is_done);
		put_sent_at = calloc((size_t)o.put_total + 1, sizeof(uint64_t));
		put_all_ns = calloc((size_t)o.put_total + 1, sizeof(uint64_t));
		uv_timer_init(loop, &wl_timer);
		events_expected = o.put_total * o.streams * o.watchers_per_stream;
		t_start = uv_hrtime();
		open_watchers(o.watch_prefix ? WL_PREFIX : WL_KEY);
		run_until(all_done);
		uv_timer_stop(&wl_timer);
	} else {
		fprintf(stderr, "unknown benchmark %s\n", o.cmd);
		usage();
		return 2;
	}
	if (!t_end)
		t_end = uv_hrtime();
	proc_sample(pid, &p1);
	report((double)(t_end - t_start) / 1e9, pid, &p0, &p1);
	return errors ? 1 : 0;
}
