/*
 * client.c — the gRPC client: one HTTP/2 connection per rpc_client (a new
 * one when the last was lost or received GOAWAY), unary calls and streams
 * over nghttp2's client session, with the same I/O machinery as the server
 * (conn.c: flush once per loop turn).
 *
 * A call is a stream whose first message is queued and half-closed at once
 * and whose first response message is kept for the completion callback.
 * Every stream ends in finish(), which runs the user's callback exactly once
 * and frees the stream; it is reached from nghttp2's on_stream_close or
 * from the connection's teardown (connect failure, reset, client close) —
 * always from a loop callback, never from inside an API function.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "rpc/rpc_int.h"

#define CLIENT_DEFAULT_MAX_RECV (64u * 1024 * 1024)
#define CLIENT_STREAM_WINDOW    (1024 * 1024)
#define CLIENT_CONN_WINDOW      (16 * 1024 * 1024)

struct cconn {
	struct rpc_conn c; /* first: a struct rpc_conn * is a struct cconn * */
	uv_connect_t creq;
	int connect_error; /* the libuv error of a failed connect, else 0 */
};

struct rpc_client {
	struct rpc_ioctx ctx; /* first: the ioctx callbacks find the client */
	struct rpc_addr addr;
	char authority[300];
	size_t max_recv;
	nghttp2_session_callbacks *cbs;
	char **hdrs; /* name, value, name, value ... */
	size_t nhdrs;
	struct rpc_conn *conn;  /* where new streams go; NULL until needed */
	struct rpc_conn *conns; /* every live connection */
	bool closing;
	void (*close_cb)(void *);
	void *close_arg;
};

struct rpc_client_stream {
	struct rpc_client *cli;
	struct rpc_conn *conn;
	int32_t id;
	struct h2out out;
	struct grpc_deframer df;
	struct rpc_client_stream_cbs cbs;
	void *arg;
	rpc_client_unary_cb ucb; /* unary calls */
	uint8_t *resp;
	size_t resp_len;
	bool got_resp;
	int http_status;
	int grpc_status;
	bool have_status;
	char *message;
	int local_status; /* a status decided here (deadline, cancel, bad data) */
	const char *local_message;
	uv_timer_t timer;
	bool timer_inited;
	struct rpc_client_stream *prev, *next;
};

static struct rpc_client *conn_cli(const struct rpc_conn *conn)
{
	return conn->owner;
}

/* ---- finishing ---- */

static void timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static int http_to_grpc(int http)
{
	switch (http) {
	case 400:
		return RPC_INTERNAL;
	case 401:
		return RPC_UNAUTHENTICATED;
	case 403:
		return RPC_PERMISSION_DENIED;
	case 404:
		return RPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return RPC_UNAVAILABLE;
	default:
		return RPC_UNKNOWN;
	}
}

static void finish(struct rpc_client_stream *s, int conn_status, const char *conn_message)
{
	struct rpc_conn *conn = s->conn;
	if (conn != NULL) {
		RPC_DLIST_UNLINK(conn->streams, s);
		if (conn->h2 != NULL && !conn->closing && s->id > 0)
			nghttp2_session_set_stream_user_data(conn->h2, s->id, NULL);
		s->conn = NULL;
	}
	if (s->timer_inited)
		uv_timer_stop(&s->timer);
	int status;
	const char *message;
	char buf[64];
	if (s->local_status != 0) {
		status = s->local_status;
		message = s->local_message;
	} else if (s->have_status) {
		status = s->grpc_status;
		message = s->message != NULL ? s->message : "";
	} else if (s->http_status != 0 && s->http_status != 200) {
		status = http_to_grpc(s->http_status);
		snprintf(buf, sizeof(buf), "unexpected HTTP status code %d", s->http_status);
		message = buf;
	} else {
		status = conn_status;
		message = conn_message;
	}
	if (s->ucb != NULL) {
		if (status == RPC_OK && !s->got_resp) {
			status = RPC_INTERNAL;
			message = "grpc: server sent no response message";
		}
		s->ucb(status, message, status == RPC_OK ? s->resp : NULL,
		       status == RPC_OK ? s->resp_len : 0, s->arg);
	} else if (s->cbs.on_close != NULL) {
		s->cbs.on_close(s, status, message);
	}
	h2out_free(&s->out);
	grpc_deframer_free(&s->df);
	free(s->resp);
	free(s->message);
	if (s->timer_inited) {
		s->timer.data = s;
		uv_close((uv_handle_t *)&s->timer, timer_closed);
	} else {
		free(s);
	}
}

