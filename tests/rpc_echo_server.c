/* rpc_echo_server.c — a test server for the rpc layer, driven by
 * tests/test_rpc_grpc.py (python grpc, etcdctl, raw sockets).
 *
 *   rpc_echo_server [URL]     default http://127.0.0.1:0; prints "PORT n"
 *
 * Methods:
 *   /test.Echo/Echo     unary: replies with the request bytes
 *   /test.Echo/Slow     unary, deferred: request is "<ms>" in ASCII; replies
 *                       "done" after that many ms from a timer
 *   /test.Echo/Fail     unary: request "<code> <message>" -> that status
 *   /test.Echo/Bidi     stream: echoes every message; closes OK on half-close
 *   /test.Echo/Flood    stream: first message "<size>": sends messages of that
 *                       size for as long as the stream is writable (then
 *                       waits for on_writable), until the client goes away
 *   /test.Echo/Big      unary: request "<n>": replies with n bytes
 *   /test.Echo/Checked, /test.Echo/CheckedBidi  Echo and Bidi behind a
 *                       decode check that refuses a message "bad:WHY" for
 *                       the reason WHY
 *   /test.Echo/Stats    unary: "rss_kb=N flood_sent=N flood_eagain=N ..."
 *   /etcdserverpb.Maintenance/Status  a fixed StatusResponse (for etcdctl)
 * HTTP/1.1: /health -> {"health":"true"}, /metrics -> counters; others 404.
 * SIGTERM/SIGINT: graceful close (2 s grace), then exit 0.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "proto/rpc.pb-c.h"
#include "rpc/rpc.h"

static struct rpc_server *srv;
static uv_loop_t *loop;
static uv_signal_t sigterm, sigint;
static uint64_t flood_sent, flood_eagain, slow_cancelled;
static char metrics[8192];

struct slow {
	uv_timer_t timer;
	struct rpc_call *call;
};

static void echo_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	rpc_call_reply(call, req, len);
}

static void slow_closed(uv_handle_t *h)
{
	free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
	struct slow *s = t->data;
	if (rpc_call_cancelled(s->call))
		slow_cancelled++;
	rpc_call_reply(s->call, "done", 4);
	uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	char buf[32];
	if (len >= sizeof(buf)) {
		rpc_call_fail(call, RPC_INVALID_ARGUMENT, "bad delay");
		return;
	}
	memcpy(buf, req, len);
	buf[len] = '\0';
	struct slow *s = malloc(sizeof(*s));
	s->call = call;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	uv_timer_start(&s->timer, slow_fire, strtoull(buf, NULL, 10), 0);
}

static void fail_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	char buf[256];
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, req, len);
	buf[len] = '\0';
	char *sp = strchr(buf, ' ');
	rpc_call_fail(call, atoi(buf), sp != NULL ? sp + 1 : NULL);
}

static void big_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	char buf[32];
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, req, len);
	buf[len] = '\0';
	size_t n = strtoull(buf, NULL, 10);
	uint8_t *body = malloc(n + 1);
	memset(body, 'z', n);
	rpc_call_reply(call, body, n);
	free(body);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	if (f != NULL)
		fclose(f);
	return kb;
}

static void stats_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	(void)req;
	(void)len;
	struct rpc_server_stats st;
	rpc_server_get_stats(srv, &st);
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
	                 "rss_kb=%ld flood_sent=%" PRIu64 " flood_eagain=%" PRIu64 " conns=%" PRIu64
	                 " streams=%" PRIu64 " slow_cancelled=%" PRIu64 " protocol_errors=%" PRIu64
	                 " refused=%" PRIu64,
	                 rss_kb(), flood_sent, flood_eagain, st.conns_current, st.streams_current,
	                 slow_cancelled, st.protocol_errors, st.streams_refused);
	rpc_call_reply(call, buf, (size_t)n);
}

/* The decode check of the Checked methods. */
static int check_cb(const uint8_t *msg, size_t len, void *arg, char *why, size_t cap)
{
	(void)arg;
	if (len < 4 || memcmp(msg, "bad:", 4) != 0)
		return 0;
	snprintf(why, cap, "%.*s", (int)(len - 4), (const char *)msg + 4);
	return 1;
}

/* ---- Bidi: echo ---- */

static void bidi_open(struct rpc_stream *s, void *ud)
{
	(void)s;
	(void)ud;
}

static void bidi_message(struct rpc_stream *s, const uint8_t *msg, size_t len)
{
	if (rpc_stream_send(s, msg, len) != 0)
		rpc_stream_close(s, RPC_RESOURCE_EXHAUSTED, "echo queue full");
}

static void bidi_half_close(struct rpc_stream *s)
{
	rpc_stream_close(s, RPC_OK, NULL);
}

static void bidi_close(struct rpc_stream *s, int reason)
{
	(void)s;
	(void)reason;
}

/* ---- Flood: produce while writable ---- */

struct flood {
	size_t size;
	uint8_t *buf;
};

static void flood_pump(struct rpc_stream *s)
{
	struct flood *f = rpc_stream_data(s);
	for (;;) {
		int rv = rpc_stream_send(s, f->buf, f->size);
		if (rv == 0) {
			flood_sent++;
			continue;
		}
		flood_eagain++;
		break;
	}
}

static void flood_open(struct rpc_stream *s, void *ud)
{
	(void)ud;
	rpc_stream_set_data(s, NULL);
}

