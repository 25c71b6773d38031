/*
 * server.c — the gRPC server: listeners, HTTP/2 sessions (nghttp2, server
 * side), method dispatch, unary calls with deferred replies, streams with a
 * bounded outbound queue, deadlines, graceful close. HTTP/1.1 requests on the
 * same port are handed to http1.c after the first bytes are sniffed.
 *
 * One struct h2s per HTTP/2 stream; the owner sees it as struct rpc_call
 * (unary) or struct rpc_stream (streaming), both of which are just an h2s.
 *
 * LIFE OF AN h2s (who may free it)
 *
 *   begin_headers ──► headers done ──► [unary] first message: handler(call)
 *        │                 │                 owner_holds = true until the
 *        │                 │                 owner ends it (reply/fail)
 *        │                 └─► [stream] on_open: owner_holds = true until
 *        │                       on_close has been called
 *        └─ h2_open = true until nghttp2's on_stream_close (or the connection
 *           goes: stream_gone())
 *
 *   The h2s is freed when h2_open and owner_holds are both false, by
 *   whichever of stream_gone() and the owner's final call comes second.
 *   A unary call whose stream is gone while the owner holds it is
 *   "cancelled": conn == NULL, and the owner's reply merely frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "rpc/http1.h"
#include "rpc/rpc_int.h"

#define DEFAULT_MAX_RECV      (1536 * 1024 + 512 * 1024)
#define DEFAULT_MAX_STREAMS   1000
#define DEFAULT_HIGH_WATER    (256 * 1024)
#define DEFAULT_CONN_INBOUND  (64u * 1024 * 1024)
#define DEFAULT_MAX_CONNS     10000
#define DEFAULT_CONN_OUTBOUND (16u * 1024 * 1024)
#define STREAM_WINDOW         (1024 * 1024)
#define CONN_WINDOW           (16 * 1024 * 1024)
#define MAX_HEADER_BYTES      (64 * 1024)
#define MAX_SPARE_STREAMS     1024

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(h2_preface) - 1)

struct method {
	struct rpc_method_stats st;
	char *path;
	rpc_unary_cb ucb;
	struct rpc_stream_cbs scbs;
	void *userdata;
	rpc_decode_check_cb check;
	void *check_arg;
	struct method *next;
};

struct listener {
	union rpc_io io;
	struct rpc_server *srv;
	struct listener *next;
};

struct rpc_server {
	struct rpc_ioctx ctx;
	struct rpc_server_config cfg;
	struct method *methods, *methods_tail;
	struct listener *listeners;
	struct rpc_conn *conns;
	rpc_http_cb http_cb;
	void *http_ud;
	struct rpc_server_stats stats;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	bool closing;
	int open_listeners;
	rpc_server_close_cb close_cb;
	void *close_arg;
	/* Freed h2s structs kept for the next streams (linked by next): under
	 * a thousand concurrent unary calls the calloc/free of one per call
	 * went through glibc's bins (tcache keeps only 7 per size). */
	struct h2s *spare;
	size_t nspare;
};

struct h2s {
	struct rpc_conn *conn; /* NULL once the HTTP/2 stream is gone */
	struct method *m;      /* NULL for unknown paths and once counted+gone */
	int32_t id;
	struct h2out out;
	struct grpc_deframer df;
	char *path;        /* path_buf, or allocated when longer */
	char path_buf[80]; /* every etcd method's path fits: no strndup per call */
	char *hdrs;        /* "name\0value\0" ..., hdrs_buf or allocated when longer */
	size_t hdrs_len, hdrs_cap;
	char hdrs_buf[256]; /* what grpc-go, etcdctl and python-grpc send fits */
	uv_timer_t timer;
	uint64_t timeout_ms;
	int http_error;
	bool http_get, http_head; /* a plain HTTP GET/HEAD over HTTP/2 */
	bool has_method;
	int close_reason;
	bool has_timeout, timer_inited;
	bool h2_open, owner_holds, dispatched, ended, final_sent, cancelled;
	bool headers_sent, bad, owner_closed, counted, want_writable;
	void *data;
	void (*cancel_cb)(struct rpc_call *, void *);
	void *cancel_arg;
	struct h2s *prev, *next;
};

struct rpc_call {
	struct h2s s;
};
struct rpc_stream {
	struct h2s s;
};

static struct rpc_call *as_call(struct h2s *s)
{
	return (struct rpc_call *)(void *)s;
}
static struct rpc_stream *as_stream(struct h2s *s)
{
	return (struct rpc_stream *)(void *)s;
}
static struct rpc_server *conn_srv(const struct rpc_conn *conn)
{
	return conn->owner;
}

const char *rpc_status_name(int code)
{
	static const char *const names[RPC_STATUS_COUNT] = {"OK",
	                                                    "CANCELLED",
	                                                    "UNKNOWN",
	                                                    "INVALID_ARGUMENT",
	                                                    "DEADLINE_EXCEEDED",
	                                                    "NOT_FOUND",
	                                                    "ALREADY_EXISTS",
	                                                    "PERMISSION_DENIED",
	                                                    "RESOURCE_EXHAUSTED",
	                                                    "FAILED_PRECONDITION",
	                                                    "ABORTED",
	                                                    "OUT_OF_RANGE",
	                                                    "UNIMPLEMENTED",
	                                                    "INTERNAL",
	                                                    "UNAVAILABLE",
	                                                    "DATA_LOSS",
	                                                    "UNAUTHENTICATED"};
	if (code < 0 || code >= RPC_STATUS_COUNT)
		return "UNKNOWN";
	return names[code];
}

/* ------------------------------------------------------------------------ */
/* h2s lifetime                                                             */
/* ------------------------------------------------------------------------ */

static void h2s_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Frees s; srv, when not NULL (the server is known to be alive), may keep
 * its memory for the next stream. */
static void h2s_free(struct rpc_server *srv, struct h2s *s)
{
	h2out_free(&s->out);
	grpc_deframer_free(&s->df);
	if (s->path != s->path_buf)
		free(s->path);
	if (s->hdrs != s->hdrs_buf)
		free(s->hdrs);
	if (srv != NULL && !s->timer_inited && srv->nspare < MAX_SPARE_STREAMS) {
		s->next = srv->spare;
		srv->spare = s;
		srv->nspare++;
	} else if (s->timer_inited) {
		s->timer.data = s;
		uv_close((uv_handle_t *)&s->timer, h2s_timer_closed);
	} else {
		free(s);
	}
}