/* Ends the stream locally with `status` (reported once nghttp2 closes it). */
static void local_fail(struct rpc_client_stream *s, int status, const char *message)
{
	if (s->local_status == 0) {
		s->local_status = status;
		s->local_message = message;
	}
	if (s->conn != NULL && s->conn->h2 != NULL && s->id > 0) {
		nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
		conn_mark_dirty(s->conn);
	}
}

/* ---- nghttp2 callbacks ---- */

static int c_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
	(void)flags;
	(void)ud;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct rpc_client_stream *s =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	char v[16];
	if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen < sizeof(v)) {
		memcpy(v, value, valuelen);
		v[valuelen] = '\0';
		s->http_status = atoi(v);
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0 && valuelen < sizeof(v)) {
		memcpy(v, value, valuelen);
		v[valuelen] = '\0';
		s->grpc_status = atoi(v);
		s->have_status = true;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		free(s->message);
		s->message = strndup((const char *)value, valuelen);
		if (s->message != NULL)
			grpc_percent_decode(s->message, strlen(s->message));
	}
	return 0;
}

static int c_on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                           size_t len, void *ud)
{
	(void)flags;
	(void)ud;
	struct rpc_client_stream *s = nghttp2_session_get_stream_user_data(session, id);
	if (s == NULL || s->local_status != 0)
		return 0;
	while (s->local_status == 0) {
		struct grpc_msg m;
		int rv = grpc_deframe(&s->df, &data, &len, &m);
		if (rv == 0)
			break;
		if (rv == CAIRN_ETOOBIG) {
			local_fail(s, RPC_RESOURCE_EXHAUSTED,
			           "grpc: received message larger than max");
		} else if (rv < 0 || m.flag > 1) {
			local_fail(s, RPC_INTERNAL, "grpc: invalid message framing");
		} else if (m.flag == 1) {
			local_fail(s, RPC_INTERNAL, "grpc: compressed message not supported");
		} else if (s->ucb != NULL) {
			if (!s->got_resp) {
				s->resp = malloc(m.len > 0 ? m.len : 1);
				if (s->resp == NULL) {
					local_fail(s, RPC_RESOURCE_EXHAUSTED, "out of memory");
					break;
				}
				memcpy(s->resp, m.data, m.len);
				s->resp_len = m.len;
				s->got_resp = true;
			}
		} else if (s->cbs.on_message != NULL) {
			s->cbs.on_message(s, m.data, m.len);
		}
	}
	return 0;
}

static int c_on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *ud)
{
	(void)ud;
	struct rpc_client_stream *s = nghttp2_session_get_stream_user_data(session, id);
	if (s == NULL)
		return 0;
	char msg[64];
	snprintf(msg, sizeof(msg), "stream terminated by RST_STREAM with error code: %u",
	         error_code);
	finish(s, error_code == NGHTTP2_REFUSED_STREAM ? RPC_UNAVAILABLE : RPC_INTERNAL, msg);
	return 0;
}

/* ---- connections ---- */

static void cli_conn_read(struct rpc_conn *conn, const uint8_t *data, size_t len)
{
	ssize_t rv = nghttp2_session_mem_recv(conn->h2, data, len);
	if (rv < 0) {
		conn_close(conn, CAIRN_EHTTP2);
		return;
	}
	conn_mark_dirty(conn);
}

static void cli_conn_teardown(struct rpc_conn *conn, int reason)
{
	struct rpc_client *cli = conn_cli(conn);
	if (cli->conn == conn)
		cli->conn = NULL;
	int status = cli->closing ? RPC_CANCELLED : RPC_UNAVAILABLE;
	char buf[96];
	const char *msg = cli->closing              ? "client closed"
	                  : reason == CAIRN_ECLOSED ? "connection closed"
	                                            : cairn_strerror(reason);
	if (!conn->connected && !cli->closing) {
		/* No byte of any request left: the caller may retry it elsewhere. */
		const struct cconn *cc = (const struct cconn *)conn;
		snprintf(buf, sizeof(buf), "%s%s", RPC_CONNECT_FAILED,
		         cc->connect_error ? uv_strerror(cc->connect_error) : msg);
		msg = buf;
	}
	while (conn->streams != NULL)
		finish(conn->streams, status, msg);
}