static void flood_message(struct rpc_stream *s, const uint8_t *msg, size_t len)
{
	if (rpc_stream_data(s) != NULL)
		return;
	char buf[32];
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, msg, len);
	buf[len] = '\0';
	struct flood *f = calloc(1, sizeof(*f));
	f->size = strtoull(buf, NULL, 10);
	f->buf = calloc(1, f->size + 1);
	memset(f->buf, 'x', f->size);
	rpc_stream_set_data(s, f);
	flood_pump(s);
}

static void flood_writable(struct rpc_stream *s)
{
	flood_pump(s);
}

static void flood_close(struct rpc_stream *s, int reason)
{
	(void)reason;
	struct flood *f = rpc_stream_data(s);
	if (f != NULL) {
		free(f->buf);
		free(f);
	}
}

/* ---- etcd Maintenance/Status ---- */

static void status_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	Etcdserverpb__StatusRequest *in = etcdserverpb__status_request__unpack(NULL, len, req);
	if (in == NULL) {
		rpc_call_fail(call, RPC_INVALID_ARGUMENT, "bad StatusRequest");
		return;
	}
	etcdserverpb__status_request__free_unpacked(in, NULL);
	Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr.cluster_id = 0x1234;
	hdr.member_id = 0x42;
	hdr.revision = 7;
	hdr.raft_term = 3;
	Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	resp.header = &hdr;
	resp.version = "3.5.0-cairn";
	resp.dbsize = 4096;
	resp.leader = 0x42;
	resp.raftindex = 11;
	resp.raftterm = 3;
	resp.raftappliedindex = 11;
	resp.dbsizeinuse = 2048;
	rpc_call_reply_msg(call, &resp.base);
}

static int http_cb(const char *method, const char *path, struct rpc_http_reply *reply, void *ud)
{
	(void)method;
	(void)ud;
	if (strcmp(path, "/health") == 0) {
		reply->content_type = "application/json";
		reply->body = "{\"health\":\"true\"}";
		reply->body_len = strlen(reply->body);
	} else if (strcmp(path, "/metrics") == 0) {
		struct rpc_server_stats st;
		rpc_server_get_stats(srv, &st);
		int n = snprintf(metrics, sizeof(metrics),
		                 "rpc_conns_current %" PRIu64 "\nrpc_http1_requests %" PRIu64 "\n",
		                 st.conns_current, st.http1_requests);
		reply->body = metrics;
		reply->body_len = (size_t)n;
	} else {
		reply->status = 404;
		reply->body = "not found\n";
		reply->body_len = 10;
	}
	return 0;
}

static void closed_cb(void *arg)
{
	(void)arg;
	srv = NULL;
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	if (srv != NULL)
		rpc_server_close(srv, 2000, closed_cb, NULL);
}

int main(int argc, char **argv)
{
	const char *url = argc > 1 ? argv[1] : "http://127.0.0.1:0";
	loop = uv_default_loop();
	struct rpc_server_config cfg = {0};
	const char *mr = getenv("ECHO_MAX_RECV");
	if (mr != NULL)
		cfg.max_recv_msg_size = strtoull(mr, NULL, 10);
	const char *ci = getenv("ECHO_CONN_INBOUND");
	if (ci != NULL)
		cfg.conn_inbound_limit = strtoull(ci, NULL, 10);
	if (rpc_server_new(loop, &cfg, &srv) != 0)
		return 1;
	static const struct rpc_stream_cbs bidi = {.on_open = bidi_open,
	                                           .on_message = bidi_message,
	                                           .on_half_close = bidi_half_close,
	                                           .on_close = bidi_close};
	static const struct rpc_stream_cbs flood = {.on_open = flood_open,
	                                            .on_message = flood_message,
	                                            .on_writable = flood_writable,
	                                            .on_close = flood_close};
	if (rpc_server_register_unary(srv, "/test.Echo/Echo", echo_cb, NULL) != 0 ||
	    rpc_server_register_unary(srv, "/test.Echo/Slow", slow_cb, NULL) != 0 ||
	    rpc_server_register_unary(srv, "/test.Echo/Fail", fail_cb, NULL) != 0 ||
	    rpc_server_register_unary(srv, "/test.Echo/Stats", stats_cb, NULL) != 0 ||
	    rpc_server_register_unary(srv, "/test.Echo/Big", big_cb, NULL) != 0 ||
	    rpc_server_register_stream(srv, "/test.Echo/Bidi", &bidi, NULL) != 0 ||
	    rpc_server_register_stream(srv, "/test.Echo/Flood", &flood, NULL) != 0 ||
	    rpc_server_register_unary(srv, "/etcdserverpb.Maintenance/Status", status_cb, NULL) !=
	        0 ||
	    rpc_server_register_unary(srv, "/test.Echo/Checked", echo_cb, NULL) != 0 ||
	    rpc_server_register_stream(srv, "/test.Echo/CheckedBidi", &bidi, NULL) != 0 ||
	    rpc_server_set_decode_check(srv, "/test.Echo/Checked", check_cb, NULL) != 0 ||
	    rpc_server_set_decode_check(srv, "/test.Echo/CheckedBidi", check_cb, NULL) != 0 ||
	    rpc_server_set_decode_check(srv, "/test.Echo/Nope", check_cb, NULL) != CAIRN_ENOTFOUND)
		return 1;
	rpc_server_set_http_handler(srv, http_cb, NULL);
	int port;
	if (rpc_server_listen(srv, url, &port) != 0)
		return 1;
	printf("PORT %d\n", port);
	fflush(stdout);
	uv_signal_init(loop, &sigterm);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_run(loop, UV_RUN_DEFAULT);
	int rv = uv_loop_close(loop);
	if (rv != 0)
		fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rv));
	return rv != 0;
}
