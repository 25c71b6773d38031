/* test_rpc_client.c — the rpc client against the rpc server in one process,
 * on one loop: unary calls (immediate, deferred, failing, unknown, too large,
 * timing out), bidi streams both ways, cancel from either side, connection
 * refused, server close with streams open, and that every callback runs
 * exactly once and everything is freed (ASan build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "rpc/rpc.h"

static uv_loop_t loop;
static struct rpc_server *srv;
static struct rpc_client *cli;
static char url[64];

/* ---- server side ---- */

static void echo_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	const char *tok = rpc_call_header(call, "token");
	if (tok != NULL && strcmp(tok, "bad") == 0) {
		rpc_call_fail(call, RPC_UNAUTHENTICATED, "etcdserver: invalid auth token");
		return;
	}
	rpc_call_reply(call, req, len);
}

struct deferred {
	uv_timer_t t;
	struct rpc_call *call;
	bool cancel_seen;
};
static int deferred_cancels;

static void deferred_closed(uv_handle_t *h)
{
	free(h->data);
}

static void deferred_fire(uv_timer_t *t)
{
	struct deferred *d = t->data;
	if (rpc_call_cancelled(d->call))
		assert_true(d->cancel_seen);
	rpc_call_reply(d->call, "late", 4);
	uv_close((uv_handle_t *)t, deferred_closed);
}

static void deferred_cancel(struct rpc_call *call, void *arg)
{
	struct deferred *d = arg;
	assert_ptr_equal(call, d->call);
	d->cancel_seen = true;
	deferred_cancels++;
}

static void slow_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	char buf[16] = {0};
	memcpy(buf, req, len < 15 ? len : 15);
	struct deferred *d = calloc(1, sizeof(*d));
	d->call = call;
	rpc_call_set_cancel_cb(call, deferred_cancel, d);
	uv_timer_init(&loop, &d->t);
	d->t.data = d;
	uv_timer_start(&d->t, deferred_fire, strtoull(buf, NULL, 10), 0);
}

/* Hold: keeps the call until it is cancelled, and ends it inside the
 * cancel callback (allowed by rpc.h; must not free it twice). */
static int hold_started, hold_cancels;

static void hold_cancel(struct rpc_call *call, void *arg)
{
	(void)arg;
	assert_true(rpc_call_cancelled(call));
	hold_cancels++;
	assert_int_equal(rpc_call_fail(call, RPC_CANCELLED, "given up"), 0);
}

static void hold_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	(void)req;
	(void)len;
	hold_started++;
	assert_string_equal(rpc_call_path(call), "/t.S/Hold");
	rpc_call_set_cancel_cb(call, hold_cancel, NULL);
}

static int srv_opened, srv_closed, srv_last_reason, srv_half;

static void s_open(struct rpc_stream *s, void *ud)
{
	(void)ud;
	srv_opened++;
	rpc_stream_set_data(s, NULL);
}

static void s_message(struct rpc_stream *s, const uint8_t *msg, size_t len)
{
	if (len == 4 && memcmp(msg, "stop", 4) == 0) {
		rpc_stream_close(s, RPC_ABORTED, "stopped by request");
		assert_int_equal(rpc_stream_send(s, "x", 1), CAIRN_ECLOSED);
		return;
	}
	assert_int_equal(rpc_stream_send(s, msg, len), 0);
}

static void s_half(struct rpc_stream *s)
{
	srv_half++;
	rpc_stream_close(s, RPC_OK, NULL);
}

static void s_close(struct rpc_stream *s, int reason)
{
	(void)s;
	srv_closed++;
	srv_last_reason = reason;
}

/* ---- client side ---- */

struct result {
	int done;
	int status;
	char message[256];
	uint8_t resp[256];
	size_t len;
};

static void unary_done(int status, const char *message, const uint8_t *resp, size_t len, void *arg)
{
	struct result *r = arg;
	r->done++;
	r->status = status;
	snprintf(r->message, sizeof(r->message), "%s", message);
	r->len = len;
	if (len > 0)
		memcpy(r->resp, resp, len < sizeof(r->resp) ? len : sizeof(r->resp));
}

static void run_until(const int *flag, int want)
{
	for (int i = 0; i < 100000 && *flag < want; i++)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(*flag >= want);
}