static void client_maybe_done(struct rpc_client *cli);

static void cli_conn_freed(struct rpc_conn *conn)
{
	struct rpc_client *cli = conn_cli(conn);
	RPC_DLIST_UNLINK(cli->conns, conn);
	free(conn); /* the struct cconn it starts */
	client_maybe_done(cli);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct rpc_conn *conn = req->data;
	if (conn->closing)
		return;
	if (status < 0) {
		rpc_log("connect to %s: %s", conn_cli(conn)->authority, uv_strerror(status));
		((struct cconn *)conn)->connect_error = status;
		conn_close(conn, CAIRN_ECONNRESET);
		return;
	}
	conn->connected = true;
	if (conn->io.h.type == UV_TCP)
		uv_tcp_nodelay(&conn->io.tcp, 1);
	if (conn_start_read(conn) != 0) {
		conn_close(conn, CAIRN_EIO);
		return;
	}
	conn_mark_dirty(conn);
}

static int new_conn(struct rpc_client *cli, struct rpc_conn **out)
{
	struct cconn *cc = calloc(1, sizeof(*cc));
	if (cc == NULL)
		return CAIRN_ENOMEM;
	struct rpc_conn *conn = &cc->c;
	conn_init(conn, &cli->ctx, cli);
	if (nghttp2_session_client_new(&conn->h2, cli->cbs, conn) != 0) {
		free(cc);
		return CAIRN_ENOMEM;
	}
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CLIENT_STREAM_WINDOW},
	};
	nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, 2);
	nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0, CLIENT_CONN_WINDOW);
	int rv;
	cc->creq.data = conn;
	if (cli->addr.is_unix) {
		uv_pipe_init(cli->ctx.loop, &conn->io.pipe, 0);
		conn->io.h.data = conn;
		uv_pipe_connect(&cc->creq, &conn->io.pipe, cli->addr.path, on_connect);
		rv = 0;
	} else {
		uv_tcp_init(cli->ctx.loop, &conn->io.tcp);
		conn->io.h.data = conn;
		rv = uv_tcp_connect(&cc->creq, &conn->io.tcp,
		                    (const struct sockaddr *)&cli->addr.ss, on_connect);
	}
	RPC_DLIST_PUSH(cli->conns, conn);
	if (rv != 0) {
		rpc_log("connect to %s: %s", cli->authority, uv_strerror(rv));
		cc->connect_error = rv;
		conn_close(conn, CAIRN_EIO);
		return CAIRN_EIO;
	}
	*out = conn;
	return 0;
}

/* ---- API ---- */

int rpc_client_new(uv_loop_t *loop, const char *url, const struct rpc_client_config *cfg,
                   struct rpc_client **out)
{
	struct rpc_client *cli = calloc(1, sizeof(*cli));
	if (cli == NULL)
		return CAIRN_ENOMEM;
	int rv = rpc_parse_url(url, &cli->addr);
	if (rv != 0) {
		free(cli);
		return rv;
	}
	const char *host = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
	snprintf(cli->authority, sizeof(cli->authority), "%s",
	         cli->addr.is_unix ? "localhost" : host);
	cli->max_recv = cfg != NULL && cfg->max_recv_msg_size != 0 ? cfg->max_recv_msg_size
	                                                           : CLIENT_DEFAULT_MAX_RECV;
	if (cfg != NULL && cfg->nheaders > 0) {
		cli->hdrs = calloc(cfg->nheaders * 2, sizeof(char *));
		if (cli->hdrs == NULL) {
			free(cli);
			return CAIRN_ENOMEM;
		}
		cli->nhdrs = cfg->nheaders;
		for (size_t i = 0; i < cfg->nheaders; i++) {
			cli->hdrs[2 * i] = strdup(cfg->headers[i][0]);
			cli->hdrs[2 * i + 1] = strdup(cfg->headers[i][1]);
		}
	}
	rv = ioctx_init(&cli->ctx, loop);
	if (rv != 0 || nghttp2_session_callbacks_new(&cli->cbs) != 0) {
		for (size_t i = 0; i < 2 * cli->nhdrs; i++)
			free(cli->hdrs[i]);
		free(cli->hdrs);
		free(cli);
		return rv != 0 ? rv : CAIRN_ENOMEM;
	}
	cli->ctx.conn_read = cli_conn_read;
	cli->ctx.conn_teardown = cli_conn_teardown;
	cli->ctx.conn_freed = cli_conn_freed;
	nghttp2_session_callbacks_set_on_header_callback(cli->cbs, c_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cli->cbs, c_on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cli->cbs, c_on_stream_close);
	*out = cli;
	return 0;
}