static void count_handled(struct h2s *s, int code)
{
	if (s->counted || s->m == NULL)
		return;
	s->counted = true;
	if (code < 0 || code >= RPC_STATUS_COUNT)
		code = RPC_UNKNOWN;
	s->m->st.handled[code]++;
}

static void stop_timer(struct h2s *s)
{
	if (s->timer_inited)
		uv_timer_stop(&s->timer);
}

static void mark_cancelled(struct h2s *s)
{
	if (s->cancelled)
		return;
	s->cancelled = true;
	count_handled(s, RPC_CANCELLED);
	if (s->owner_holds && s->cancel_cb != NULL) {
		void (*cb)(struct rpc_call *, void *) = s->cancel_cb;
		s->cancel_cb = NULL;
		cb(as_call(s), s->cancel_arg);
	}
}

/* The HTTP/2 stream is gone (closed by nghttp2 or with its connection). */
static void stream_gone(struct h2s *s, int reason)
{
	struct rpc_conn *conn = s->conn;
	struct rpc_server *srv = conn != NULL ? conn_srv(conn) : NULL;
	if (conn != NULL) {
		RPC_DLIST_UNLINK(conn->streams, s);
		h2out_detach(&s->out);
		/* What the stream's deframer holds is charged to the connection
		 * (on_data_chunk): give it back, or every stream that ever took a
		 * message over several DATA frames would leak its buffer size into
		 * conn->inbound until the limit refused all large requests. */
		conn->inbound -= grpc_deframer_buffered(&s->df);
		grpc_deframer_free(&s->df);
		if (s->want_writable)
			conn->nwaiting--;
		if (conn->h2 != NULL && !conn->closing)
			nghttp2_session_set_stream_user_data(conn->h2, s->id, NULL);
		srv->stats.streams_current--;
	}
	s->conn = NULL;
	stop_timer(s);
	if (s->close_reason != 0)
		reason = s->close_reason;
	/* h2_open stays true while the owner's callbacks run, so that ending
	 * the call inside its cancel callback does not free it under us. */
	if (s->owner_holds) {
		if (s->m != NULL && s->m->st.streaming) {
			struct method *m = s->m;
			count_handled(s, reason == 0 ? s->out.status : RPC_CANCELLED);
			s->owner_holds = false;
			m->scbs.on_close(as_stream(s), reason);
		} else {
			mark_cancelled(s);
			s->m = NULL; /* the server may be freed before the owner replies */
		}
	}
	s->h2_open = false;
	if (s->owner_holds)
		return;
	h2s_free(srv, s);
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

static int submit_headers_with_data(struct h2s *s)
{
	nghttp2_nv nv[2] = {rpc_nv(":status", "200"), rpc_nv("content-type", "application/grpc")};
	nghttp2_data_provider prd;
	prd.source.ptr = &s->out;
	prd.read_callback = h2out_read_cb;
	int rv = nghttp2_submit_response(s->conn->h2, s->id, nv, 2, &prd);
	if (rv != 0) {
		rpc_log("nghttp2_submit_response: %s", nghttp2_strerror(rv));
		return CAIRN_EHTTP2;
	}
	s->headers_sent = true;
	s->out.attached = true;
	return 0;
}

/* Ends the stream with `code` and `message`: trailers after queued data, or a
 * Trailers-Only response when nothing was sent yet. */
static void send_status(struct h2s *s, int code, const char *message)
{
	if (s->ended || s->conn == NULL || s->conn->closing)
		return;
	s->ended = true;
	stop_timer(s);
	count_handled(s, code);
	if (s->headers_sent) {
		s->out.fin = true;
		s->out.trailers = true;
		s->out.status = code;
		s->out.message = message != NULL ? strdup(message) : NULL;
		h2out_resume(&s->out, s->conn->h2, s->id);
	} else {
		char codebuf[12], enc[1024];
		snprintf(codebuf, sizeof(codebuf), "%d", code);
		nghttp2_nv nv[4] = {rpc_nv(":status", "200"),
		                    rpc_nv("content-type", "application/grpc"),
		                    rpc_nv("grpc-status", codebuf)};
		size_t n = 3;
		if (message != NULL && message[0] != '\0') {
			grpc_percent_encode(message, strlen(message), enc, sizeof(enc));
			nv[n++] = rpc_nv("grpc-message", enc);
		}
		int rv = nghttp2_submit_response(s->conn->h2, s->id, nv, n, NULL);
		if (rv != 0)
			nghttp2_submit_rst_stream(s->conn->h2, NGHTTP2_FLAG_NONE, s->id,
			                          NGHTTP2_INTERNAL_ERROR);
		s->headers_sent = true;
	}
	conn_mark_dirty(s->conn);
}

static void send_http_error(struct h2s *s, int status)
{
	char st[8];
	snprintf(st, sizeof(st), "%d", status);
	nghttp2_nv nv[2] = {rpc_nv(":status", st), rpc_nv("content-type", "text/plain")};
	nghttp2_submit_response(s->conn->h2, s->id, nv, 2, NULL);
	s->ended = true;
	s->headers_sent = true;
	conn_mark_dirty(s->conn);
}

/* The client broke the gRPC protocol on this stream: answer `code` and tell
 * the owner, if it holds the stream, the way it would hear of a cancel. */
static void protocol_fail(struct h2s *s, int code, const char *message)
{
	s->bad = true;
	if (s->close_reason == 0)
		s->close_reason = CAIRN_EPROTO;
	send_status(s, code, message);
	if (s->owner_holds && !(s->m != NULL && s->m->st.streaming))
		mark_cancelled(s);
}

/* ------------------------------------------------------------------------ */
/* nghttp2 callbacks                                                        */
/* ------------------------------------------------------------------------ */

static struct h2s *stream_of(nghttp2_session *session, int32_t id)
{
	return nghttp2_session_get_stream_user_data(session, id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct rpc_conn *conn = ud;
	struct rpc_server *srv = conn_srv(conn);
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct h2s *s = srv->spare;
	if (s != NULL) {
		srv->spare = s->next;
		srv->nspare--;
		memset(s, 0, sizeof(struct rpc_call));
	} else if ((s = calloc(1, sizeof(struct rpc_call))) == NULL) {
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	s->conn = conn;
	s->id = frame->hd.stream_id;
	s->h2_open = true;
	s->out.acct = &conn->queued;
	grpc_deframer_init(&s->df, srv->cfg.max_recv_msg_size);
	RPC_DLIST_PUSH(conn->streams, s);
	nghttp2_session_set_stream_user_data(session, s->id, s);
	srv->stats.streams_started++;
	srv->stats.streams_current++;
	return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct h2s *s = stream_of(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	if (name_is(name, namelen, ":path")) {
		if (s->path != s->path_buf)
			free(s->path);
		if (valuelen < sizeof(s->path_buf)) {
			memcpy(s->path_buf, value, valuelen);
			s->path_buf[valuelen] = '\0';
			s->path = s->path_buf;
		} else {
			s->path = strndup((const char *)value, valuelen);
			if (s->path == NULL)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
	} else if (name_is(name, namelen, ":method")) {
		if (s->has_method)
			s->http_error = 400; /* one :method only */
		s->has_method = true;
		s->http_get = valuelen == 3 && memcmp(value, "GET", 3) == 0;
		s->http_head = valuelen == 4 && memcmp(value, "HEAD", 4) == 0;
		if (!(valuelen == 4 && memcmp(value, "POST", 4) == 0))
			s->http_error = 405;
	} else if (name_is(name, namelen, "content-type")) {
		if (valuelen < 16 || memcmp(value, "application/grpc", 16) != 0 ||
		    (valuelen > 16 && value[16] != '+' && value[16] != ';'))
			s->http_error = 415;
	} else if (name_is(name, namelen, "grpc-timeout")) {
		uint64_t ms;
		if (grpc_timeout_parse((const char *)value, valuelen, &ms) == 0) {
			s->has_timeout = true;
			s->timeout_ms = ms;
		}
	} else if (namelen > 0 && name[0] != ':' &&
	           s->hdrs_len + namelen + valuelen + 2 <= MAX_HEADER_BYTES &&
	           !memchr(name, 0, namelen) && !memchr(value, 0, valuelen)) {
		/* Kept as "name\0value\0" pairs: a NUL inside either (HTTP/2
		 * forbids it; nghttp2's HTTP checks are off, see rpc_server_new)
		 * would shift every pair after it, so such a header is dropped. */
		size_t need = s->hdrs_len + namelen + valuelen + 2;
		if (need > s->hdrs_cap) {
			size_t cap = s->hdrs_cap ? s->hdrs_cap : sizeof(s->hdrs_buf);
			while (cap < need)
				cap *= 2;
			if (cap == sizeof(s->hdrs_buf)) {
				s->hdrs = s->hdrs_buf;
			} else {
				bool inl = s->hdrs == s->hdrs_buf;
				char *nb = realloc(inl ? NULL : s->hdrs, cap);
				if (nb == NULL)
					return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
				if (inl)
					memcpy(nb, s->hdrs_buf, s->hdrs_len);
				s->hdrs = nb;
			}
			s->hdrs_cap = cap;
		}
		char *nh = s->hdrs;
		memcpy(nh + s->hdrs_len, name, namelen);
		nh[s->hdrs_len + namelen] = '\0';
		memcpy(nh + s->hdrs_len + namelen + 1, value, valuelen);
		nh[s->hdrs_len + namelen + 1 + valuelen] = '\0';
		s->hdrs_len += namelen + valuelen + 2;
	}
	return 0;
}

static struct method *find_method(struct rpc_server *srv, const char *path)
{
	for (struct method *m = srv->methods; m != NULL; m = m->next)
		if (strcmp(m->path, path) == 0)
			return m;
	return NULL;
}

/* Go's %q of a header value into out (cap >= 8 bytes; a longer value is
 * cut): the text in double quotes, '"' and '\\' escaped, control bytes as
 * \n, \t, ... or \xNN. Bytes above 0x7e are written as \xNN, Go's form
 * for invalid UTF-8 (Go keeps printable UTF-8 as it is; header values are
 * ASCII in practice). */
static void go_quote(const char *in, char *out, size_t cap)
{
	static const char ctl[] = "abtnvfr"; /* \a (7) to \r (13) */
	size_t o = 0;
	out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 6 < cap; p++) {
		if (*p == '"' || *p == '\\')
			o += (size_t)sprintf(out + o, "\\%c", *p);
		else if (*p >= 7 && *p <= 13)
			o += (size_t)sprintf(out + o, "\\%c", ctl[*p - 7]);
		else if (*p < 0x20 || *p > 0x7e)
			o += (size_t)sprintf(out + o, "\\x%02x", *p);
		else
			out[o++] = (char)*p;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* grpc-go's answer to a path no method is registered at: the service is
 * what precedes the last '/', and a path without one is malformed. */
static void unknown_method(struct rpc_server *srv, struct h2s *s)
{
	char msg[512];
	const char *p = s->path[0] == '/' ? s->path + 1 : s->path;
	const char *slash = strrchr(p, '/');
	if (slash == NULL) {
		char quoted[300];
		go_quote(s->path, quoted, sizeof(quoted));
		snprintf(msg, sizeof(msg), "malformed method name: %s", quoted);
	} else {
		size_t svclen = (size_t)(slash - p);
		bool service_known = false;
		for (struct method *m = srv->methods; m != NULL; m = m->next)
			if (strncmp(m->path + 1, p, svclen + 1) == 0)
				service_known = true;
		if (service_known)
			snprintf(msg, sizeof(msg), "unknown method %s for service %.*s", slash + 1,
			         (int)svclen, p);
		else
			snprintf(msg, sizeof(msg), "unknown service %.*s", (int)svclen, p);
	}
	srv->stats.unknown_method++;
	s->bad = true;
	send_status(s, RPC_UNIMPLEMENTED, msg);
}

static void deadline_cb(uv_timer_t *t)
{
	struct h2s *s = t->data;
	if (s->ended || s->conn == NULL)
		return;
	s->close_reason = CAIRN_ETIMEOUT;
	s->bad = true;
	send_status(s, RPC_DEADLINE_EXCEEDED, "context deadline exceeded");
	if (s->owner_holds && !(s->m != NULL && s->m->st.streaming))
		mark_cancelled(s);
}

static void http_answer(struct rpc_server *srv, bool get, bool head, const char *path,
                        struct rpc_http_reply *reply);
static const char *find_header(const struct h2s *s, const char *name);

/* A plain GET/HEAD over HTTP/2 (curl --http2-prior-knowledge /health): the
 * same handler as HTTP/1.1, the body as DATA. */
static void http2_plain(struct h2s *s)
{
	struct rpc_server *srv = conn_srv(s->conn);
	struct rpc_http_reply reply;
	http_answer(srv, s->http_get, s->http_head, s->path, &reply);
	char st[12], clen[24];
	snprintf(st, sizeof(st), "%d", reply.status > 0 ? reply.status : 200);
	snprintf(clen, sizeof(clen), "%zu", reply.body_len);
	nghttp2_nv nv[3] = {rpc_nv(":status", st),
	                    rpc_nv("content-type", reply.content_type != NULL
	                                               ? reply.content_type
	                                               : "text/plain; charset=utf-8"),
	                    rpc_nv("content-length", clen)};
	s->bad = true;
	s->ended = true;
	s->headers_sent = true;
	nghttp2_data_provider prd = {.source.ptr = &s->out, .read_callback = h2out_read_cb};
	if (s->http_head || reply.body_len == 0 ||
	    h2out_push_raw(&s->out, reply.body, reply.body_len) != 0) {
		nghttp2_submit_response(s->conn->h2, s->id, nv, 3, NULL);
	} else {
		s->out.fin = true;
		s->out.attached = true;
		nghttp2_submit_response(s->conn->h2, s->id, nv, 3, &prd);
	}
	conn_mark_dirty(s->conn);
}

static void request_ready(struct h2s *s)
{
	struct rpc_conn *conn = s->conn;
	struct rpc_server *srv = conn_srv(conn);
	if ((s->http_get || s->http_head) && s->path != NULL) {
		http2_plain(s);
		return;
	}
	if (s->http_error != 0 || s->path == NULL || s->path[0] != '/' || !s->has_method) {
		s->bad = true;
		send_http_error(s, s->http_error != 0 ? s->http_error : 400);
		return;
	}
	if (conn->queued > srv->cfg.conn_outbound_limit) {
		/* The client is not taking its replies: take no new work. */
		srv->stats.streams_refused++;
		s->bad = true;
		s->ended = true;
		nghttp2_submit_rst_stream(conn->h2, NGHTTP2_FLAG_NONE, s->id,
		                          NGHTTP2_REFUSED_STREAM);
		conn_mark_dirty(conn);
		return;
	}
	struct method *m = find_method(srv, s->path);
	if (m == NULL) {
		unknown_method(srv, s);
		return;
	}
	s->m = m;
	m->st.started++;
	const char *enc = find_header(s, "grpc-encoding");
	if (enc != NULL && enc[0] != '\0' && strcmp(enc, "identity") != 0) {
		/* grpc-go fails the stream as soon as it is opened when it has no
		 * decompressor for the request's grpc-encoding, whether or not a
		 * message is compressed; we have none. */
		char text[256], quoted[192];
		go_quote(enc, quoted, sizeof(quoted));
		snprintf(text, sizeof(text),
		         "grpc: Decompressor is not installed for grpc-encoding %s", quoted);
		s->bad = true;
		send_status(s, RPC_UNIMPLEMENTED, text);
		return;
	}
	if (s->has_timeout) {
		uv_timer_init(conn->ctx->loop, &s->timer);
		s->timer_inited = true;
		s->timer.data = s;
		uv_timer_start(&s->timer, deadline_cb, s->timeout_ms, 0);
	}
	if (m->st.streaming) {
		s->owner_holds = true;
		m->scbs.on_open(as_stream(s), m->userdata);
	}
}

/* The owner's decode check refused a message: grpc-go's words, which
 * differ between a unary request and a stream's message. */
static void undecodable(struct h2s *s, const char *why)
{
	char text[512];
	snprintf(text, sizeof(text), "%s%s",
	         s->m->st.streaming ? "grpc: failed to unmarshal the received message: "
	                            : "grpc: error unmarshalling request: ",
	         why);
	protocol_fail(s, RPC_INTERNAL, text);
}

static void deliver(struct h2s *s, const uint8_t *msg, size_t len)
{
	struct method *m = s->m;
	m->st.msg_received++;
	if (m->st.streaming ? s->owner_closed || s->ended || m->scbs.on_message == NULL
	                    : s->dispatched)
		return; /* what follows a unary request is ignored, as by grpc-go */
	char why[256];
	if (m->check != NULL && m->check(msg, len, m->check_arg, why, sizeof(why)) != 0) {
		undecodable(s, why);
		return;
	}
	if (!m->st.streaming) {
		s->dispatched = true;
		s->owner_holds = true;
		m->ucb(as_call(s), msg, len, m->userdata);
	} else {
		m->scbs.on_message(as_stream(s), msg, len);
	}
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
	struct rpc_conn *conn = ud;
	struct rpc_server *srv = conn_srv(conn);
	(void)flags;
	struct h2s *s = stream_of(session, id);
	if (s == NULL || s->bad || s->m == NULL)
		return 0;
	size_t before = grpc_deframer_buffered(&s->df);
	while (!s->bad) {
		struct grpc_msg msg;
		int rv = grpc_deframe(&s->df, &data, &len, &msg);
		if (rv == 0)
			break;
		if (rv == CAIRN_ETOOBIG) {
			char text[128];
			snprintf(text, sizeof(text),
			         "grpc: received message larger than max (%u vs. %zu)",
			         s->df.too_big, srv->cfg.max_recv_msg_size);
			protocol_fail(s, RPC_RESOURCE_EXHAUSTED, text);
		} else if (rv < 0) {
			protocol_fail(s, RPC_INTERNAL, cairn_strerror(rv));
		} else if (msg.flag == 1) {
			/* Any other grpc-encoding was refused when the stream opened. */
			protocol_fail(s, RPC_INTERNAL,
			              "grpc: compressed flag set with identity or empty encoding");
		} else if (msg.flag != 0) {
			char text[64];
			snprintf(text, sizeof(text), "grpc: received unexpected payload format %u",
			         msg.flag);
			protocol_fail(s, RPC_INTERNAL, text);
		} else {
			deliver(s, msg.data, msg.len);
		}
	}
	size_t after = grpc_deframer_buffered(&s->df);
	conn->inbound = conn->inbound + after - before;
	if (after > before && conn->inbound > srv->cfg.conn_inbound_limit && !s->bad)
		protocol_fail(s, RPC_RESOURCE_EXHAUSTED, "grpc: connection inbound limit reached");
	if (s->bad) {
		conn->inbound -= grpc_deframer_buffered(&s->df);
		grpc_deframer_free(&s->df);
	}
	return 0;
}

/* The client's END_STREAM. grpc-go's reader then returns io.EOF between
 * messages and io.ErrUnexpectedEOF inside one; a unary call answers either
 * as status.Convert does (UNKNOWN "EOF" / "unexpected EOF"), a stream's
 * RecvMsg turns the second into INTERNAL and etcd returns it. */
static void remote_end(struct h2s *s)
{
	if (s->bad || s->m == NULL)
		return;
	if (!grpc_deframer_idle(&s->df)) {
		protocol_fail(s, s->m->st.streaming ? RPC_INTERNAL : RPC_UNKNOWN, "unexpected EOF");
		return;
	}
	if (!s->m->st.streaming) {
		if (!s->dispatched) {
			s->bad = true;
			send_status(s, RPC_UNKNOWN, "EOF");
		}
	} else if (s->owner_holds && !s->owner_closed && !s->ended &&
	           s->m->scbs.on_half_close != NULL) {
		s->m->scbs.on_half_close(as_stream(s));
	}
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	(void)ud;
	struct h2s *s;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		s = stream_of(session, frame->hd.stream_id);
		if (s == NULL)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			request_ready(s);
		if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && s->h2_open)
			remote_end(s);
		break;
	case NGHTTP2_DATA:
		s = stream_of(session, frame->hd.stream_id);
		if (s != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			remote_end(s);
		break;
	default:
		break;
	}
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	(void)ud;
	if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	struct h2s *s = stream_of(session, frame->hd.stream_id);
	if (s == NULL)
		return 0;
	s->final_sent = true;
	/* Like grpc-go: once our side is done, stop a client that is still
	 * sending (an oversized message, a refused stream). */
	if (!nghttp2_session_get_stream_remote_close(session, s->id))
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *ud)
{
	(void)ud;
	(void)error_code;
	struct h2s *s = stream_of(session, id);
	if (s != NULL)
		stream_gone(s, s->final_sent ? 0 : CAIRN_ECANCELED);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static int start_h2(struct rpc_conn *conn)
{
	struct rpc_server *srv = conn_srv(conn);
	nghttp2_mem mem = conn_h2_mem(conn);
	int rv = nghttp2_session_server_new3(&conn->h2, srv->cbs, conn, srv->opt, &mem);
	if (rv != 0)
		return CAIRN_ENOMEM;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->cfg.max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES},
	};
	nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
	if (srv->closing)
		nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	conn->proto = CONN_H2;
	return 0;
}

static void h2_feed(struct rpc_conn *conn, const uint8_t *data, size_t len)
{
	ssize_t rv = nghttp2_session_mem_recv(conn->h2, data, len);
	if (rv < 0) {
		conn_srv(conn)->stats.protocol_errors++;
		conn_close(conn, CAIRN_EHTTP2);
		return;
	}
	conn_mark_dirty(conn);
}

static int in_append(struct rpc_conn *conn, const uint8_t *data, size_t len)
{
	if (conn->in_len + len > conn->in_cap) {
		size_t cap = conn->in_cap ? conn->in_cap : 1024;
		while (cap < conn->in_len + len)
			cap *= 2;
		uint8_t *n = realloc(conn->in, cap);
		if (n == NULL)
			return CAIRN_ENOMEM;
		conn->in = n;
		conn->in_cap = cap;
	}
	memcpy(conn->in + conn->in_len, data, len);
	conn->in_len += len;
	return 0;
}

static void http1_serve(struct rpc_conn *conn);

static void srv_conn_read(struct rpc_conn *conn, const uint8_t *data, size_t len)
{
	struct rpc_server *srv = conn_srv(conn);
	srv->stats.bytes_received += len;
	if (conn->proto == CONN_H2) {
		h2_feed(conn, data, len);
		return;
	}
	if (in_append(conn, data, len) != 0) {
		conn_close(conn, CAIRN_ENOMEM);
		return;
	}
	if (conn->proto == CONN_SNIFF) {
		size_t n = conn->in_len < H2_PREFACE_LEN ? conn->in_len : H2_PREFACE_LEN;
		if (memcmp(conn->in, h2_preface, n) != 0) {
			conn->proto = CONN_HTTP1;
		} else if (n < H2_PREFACE_LEN) {
			return; /* could still be either */
		} else {
			if (start_h2(conn) != 0) {
				conn_close(conn, CAIRN_ENOMEM);
				return;
			}
			uint8_t *buf = conn->in;
			size_t blen = conn->in_len;
			conn->in = NULL;
			conn->in_len = conn->in_cap = 0;
			h2_feed(conn, buf, blen);
			free(buf);
			return;
		}
	}
	http1_serve(conn);
}

/* Asks the owner's HTTP handler, or answers 405/404/500 itself. */
static void http_answer(struct rpc_server *srv, bool get, bool head, const char *path,
                        struct rpc_http_reply *reply)
{
	srv->stats.http1_requests++;
	*reply = (struct rpc_http_reply){200, NULL, NULL, 0};
	if (!get && !head)
		*reply = (struct rpc_http_reply){405, NULL, "method not allowed\n", 19};
	else if (srv->http_cb == NULL)
		*reply = (struct rpc_http_reply){404, NULL, "not found\n", 10};
	else if (srv->http_cb(get ? "GET" : "HEAD", path, reply, srv->http_ud) != 0)
		*reply = (struct rpc_http_reply){500, NULL, "internal error\n", 15};
}

/* Answers the HTTP/1.1 requests in conn->in, one at a time: the next is
 * parsed when the previous response has been written (srv_conn_flushed). */
static void http1_serve(struct rpc_conn *conn)
{
	struct rpc_server *srv = conn_srv(conn);
	while (!conn->writing && !conn->closing && !conn->close_when_flushed && conn->in_len > 0) {
		struct http1_request req;
		int n = http1_parse((const char *)conn->in, conn->in_len, &req);
		if (n == 0)
			return;
		struct rpc_http_reply reply = {400, NULL, "bad request\n", 12};
		if (n < 0) {
			if (n == CAIRN_ETOOBIG)
				reply.status = 431;
			req.keep_alive = false;
			req.head = false;
			n = (int)conn->in_len;
		} else {
			http_answer(srv, req.get, req.head, req.path, &reply);
		}
		uint8_t *out;
		size_t outlen;
		if (http1_format_response(&reply, req.keep_alive, req.head, &out, &outlen) != 0) {
			conn_close(conn, CAIRN_ENOMEM);
			return;
		}
		memmove(conn->in, conn->in + n, conn->in_len - (size_t)n);
		conn->in_len -= (size_t)n;
		if (!req.keep_alive)
			conn->close_when_flushed = true;
		srv->stats.bytes_sent += outlen;
		int rv = conn_write_raw(conn, out, outlen);
		free(out);
		if (rv != 0) {
			conn_close(conn, rv);
			return;
		}
		if (conn->close_when_flushed && !conn->writing) {
			conn_close(conn, CAIRN_ECLOSED);
			return;
		}
	}
}

static void srv_conn_flushed(struct rpc_conn *conn)
{
	struct rpc_server *srv = conn_srv(conn);
	if (conn->proto == CONN_HTTP1) {
		http1_serve(conn);
		return;
	}
	if (conn->nwaiting > 0) {
		size_t low = srv->cfg.stream_high_water / 2;
		for (struct h2s *s = conn->streams; s != NULL && conn->nwaiting > 0; s = s->next) {
			if (!s->want_writable || s->out.bytes >= low)
				continue;
			s->want_writable = false;
			conn->nwaiting--;
			if (s->owner_holds && !s->owner_closed && s->m->scbs.on_writable != NULL)
				s->m->scbs.on_writable(as_stream(s));
		}
	}
}

static void srv_conn_teardown(struct rpc_conn *conn, int reason)
{
	struct rpc_server *srv = conn_srv(conn);
	/* What the owner hears (rpc.h, on_close): we closed it, or it was lost
	 * (peer gone, I/O or HTTP/2 error; `reason` tells which, for logs). */
	(void)reason;
	int why = srv->closing ? CAIRN_ECLOSED : CAIRN_ECONNRESET;
	while (conn->streams != NULL)
		stream_gone(conn->streams, why);
	conn->inbound = 0;
}

static void check_done(struct rpc_server *srv);

static void srv_conn_freed(struct rpc_conn *conn)
{
	struct rpc_server *srv = conn_srv(conn);
	RPC_DLIST_UNLINK(srv->conns, conn);
	srv->stats.conns_current--;
	free(conn);
	if (srv->closing)
		check_done(srv);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct rpc_server *srv = l->srv;
	if (status < 0 || srv->closing)
		return;
	struct rpc_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL)
		return;
	conn_init(conn, &srv->ctx, srv);
	if (l->io.h.type == UV_TCP)
		uv_tcp_init(srv->ctx.loop, &conn->io.tcp);
	else
		uv_pipe_init(srv->ctx.loop, &conn->io.pipe, 0);
	conn->io.h.data = conn;
	RPC_DLIST_PUSH(srv->conns, conn);
	srv->stats.conns_current++;
	if (uv_accept(server, &conn->io.s) != 0) {
		conn_close(conn, CAIRN_EIO);
		return;
	}
	if (srv->stats.conns_current > srv->cfg.max_connections) {
		srv->stats.conns_rejected++;
		conn_close(conn, CAIRN_EBUSY);
		return;
	}
	srv->stats.conns_accepted++;
	conn->connected = true;
	if (l->io.h.type == UV_TCP)
		uv_tcp_nodelay(&conn->io.tcp, 1);
	if (conn_start_read(conn) != 0)
		conn_close(conn, CAIRN_EIO);
}

/* ------------------------------------------------------------------------ */
/* Server API                                                               */
/* ------------------------------------------------------------------------ */

int rpc_server_new(uv_loop_t *loop, const struct rpc_server_config *cfg, struct rpc_server **out)
{
	struct rpc_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return CAIRN_ENOMEM;
	if (cfg != NULL)
		srv->cfg = *cfg;
	if (srv->cfg.max_recv_msg_size == 0)
		srv->cfg.max_recv_msg_size = DEFAULT_MAX_RECV;
	if (srv->cfg.max_concurrent_streams == 0)
		srv->cfg.max_concurrent_streams = DEFAULT_MAX_STREAMS;
	if (srv->cfg.stream_high_water == 0)
		srv->cfg.stream_high_water = DEFAULT_HIGH_WATER;
	if (srv->cfg.conn_inbound_limit == 0)
		srv->cfg.conn_inbound_limit = DEFAULT_CONN_INBOUND;
	if (srv->cfg.max_connections == 0)
		srv->cfg.max_connections = DEFAULT_MAX_CONNS;
	if (srv->cfg.conn_outbound_limit == 0)
		srv->cfg.conn_outbound_limit = DEFAULT_CONN_OUTBOUND;
	if (srv->cfg.max_recv_msg_size > UINT32_MAX)
		srv->cfg.max_recv_msg_size = UINT32_MAX;
	int rv = ioctx_init(&srv->ctx, loop);
	if (rv != 0) {
		free(srv);
		return rv;
	}
	srv->ctx.conn_read = srv_conn_read;
	srv->ctx.conn_teardown = srv_conn_teardown;
	srv->ctx.conn_freed = srv_conn_freed;
	srv->ctx.conn_flushed = srv_conn_flushed;
	if (nghttp2_session_callbacks_new(&srv->cbs) != 0 || nghttp2_option_new(&srv->opt) != 0) {
		nghttp2_session_callbacks_del(srv->cbs);
		free(srv);
		return CAIRN_ENOMEM;
	}
	/* nghttp2's HTTP messaging checks refuse (RST_STREAM PROTOCOL_ERROR) an
	 * :authority that grpc-go sends as given, e.g. "http://host:port" when
	 * etcdctl --cluster dials the member URLs; etcd (Go's HTTP/2) accepts
	 * it. We need none of those checks: request_ready refuses a request
	 * without one :method and a :path starting with '/', and the gRPC
	 * framing, not content-length, delimits messages. */
	nghttp2_option_set_no_http_messaging(srv->opt, 1);
	/* nghttp2 keeps up to max-concurrent-streams closed streams per session
	 * for RFC 7540 priorities, which gRPC clients do not use: under 10
	 * unary calls per connection every call left a 256-byte stream struct
	 * behind (fresh heap, 25 MiB for 100 connections) and a malloc that
	 * missed the connection's block cache. */
	nghttp2_option_set_no_closed_streams(srv->opt, 1);
	nghttp2_session_callbacks_set_on_begin_headers_callback(srv->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(srv->cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(srv->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv->cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_send_callback(srv->cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(srv->cbs, on_stream_close);
	*out = srv;
	return 0;
}

static void listener_free(uv_handle_t *h)
{
	free(h->data);
}

int rpc_server_listen(struct rpc_server *srv, const char *url, int *port_out)
{
	struct rpc_addr addr;
	if (srv->closing)
		return CAIRN_ECLOSED;
	if (rpc_parse_url(url, &addr) != 0)
		return CAIRN_EADDR;
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return CAIRN_ENOMEM;
	l->srv = srv;
	int rv;
	if (addr.is_unix) {
		uv_pipe_init(srv->ctx.loop, &l->io.pipe, 0);
		rv = uv_pipe_bind(&l->io.pipe, addr.path);
	} else {
		uv_tcp_init(srv->ctx.loop, &l->io.tcp);
		rv = uv_tcp_bind(&l->io.tcp, (const struct sockaddr *)&addr.ss, 0);
	}
	l->io.h.data = l;
	if (rv == 0)
		rv = uv_listen(&l->io.s, 1024, on_connection);
	if (rv != 0) {
		rpc_log("listen on %s: %s", url, uv_strerror(rv));
		uv_close(&l->io.h, listener_free);
		return CAIRN_EIO;
	}
	if (port_out != NULL) {
		*port_out = 0;
		if (!addr.is_unix) {
			struct sockaddr_storage ss;
			int len = sizeof(ss);
			if (uv_tcp_getsockname(&l->io.tcp, (struct sockaddr *)&ss, &len) == 0)
				*port_out = ss.ss_family == AF_INET6
				                ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
				                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
	}
	l->next = srv->listeners;
	srv->listeners = l;
	srv->open_listeners++;
	return 0;
}

static int add_method(struct rpc_server *srv, const char *path, struct method **out)
{
	if (path == NULL || path[0] != '/')
		return CAIRN_EINVAL;
	if (find_method(srv, path) != NULL)
		return CAIRN_EEXIST;
	struct method *m = calloc(1, sizeof(*m));
	if (m == NULL || (m->path = strdup(path)) == NULL) {
		free(m);
		return CAIRN_ENOMEM;
	}
	m->st.path = m->path;
	if (srv->methods_tail != NULL)
		srv->methods_tail->next = m;
	else
		srv->methods = m;
	srv->methods_tail = m;
	*out = m;
	return 0;
}

int rpc_server_register_unary(struct rpc_server *srv, const char *path, rpc_unary_cb cb,
                              void *userdata)
{
	struct method *m;
	if (cb == NULL)
		return CAIRN_EINVAL;
	int rv = add_method(srv, path, &m);
	if (rv != 0)
		return rv;
	m->ucb = cb;
	m->userdata = userdata;
	return 0;
}

int rpc_server_register_stream(struct rpc_server *srv, const char *path,
                               const struct rpc_stream_cbs *cbs, void *userdata)
{
	struct method *m;
	if (cbs == NULL || cbs->on_open == NULL || cbs->on_close == NULL)
		return CAIRN_EINVAL;
	int rv = add_method(srv, path, &m);
	if (rv != 0)
		return rv;
	m->st.streaming = true;
	m->scbs = *cbs;
	m->userdata = userdata;
	return 0;
}

int rpc_server_set_decode_check(struct rpc_server *srv, const char *path, rpc_decode_check_cb cb,
                                void *arg)
{
	struct method *m = find_method(srv, path);
	if (m == NULL)
		return CAIRN_ENOTFOUND;
	m->check = cb;
	m->check_arg = arg;
	return 0;
}

void rpc_server_set_http_handler(struct rpc_server *srv, rpc_http_cb cb, void *userdata)
{
	srv->http_cb = cb;
	srv->http_ud = userdata;
}

void rpc_server_get_stats(const struct rpc_server *srv, struct rpc_server_stats *out)
{
	*out = srv->stats;
}

void rpc_server_foreach_method(const struct rpc_server *srv,
                               void (*cb)(const struct rpc_method_stats *m, void *arg), void *arg)
{
	for (const struct method *m = srv->methods; m != NULL; m = m->next)
		cb(&m->st, arg);
}

static void server_freed(struct rpc_ioctx *ctx)
{
	struct rpc_server *srv = (struct rpc_server *)(void *)ctx;
	rpc_server_close_cb cb = srv->close_cb;
	void *arg = srv->close_arg;
	struct method *m = srv->methods;
	while (m != NULL) {
		struct method *n = m->next;
		free(m->path);
		free(m);
		m = n;
	}
	while (srv->spare != NULL) {
		struct h2s *s = srv->spare;
		srv->spare = s->next;
		free(s);
	}
	nghttp2_session_callbacks_del(srv->cbs);
	nghttp2_option_del(srv->opt);
	free(srv);
	if (cb != NULL)
		cb(arg);
}

static void check_done(struct rpc_server *srv)
{
	if (srv->open_listeners > 0 || srv->conns != NULL)
		return;
	srv->ctx.closed_cb = server_freed;
	ioctx_close(&srv->ctx);
}

static void listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct rpc_server *srv = l->srv;
	free(l);
	srv->open_listeners--;
	check_done(srv);
}

static void grace_cb(uv_timer_t *t)
{
	struct rpc_server *srv = t->data; /* the ioctx, first in the server */
	struct rpc_conn *conn = srv->conns;
	while (conn != NULL) {
		struct rpc_conn *next = conn->next;
		conn_close(conn, CAIRN_ECLOSED);
		conn = next;
	}
}

int rpc_server_close(struct rpc_server *srv, uint64_t grace_ms, rpc_server_close_cb cb, void *arg)
{
	if (srv->closing)
		return CAIRN_EBUSY;
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_arg = arg;
	for (struct listener *l = srv->listeners; l != NULL; l = l->next)
		uv_close(&l->io.h, listener_closed);
	srv->listeners = NULL;
	for (struct rpc_conn *conn = srv->conns; conn != NULL; conn = conn->next) {
		if (conn->h2 != NULL) {
			nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
			                      nghttp2_session_get_last_proc_stream_id(conn->h2),
			                      NGHTTP2_NO_ERROR, NULL, 0);
			conn_mark_dirty(conn);
		} else if (!conn->writing) {
			conn->close_when_flushed = true;
			conn_mark_dirty(conn);
		} else {
			conn->close_when_flushed = true;
		}
	}
	uv_timer_start(&srv->ctx.timer, grace_cb, grace_ms, 0);
	check_done(srv);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Calls and streams                                                        */
/* ------------------------------------------------------------------------ */

/* The owner ends its hold; true when the call is still deliverable. */
static bool call_end_hold(struct h2s *s)
{
	s->owner_holds = false;
	s->cancel_cb = NULL;
	if (s->cancelled || s->ended || s->conn == NULL || s->conn->closing) {
		if (!s->h2_open)
			h2s_free(NULL, s); /* the stream is gone: the server may be too */
		return false;
	}
	return true;
}

static int call_reply(struct rpc_call *call, const void *msg, size_t len,
                      const ProtobufCMessage *pmsg)
{
	struct h2s *s = &call->s;
	if (!call_end_hold(s))
		return 0;
	int rv = h2out_push(&s->out, msg, len, pmsg);
	if (rv == 0)
		rv = submit_headers_with_data(s);
	if (rv != 0) {
		send_status(s, RPC_INTERNAL, cairn_strerror(rv));
		return rv;
	}
	s->m->st.msg_sent++;
	send_status(s, RPC_OK, NULL);
	return 0;
}

int rpc_call_reply(struct rpc_call *call, const void *msg, size_t len)
{
	return call_reply(call, msg, len, NULL);
}

int rpc_call_reply_msg(struct rpc_call *call, const ProtobufCMessage *msg)
{
	return call_reply(call, NULL, 0, msg);
}

int rpc_call_fail(struct rpc_call *call, int grpc_status, const char *message)
{
	struct h2s *s = &call->s;
	if (grpc_status <= 0 || grpc_status >= RPC_STATUS_COUNT)
		grpc_status = RPC_UNKNOWN;
	if (call_end_hold(s))
		send_status(s, grpc_status, message);
	return 0;
}

bool rpc_call_cancelled(const struct rpc_call *call)
{
	return call->s.cancelled;
}

void rpc_call_set_cancel_cb(struct rpc_call *call, void (*cb)(struct rpc_call *, void *), void *arg)
{
	if (call->s.cancelled)
		return;
	call->s.cancel_cb = cb;
	call->s.cancel_arg = arg;
}

static const char *find_header(const struct h2s *s, const char *name)
{
	if (s->hdrs == NULL) /* no header stored yet */
		return NULL;
	const char *end = s->hdrs + s->hdrs_len;
	const char *n = s->hdrs;
	while (n < end) {
		const char *v = n + strnlen(n, (size_t)(end - n)) + 1;
		if (v >= end)
			break;
		if (strcmp(n, name) == 0)
			return v;
		n = v + strnlen(v, (size_t)(end - v)) + 1;
	}
	return NULL;
}

const char *rpc_call_header(const struct rpc_call *call, const char *name)
{
	return find_header(&call->s, name);
}

const char *rpc_call_path(const struct rpc_call *call)
{
	return call->s.path;
}

static bool stream_open_for_send(const struct h2s *s)
{
	return !s->owner_closed && !s->ended && s->conn != NULL && !s->conn->closing;
}

/* Queues one message (msg/len or the packed pmsg) or, when `n_framed` > 0,
 * that many messages already carrying their gRPC prefixes in msg/len. */
static int stream_send(struct rpc_stream *stream, const void *msg, size_t len,
                       const ProtobufCMessage *pmsg, size_t n_framed)
{
	struct h2s *s = &stream->s;
	if (!stream_open_for_send(s))
		return CAIRN_ECLOSED;
	struct rpc_server *srv = conn_srv(s->conn);
	if (s->out.bytes > 0 && s->out.bytes >= srv->cfg.stream_high_water) {
		if (!s->want_writable) {
			s->want_writable = true;
			s->conn->nwaiting++;
		}
		return CAIRN_EAGAIN;
	}
	int rv = n_framed ? h2out_push_raw(&s->out, msg, len) : h2out_push(&s->out, msg, len, pmsg);
	if (rv != 0)
		return rv;
	if (!s->headers_sent) {
		rv = submit_headers_with_data(s);
		if (rv != 0)
			return rv;
	} else {
		h2out_resume(&s->out, s->conn->h2, s->id);
	}
	s->m->st.msg_sent += n_framed ? n_framed : 1;
	conn_mark_dirty(s->conn);
	return 0;
}

int rpc_stream_send(struct rpc_stream *stream, const void *msg, size_t len)
{
	return stream_send(stream, msg, len, NULL, 0);
}

int rpc_stream_send_msg(struct rpc_stream *stream, const ProtobufCMessage *msg)
{
	return stream_send(stream, NULL, 0, msg, 0);
}

int rpc_stream_send_framed(struct rpc_stream *stream, const void *frames, size_t len, size_t n_msgs)
{
	if (n_msgs == 0 || len < GRPC_FRAME_HDR * n_msgs)
		return CAIRN_EINVAL;
	return stream_send(stream, frames, len, NULL, n_msgs);
}

static void stream_pull_cb(void *arg)
{
	struct h2s *s = arg;
	if (s->owner_holds && stream_open_for_send(s) && s->m->scbs.on_pull != NULL)
		s->m->scbs.on_pull(as_stream(s));
}

int rpc_stream_want_pull(struct rpc_stream *stream)
{
	struct h2s *s = &stream->s;
	if (!stream_open_for_send(s))
		return CAIRN_ECLOSED;
	if (s->m->scbs.on_pull == NULL || !s->headers_sent)
		return CAIRN_EINVAL;
	s->out.pull_cb = stream_pull_cb;
	s->out.pull_arg = s;
	h2out_want_pull(&s->out, s->conn->h2, s->id);
	conn_mark_dirty(s->conn);
	return 0;
}

size_t rpc_stream_queued(const struct rpc_stream *stream)
{
	return stream->s.out.bytes;
}

int rpc_stream_close(struct rpc_stream *stream, int grpc_status, const char *message)
{
	struct h2s *s = &stream->s;
	if (s->owner_closed)
		return CAIRN_ECLOSED;
	s->owner_closed = true;
	if (grpc_status < 0 || grpc_status >= RPC_STATUS_COUNT)
		grpc_status = RPC_UNKNOWN;
	send_status(s, grpc_status, message);
	return 0;
}

void rpc_stream_set_data(struct rpc_stream *stream, void *data)
{
	stream->s.data = data;
}

void *rpc_stream_data(const struct rpc_stream *stream)
{
	return stream->s.data;
}

const char *rpc_stream_header(const struct rpc_stream *stream, const char *name)
{
	return find_header(&stream->s, name);
}

const char *rpc_stream_path(const struct rpc_stream *stream)
{
	return stream->s.path;
}