static int setup(void **state)
{
	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(rpc_server_new(&loop, NULL, &srv), 0);
	static const struct rpc_stream_cbs cbs = {.on_open = s_open,
	                                          .on_message = s_message,
	                                          .on_half_close = s_half,
	                                          .on_close = s_close};
	assert_int_equal(rpc_server_register_unary(srv, "/t.S/Echo", echo_cb, NULL), 0);
	assert_int_equal(rpc_server_register_unary(srv, "/t.S/Echo", echo_cb, NULL), CAIRN_EEXIST);
	assert_int_equal(rpc_server_register_unary(srv, "/t.S/Slow", slow_cb, NULL), 0);
	assert_int_equal(rpc_server_register_unary(srv, "/t.S/Hold", hold_cb, NULL), 0);
	assert_int_equal(rpc_server_register_stream(srv, "/t.S/Bidi", &cbs, NULL), 0);
	int port;
	assert_int_equal(rpc_server_listen(srv, "http://127.0.0.1:0", &port), 0);
	assert_true(port > 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_client_new(&loop, url, NULL, &cli), 0);
	return 0;
}

static int closed_flag;
static void set_flag(void *arg)
{
	(void)arg;
	closed_flag++;
}

static int teardown(void **state)
{
	(void)state;
	closed_flag = 0;
	if (cli != NULL)
		assert_int_equal(rpc_client_close(cli, set_flag, NULL), 0);
	if (srv != NULL)
		assert_int_equal(rpc_server_close(srv, 100, set_flag, NULL), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(closed_flag, (cli != NULL) + (srv != NULL));
	cli = NULL;
	srv = NULL;
	assert_int_equal(uv_loop_close(&loop), 0);
	return 0;
}

static void test_unary(void **state)
{
	(void)state;
	struct result r = {0};
	assert_int_equal(rpc_client_call(cli, "/t.S/Echo", "hello", 5, 0, unary_done, &r), 0);
	assert_int_equal(r.done, 0); /* never from inside the call */
	run_until(&r.done, 1);
	assert_int_equal(r.status, RPC_OK);
	assert_int_equal(r.len, 5);
	assert_memory_equal(r.resp, "hello", 5);

	struct result many[200];
	memset(many, 0, sizeof(many));
	int total = 0;
	for (int i = 0; i < 200; i++) {
		char b[16];
		int n = snprintf(b, sizeof(b), "m%d", i);
		assert_int_equal(
		    rpc_client_call(cli, "/t.S/Echo", b, (size_t)n, 5000, unary_done, &many[i]), 0);
	}
	for (int i = 0; i < 200; i++) {
		run_until(&many[i].done, 1);
		total += many[i].done;
		char b[16];
		int n = snprintf(b, sizeof(b), "m%d", i);
		assert_int_equal(many[i].len, (size_t)n);
		assert_memory_equal(many[i].resp, b, (size_t)n);
	}
	assert_int_equal(total, 200);
}

static void test_unary_errors(void **state)
{
	(void)state;
	struct result r = {0};
	assert_int_equal(rpc_client_call(cli, "/t.S/Nope", "x", 1, 0, unary_done, &r), 0);
	run_until(&r.done, 1);
	assert_int_equal(r.status, RPC_UNIMPLEMENTED);
	assert_string_equal(r.message, "unknown method Nope for service t.S");

	struct result big = {0};
	size_t n = 3 * 1024 * 1024;
	char *buf = calloc(1, n);
	assert_int_equal(rpc_client_call(cli, "/t.S/Echo", buf, n, 0, unary_done, &big), 0);
	free(buf);
	run_until(&big.done, 1);
	assert_int_equal(big.status, RPC_RESOURCE_EXHAUSTED);
	assert_string_equal(big.message,
	                    "grpc: received message larger than max (3145728 vs. 2097152)");

	/* The client times out first; the server's deferred reply is dropped. */
	struct result slow = {0};
	deferred_cancels = 0;
	assert_int_equal(rpc_client_call(cli, "/t.S/Slow", "300", 3, 50, unary_done, &slow), 0);
	run_until(&slow.done, 1);
	assert_int_equal(slow.status, RPC_DEADLINE_EXCEEDED);
	run_until(&deferred_cancels, 1);
	/* And a deferred reply that makes it. */
	struct result ok = {0};
	assert_int_equal(rpc_client_call(cli, "/t.S/Slow", "20", 2, 5000, unary_done, &ok), 0);
	run_until(&ok.done, 1);
	assert_int_equal(ok.status, RPC_OK);
	assert_memory_equal(ok.resp, "late", 4);
	/* Let the first deferred timer fire into its cancelled call. */
	for (int i = 0; i < 50; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

static void test_end_call_inside_cancel_cb(void **state)
{
	(void)state;
	hold_started = hold_cancels = 0;
	/* The server's deadline fires first (grpc-timeout). */
	struct result r = {0};
	assert_int_equal(rpc_client_call(cli, "/t.S/Hold", "x", 1, 30, unary_done, &r), 0);
	run_until(&hold_cancels, 1);
	run_until(&r.done, 1);
	assert_int_equal(r.status, RPC_DEADLINE_EXCEEDED);
	/* The client goes away while the server holds the call. */
	struct rpc_client *c2;
	assert_int_equal(rpc_client_new(&loop, url, NULL, &c2), 0);
	struct result r2 = {0};
	assert_int_equal(rpc_client_call(c2, "/t.S/Hold", "x", 1, 0, unary_done, &r2), 0);
	run_until(&hold_started, 2);
	closed_flag = 0;
	assert_int_equal(rpc_client_close(c2, set_flag, NULL), 0);
	run_until(&closed_flag, 1);
	assert_int_equal(r2.done, 1);
	assert_int_equal(r2.status, RPC_CANCELLED);
	run_until(&hold_cancels, 2);
}

static void test_headers(void **state)
{
	(void)state;
	const char *const hdrs[][2] = {{"token", "bad"}};
	struct rpc_client_config cfg = {0};
	cfg.headers = hdrs;
	cfg.nheaders = 1;
	struct rpc_client *c2;
	assert_int_equal(rpc_client_new(&loop, url, &cfg, &c2), 0);
	struct result r = {0};
	assert_int_equal(rpc_client_call(c2, "/t.S/Echo", "x", 1, 0, unary_done, &r), 0);
	run_until(&r.done, 1);
	assert_int_equal(r.status, RPC_UNAUTHENTICATED);
	assert_string_equal(r.message, "etcdserver: invalid auth token");
	closed_flag = 0;
	assert_int_equal(rpc_client_close(c2, set_flag, NULL), 0);
	run_until(&closed_flag, 1);
}

struct cstream {
	int msgs, closed, status;
	char message[128];
	char last[64];
};

static void c_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	struct cstream *cs = rpc_client_stream_data(s);
	cs->msgs++;
	snprintf(cs->last, sizeof(cs->last), "%.*s", (int)len, (const char *)msg);
}

static void c_close(struct rpc_client_stream *s, int status, const char *message)
{
	struct cstream *cs = rpc_client_stream_data(s);
	cs->closed++;
	cs->status = status;
	snprintf(cs->message, sizeof(cs->message), "%s", message);
}

static const struct rpc_client_stream_cbs ccbs = {c_msg, c_close};

static void test_bidi(void **state)
{
	(void)state;
	struct cstream cs = {0};
	struct rpc_client_stream *s;
	srv_opened = srv_closed = srv_half = 0;
	assert_int_equal(rpc_client_stream_open(cli, "/t.S/Bidi", &ccbs, &cs, &s), 0);
	for (int i = 0; i < 500; i++) {
		char b[16];
		int n = snprintf(b, sizeof(b), "n%d", i);
		assert_int_equal(rpc_client_stream_send(s, b, (size_t)n), 0);
	}
	assert_true(rpc_client_stream_queued(s) > 0);
	run_until(&cs.msgs, 500);
	assert_string_equal(cs.last, "n499");
	assert_int_equal(rpc_client_stream_queued(s), 0);
	assert_int_equal(rpc_client_stream_half_close(s), 0);
	run_until(&cs.closed, 1);
	assert_int_equal(cs.status, RPC_OK);
	run_until(&srv_closed, 1);
	assert_int_equal(srv_half, 1);
	assert_int_equal(srv_last_reason, 0);

	/* Server ends the stream with a status. */
	struct cstream c2 = {0};
	assert_int_equal(rpc_client_stream_open(cli, "/t.S/Bidi", &ccbs, &c2, &s), 0);
	assert_int_equal(rpc_client_stream_send(s, "a", 1), 0);
	assert_int_equal(rpc_client_stream_send(s, "stop", 4), 0);
	run_until(&c2.closed, 1);
	assert_int_equal(c2.msgs, 1);
	assert_int_equal(c2.status, RPC_ABORTED);
	assert_string_equal(c2.message, "stopped by request");
	run_until(&srv_closed, 2);

	/* Client cancels: the server hears CAIRN_ECANCELED. */
	struct cstream c3 = {0};
	assert_int_equal(rpc_client_stream_open(cli, "/t.S/Bidi", &ccbs, &c3, &s), 0);
	assert_int_equal(rpc_client_stream_send(s, "a", 1), 0);
	run_until(&c3.msgs, 1);
	assert_int_equal(rpc_client_stream_cancel(s), 0);
	run_until(&c3.closed, 1);
	assert_int_equal(c3.status, RPC_CANCELLED);
	run_until(&srv_closed, 3);
	assert_int_equal(srv_last_reason, CAIRN_ECANCELED);
}

static void test_refused(void **state)
{
	(void)state;
	struct rpc_client *c2;
	assert_int_equal(rpc_client_new(&loop, "http://127.0.0.1:1", NULL, &c2), 0);
	struct result r = {0};
	assert_int_equal(rpc_client_call(c2, "/t.S/Echo", "x", 1, 0, unary_done, &r), 0);
	run_until(&r.done, 1);
	assert_int_equal(r.status, RPC_UNAVAILABLE);
	closed_flag = 0;
	assert_int_equal(rpc_client_close(c2, set_flag, NULL), 0);
	run_until(&closed_flag, 1);
	assert_int_equal(rpc_client_new(&loop, "https://127.0.0.1:1", NULL, &c2), CAIRN_EADDR);
}

/* Other listeners: a unix socket and IPv6 loopback on the same server. */
static void test_unix_and_ipv6(void **state)
{
	(void)state;
	char path[64], u[80];
	snprintf(path, sizeof(path), "/tmp/cairn-rpc-test-%d.sock", (int)uv_os_getpid());
	snprintf(u, sizeof(u), "unix://%s", path);
	remove(path);
	int port = -1;
	assert_int_equal(rpc_server_listen(srv, u, &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(rpc_server_listen(srv, "http://nonsense", NULL), CAIRN_EADDR);
	assert_int_equal(rpc_server_listen(srv, url, NULL), CAIRN_EIO); /* in use */
	const char *urls[2] = {u, NULL};
	char v6[64];
	if (rpc_server_listen(srv, "http://[::1]:0", &port) == 0) {
		snprintf(v6, sizeof(v6), "http://[::1]:%d", port);
		urls[1] = v6;
	}
	for (int i = 0; i < 2 && urls[i] != NULL; i++) {
		struct rpc_client *c2;
		assert_int_equal(rpc_client_new(&loop, urls[i], NULL, &c2), 0);
		struct result r = {0};
		assert_int_equal(rpc_client_call(c2, "/t.S/Echo", "via", 3, 0, unary_done, &r), 0);
		run_until(&r.done, 1);
		assert_int_equal(r.status, RPC_OK);
		assert_memory_equal(r.resp, "via", 3);
		closed_flag = 0;
		assert_int_equal(rpc_client_close(c2, set_flag, NULL), 0);
		run_until(&closed_flag, 1);
	}
	remove(path);
}

static void test_server_close_with_open_stream(void **state)
{
	(void)state;
	struct cstream cs = {0};
	struct rpc_client_stream *s;
	srv_closed = 0;
	assert_int_equal(rpc_client_stream_open(cli, "/t.S/Bidi", &ccbs, &cs, &s), 0);
	assert_int_equal(rpc_client_stream_send(s, "a", 1), 0);
	run_until(&cs.msgs, 1);
	/* A pending deferred call survives the server: its reply frees it. */
	struct result r = {0};
	assert_int_equal(rpc_client_call(cli, "/t.S/Slow", "200", 3, 0, unary_done, &r), 0);
	for (int i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	closed_flag = 0;
	assert_int_equal(rpc_server_close(srv, 50, set_flag, NULL), 0);
	assert_int_equal(rpc_server_close(srv, 50, set_flag, NULL), CAIRN_EBUSY);
	run_until(&closed_flag, 1);
	srv = NULL;
	assert_int_equal(srv_closed, 1);
	assert_int_equal(srv_last_reason, CAIRN_ECLOSED);
	run_until(&cs.closed, 1);
	run_until(&r.done, 1);
	assert_int_not_equal(r.status, RPC_OK);
	/* The deferred timer still fires later and frees the detached call. */
	uv_run(&loop, UV_RUN_DEFAULT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_unary, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unary_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_end_call_inside_cancel_cb, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bidi, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unix_and_ipv6, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_close_with_open_stream, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