static void deadline_cb(uv_timer_t *t)
{
	struct rpc_client_stream *s = t->data;
	local_fail(s, RPC_DEADLINE_EXCEEDED, "context deadline exceeded");
}

static int open_stream(struct rpc_client *cli, const char *path, uint64_t timeout_ms,
                       struct rpc_client_stream **out)
{
	if (cli->closing)
		return CAIRN_ECLOSED;
	if (cli->conn == NULL || cli->conn->closing ||
	    !nghttp2_session_check_request_allowed(cli->conn->h2)) {
		int rv = new_conn(cli, &cli->conn);
		if (rv != 0)
			return rv;
	}
	struct rpc_conn *conn = cli->conn;
	struct rpc_client_stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CAIRN_ENOMEM;
	s->cli = cli;
	grpc_deframer_init(&s->df, cli->max_recv);
	char tmo[16];
	nghttp2_nv nv[8 + 32];
	size_t n = 0;
	nv[n++] = rpc_nv(":method", "POST");
	nv[n++] = rpc_nv(":scheme", "http");
	nv[n++] = rpc_nv(":path", path);
	nv[n++] = rpc_nv(":authority", cli->authority);
	nv[n++] = rpc_nv("content-type", "application/grpc");
	nv[n++] = rpc_nv("te", "trailers");
	nv[n++] = rpc_nv("user-agent", "cairn-rpc/0");
	if (timeout_ms > 0) {
		grpc_timeout_format(timeout_ms, tmo);
		nv[n++] = rpc_nv("grpc-timeout", tmo);
	}
	for (size_t i = 0; i < cli->nhdrs && i < 32; i++)
		nv[n++] = rpc_nv(cli->hdrs[2 * i], cli->hdrs[2 * i + 1]);
	nghttp2_data_provider prd;
	prd.source.ptr = &s->out;
	prd.read_callback = h2out_read_cb;
	int32_t id = nghttp2_submit_request(conn->h2, NULL, nv, n, &prd, s);
	if (id < 0) {
		grpc_deframer_free(&s->df);
		free(s);
		return CAIRN_EHTTP2;
	}
	s->id = id;
	s->out.attached = true;
	s->conn = conn;
	RPC_DLIST_PUSH(conn->streams, s);
	if (timeout_ms > 0) {
		uv_timer_init(cli->ctx.loop, &s->timer);
		s->timer_inited = true;
		s->timer.data = s;
		uv_timer_start(&s->timer, deadline_cb, timeout_ms, 0);
	}
	conn_mark_dirty(conn);
	*out = s;
	return 0;
}

static int stream_push(struct rpc_client_stream *s, const void *msg, size_t len,
                       const ProtobufCMessage *pmsg)
{
	if (s->conn == NULL || s->out.fin || s->local_status != 0)
		return CAIRN_ECLOSED;
	int rv = h2out_push(&s->out, msg, len, pmsg);
	if (rv != 0)
		return rv;
	h2out_resume(&s->out, s->conn->h2, s->id);
	conn_mark_dirty(s->conn);
	return 0;
}

