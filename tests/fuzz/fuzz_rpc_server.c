/* fuzz_rpc_server.c — libFuzzer target for the whole server side of rpc/:
 * each input is what one client sends on one connection (after the HTTP/2
 * preface and an empty SETTINGS frame when the first byte is even, raw
 * otherwise: HTTP/1.1 and sniffing). The server runs on a libuv loop in
 * this process with an echo method, a deferred method, a bidi stream and an
 * HTTP handler; the client socket is a blocking unix socket that writes the
 * input, half-closes and drains replies. After each input the loop runs
 * until the connection and every deferred call are gone, so ASan/LSan see
 * every stream freed.
 *
 *   make fuzz-rpc-server FUZZ_SECONDS=600
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct rpc_server *srv;
static char sock_path[108];
static int deferred_pending;

static void echo_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	if (len > 0 && req[0] == 'F')
		rpc_call_fail(call, RPC_NOT_FOUND, "no \xff such%");
	else
		rpc_call_reply(call, req, len);
}

struct deferred {
	uv_timer_t t;
	struct rpc_call *call;
};

static void deferred_closed(uv_handle_t *h)
{
	free(h->data);
	deferred_pending--;
}

static void deferred_fire(uv_timer_t *t)
{
	struct deferred *d = t->data;
	rpc_call_reply(d->call, "late", 4);
	uv_close((uv_handle_t *)t, deferred_closed);
}

static void slow_cb(struct rpc_call *call, const uint8_t *req, size_t len, void *ud)
{
	(void)ud;
	(void)req;
	struct deferred *d = malloc(sizeof(*d));
	d->call = call;
	uv_timer_init(&loop, &d->t);
	d->t.data = d;
	deferred_pending++;
	uv_timer_start(&d->t, deferred_fire, len % 3, 0);
}

static void s_open(struct rpc_stream *s, void *ud)
{
	(void)s;
	(void)ud;
}

static void s_message(struct rpc_stream *s, const uint8_t *msg, size_t len)
{
	if (len > 0 && msg[0] == 'C')
		rpc_stream_close(s, RPC_ABORTED, "closed");
	else
		rpc_stream_send(s, msg, len);
}

static void s_half(struct rpc_stream *s)
{
	rpc_stream_close(s, RPC_OK, NULL);
}

static void s_close(struct rpc_stream *s, int reason)
{
	(void)s;
	(void)reason;
}

static int http_cb(const char *method, const char *path, struct rpc_http_reply *reply, void *ud)
{
	(void)method;
	(void)ud;
	reply->body = path;
	reply->body_len = strlen(path);
	return path[1] == 'x' ? -1 : 0;
}

static void setup(void)
{
	uv_loop_init(&loop);
	struct rpc_server_config cfg = {0};
	cfg.max_recv_msg_size = 4096;
	cfg.stream_high_water = 256;
	if (rpc_server_new(&loop, &cfg, &srv) != 0)
		abort();
	static const struct rpc_stream_cbs cbs = {.on_open = s_open,
	                                          .on_message = s_message,
	                                          .on_half_close = s_half,
	                                          .on_close = s_close};
	rpc_server_register_unary(srv, "/f.S/Echo", echo_cb, NULL);
	rpc_server_register_unary(srv, "/f.S/Slow", slow_cb, NULL);
	rpc_server_register_stream(srv, "/f.S/Bidi", &cbs, NULL);
	rpc_server_set_http_handler(srv, http_cb, NULL);
	snprintf(sock_path, sizeof(sock_path), "/tmp/cairn-fuzz-%d.sock", (int)getpid());
	unlink(sock_path);
	char url[128];
	snprintf(url, sizeof(url), "unix://%s", sock_path);
	if (rpc_server_listen(srv, url, NULL) != 0)
		abort();
}

static void drain(int fd)
{
	char buf[65536];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		abort();
	fcntl(fd, F_SETFL, O_NONBLOCK);
	static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
	struct rpc_server_stats st;
	rpc_server_get_stats(srv, &st);
	uint64_t accepted = st.conns_accepted;
	if (size > 0 && data[0] % 2 == 0) {
		if (write(fd, preface, sizeof(preface) - 1) < 0)
			abort();
		data++;
		size--;
	}
	size_t off = 0;
	for (int spins = 0; spins < 100000; spins++) {
		if (off < size) {
			ssize_t n = write(fd, data + off, size - off);
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				off = size; /* the server hung up */
			if (off == size)
				shutdown(fd, SHUT_WR);
		} else if (size == 0 && spins == 0) {
			shutdown(fd, SHUT_WR);
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		drain(fd);
		rpc_server_get_stats(srv, &st);
		if (off == size && st.conns_accepted > accepted && st.conns_current == 0 &&
		    deferred_pending == 0)
			break;
	}
	close(fd);
	while (deferred_pending > 0 || (rpc_server_get_stats(srv, &st), st.conns_current > 0))
		uv_run(&loop, UV_RUN_ONCE);
	return 0;
}