static int call(struct rpc_client *cli, const char *path, const void *req, size_t len,
                const ProtobufCMessage *pmsg, uint64_t timeout_ms, rpc_client_unary_cb cb,
                void *arg)
{
	if (cb == NULL)
		return CAIRN_EINVAL;
	struct rpc_client_stream *s;
	int rv = open_stream(cli, path, timeout_ms, &s);
	if (rv != 0)
		return rv;
	s->ucb = cb;
	s->arg = arg;
	rv = h2out_push(&s->out, req, len, pmsg);
	if (rv != 0) {
		/* Nothing queued yet: reset it; the callback must not run. */
		s->ucb = NULL;
		s->cbs.on_close = NULL;
		local_fail(s, RPC_CANCELLED, "");
		return rv;
	}
	s->out.fin = true;
	return 0;
}

int rpc_client_call(struct rpc_client *c, const char *path, const void *req, size_t len,
                    uint64_t timeout_ms, rpc_client_unary_cb cb, void *arg)
{
	return call(c, path, req, len, NULL, timeout_ms, cb, arg);
}

int rpc_client_call_msg(struct rpc_client *c, const char *path, const ProtobufCMessage *req,
                        uint64_t timeout_ms, rpc_client_unary_cb cb, void *arg)
{
	return call(c, path, NULL, 0, req, timeout_ms, cb, arg);
}

int rpc_client_stream_open(struct rpc_client *c, const char *path,
                           const struct rpc_client_stream_cbs *cbs, void *arg,
                           struct rpc_client_stream **out)
{
	if (cbs == NULL || cbs->on_close == NULL)
		return CAIRN_EINVAL;
	struct rpc_client_stream *s;
	int rv = open_stream(c, path, 0, &s);
	if (rv != 0)
		return rv;
	s->cbs = *cbs;
	s->arg = arg;
	*out = s;
	return 0;
}

int rpc_client_stream_send(struct rpc_client_stream *s, const void *msg, size_t len)
{
	return stream_push(s, msg, len, NULL);
}

int rpc_client_stream_send_msg(struct rpc_client_stream *s, const ProtobufCMessage *msg)
{
	return stream_push(s, NULL, 0, msg);
}

int rpc_client_stream_half_close(struct rpc_client_stream *s)
{
	if (s->conn == NULL || s->out.fin)
		return CAIRN_ECLOSED;
	s->out.fin = true;
	h2out_resume(&s->out, s->conn->h2, s->id);
	conn_mark_dirty(s->conn);
	return 0;
}

int rpc_client_stream_cancel(struct rpc_client_stream *s)
{
	if (s->conn == NULL || s->local_status != 0)
		return CAIRN_ECLOSED;
	local_fail(s, RPC_CANCELLED, "context canceled");
	return 0;
}

size_t rpc_client_stream_queued(const struct rpc_client_stream *s)
{
	return s->out.bytes;
}

void *rpc_client_stream_data(const struct rpc_client_stream *s)
{
	return s->arg;
}

static void client_freed(struct rpc_ioctx *ctx)
{
	struct rpc_client *cli = (struct rpc_client *)(void *)ctx;
	void (*cb)(void *) = cli->close_cb;
	void *arg = cli->close_arg;
	for (size_t i = 0; i < 2 * cli->nhdrs; i++)
		free(cli->hdrs[i]);
	free(cli->hdrs);
	nghttp2_session_callbacks_del(cli->cbs);
	free(cli);
	if (cb != NULL)
		cb(arg);
}

static void client_maybe_done(struct rpc_client *cli)
{
	if (cli->closing && cli->conns == NULL) {
		cli->ctx.closed_cb = client_freed;
		ioctx_close(&cli->ctx);
	}
}

static void close_timer_cb(uv_timer_t *t)
{
	struct rpc_client *cli = t->data; /* the ioctx, first in the client */
	struct rpc_conn *conn = cli->conns;
	while (conn != NULL) {
		struct rpc_conn *next = conn->next;
		conn_close(conn, CAIRN_ECANCELED);
		conn = next;
	}
	client_maybe_done(cli);
}

int rpc_client_close(struct rpc_client *c, void (*cb)(void *arg), void *arg)
{
	if (c->closing)
		return CAIRN_EBUSY;
	c->closing = true;
	c->close_cb = cb;
	c->close_arg = arg;
	/* From the loop, so no callback runs inside this function. */
	uv_timer_start(&c->ctx.timer, close_timer_cb, 0, 0);
	return 0;
}
