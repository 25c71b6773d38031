/*
 * conn.c — connections on libuv shared by the server and the client: reading,
 * the once-per-loop-turn flush of nghttp2 output, raw HTTP/1 writes, closing,
 * the outbound message queue behind nghttp2 data providers, URL parsing.
 *
 * HOW OUTPUT WORKS
 *
 * Nothing is written where it is produced. Whoever makes a connection have
 * something to say (a reply, a SETTINGS ack after a read, a resumed stream)
 * calls conn_mark_dirty(); that links it on the context's dirty list and
 * starts a uv_check (runs right after the poll phase, so after every batch
 * of reads) plus a uv_idle (so the poll does not block while something is
 * dirty). The check callback flushes each dirty connection: it drains
 * nghttp2_session_mem_send() into the shared scratch buffer, up to
 * RPC_SCRATCH_FLUSH bytes at a time, and hands them to uv_try_write(). What
 * the kernel does not take is copied into conn->spill and written with one
 * uv_write(); until that completes the connection neither reads nor produces
 * (invariant 2 of rpc_int.h), so a peer that does not read costs at most one
 * spill buffer, and its streams' queues stop draining (their producers see
 * CAIRN_EAGAIN) while other connections are served as usual.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "rpc/rpc_int.h"

/* The log sink and its rate limit (rpc.h). The one piece of process-wide
 * state in rpc: a log line has no object to hang on at every call site
 * (a connect failure knows only its client). The mutex keeps two loops on
 * two threads from tearing the table. */
#define LOG_SITES 32

static struct {
	pthread_mutex_t mu;
	rpc_log_cb cb;
	void *ud;
	struct {
		const char *fmt;
		uint64_t since_ms; /* start of the current period */
		unsigned lines;    /* let through in it */
		unsigned long dropped;
	} site[LOG_SITES];
} log_state = {.mu = PTHREAD_MUTEX_INITIALIZER};

void rpc_set_log_sink(rpc_log_cb cb, void *userdata)
{
	pthread_mutex_lock(&log_state.mu);
	log_state.cb = cb;
	log_state.ud = userdata;
	pthread_mutex_unlock(&log_state.mu);
}

/* Counts a line of call site fmt; false if it is to be suppressed, else
 * *dropped says how many were since the last one let through. */
static bool log_admit(const char *fmt, uint64_t now, unsigned long *dropped)
{
	unsigned i, free_slot = LOG_SITES, oldest = 0;
	for (i = 0; i < LOG_SITES && log_state.site[i].fmt != fmt; i++) {
		if (log_state.site[i].fmt == NULL && free_slot == LOG_SITES)
			free_slot = i;
		if (log_state.site[i].since_ms < log_state.site[oldest].since_ms)
			oldest = i;
	}
	if (i == LOG_SITES) { /* a new site, in a free slot or the stalest one */
		i = free_slot < LOG_SITES ? free_slot : oldest;
		log_state.site[i].fmt = fmt;
		log_state.site[i].since_ms = now;
		log_state.site[i].lines = 0;
		log_state.site[i].dropped = 0;
	}
	if (now - log_state.site[i].since_ms >= RPC_LOG_PERIOD_MS) {
		log_state.site[i].since_ms = now;
		log_state.site[i].lines = 0;
	}
	if (log_state.site[i].lines >= RPC_LOG_BURST) {
		log_state.site[i].dropped++;
		return false;
	}
	log_state.site[i].lines++;
	*dropped = log_state.site[i].dropped;
	log_state.site[i].dropped = 0;
	return true;
}

void rpc_log(const char *fmt, ...)
{
	char line[512];
	unsigned long dropped = 0;
	pthread_mutex_lock(&log_state.mu);
	if (!log_admit(fmt, uv_hrtime() / 1000000, &dropped)) {
		pthread_mutex_unlock(&log_state.mu);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n >= 0 && dropped > 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, " (%lu similar lines suppressed)",
		         dropped);
	if (log_state.cb != NULL)
		log_state.cb(log_state.ud, line);
	else
		fprintf(stderr, "rpc: %s\n", line);
	pthread_mutex_unlock(&log_state.mu);
}

nghttp2_nv rpc_nv(const char *name, const char *value)
{
	nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
	                 NGHTTP2_NV_FLAG_NONE};
	return nv;
}

/* ---- the loop context ---- */

static void flush_conn(struct rpc_conn *conn);

static void check_cb(uv_check_t *h)
{
	struct rpc_ioctx *ctx = h->data;
	/* One pass over what is dirty now. A connection made dirty again while
	 * flushing (a producer woken by on_writable) waits for the next loop
	 * turn, so one busy connection cannot starve reads and timers. A
	 * connection closed meanwhile is skipped by flush_conn (its memory
	 * goes in the close phase, after this callback). */
	struct rpc_conn *list = ctx->dirty;
	ctx->dirty = NULL;
	while (list != NULL) {
		struct rpc_conn *conn = list;
		list = conn->dirty_next;
		conn->dirty_next = NULL;
		if (!conn->dirty)
			continue; /* unlinked by conn_close while waiting here */
		conn->dirty = false;
		flush_conn(conn);
	}
	if (ctx->active && ctx->dirty == NULL) {
		uv_check_stop(&ctx->check);
		uv_idle_stop(&ctx->idle);
		ctx->active = false;
	}
}

static void idle_cb(uv_idle_t *h)
{
	(void)h; /* only keeps the poll phase from blocking */
}

int ioctx_init(struct rpc_ioctx *ctx, uv_loop_t *loop)
{
	ctx->loop = loop;
	ctx->scratch_cap = RPC_SCRATCH_FLUSH + 32 * 1024;
	ctx->scratch = malloc(ctx->scratch_cap);
	ctx->rbuf = malloc(RPC_READ_BUF);
	if (ctx->scratch == NULL || ctx->rbuf == NULL) {
		free(ctx->scratch);
		free(ctx->rbuf);
		return CAIRN_ENOMEM;
	}
	uv_check_init(loop, &ctx->check);
	uv_idle_init(loop, &ctx->idle);
	uv_timer_init(loop, &ctx->timer);
	ctx->check.data = ctx;
	ctx->idle.data = ctx;
	ctx->timer.data = ctx;
	return 0;
}

static void ioctx_handle_closed(uv_handle_t *h)
{
	struct rpc_ioctx *ctx = h->data;
	if (--ctx->handles == 0) {
		free(ctx->scratch);
		free(ctx->rbuf);
		ctx->scratch = NULL;
		ctx->rbuf = NULL;
		if (ctx->closed_cb != NULL)
			ctx->closed_cb(ctx);
	}
}

void ioctx_close(struct rpc_ioctx *ctx)
{
	if (ctx->handles > 0)
		return;
	ctx->handles = 3;
	uv_close((uv_handle_t *)&ctx->check, ioctx_handle_closed);
	uv_close((uv_handle_t *)&ctx->idle, ioctx_handle_closed);
	uv_close((uv_handle_t *)&ctx->timer, ioctx_handle_closed);
}

/* ---- connections ---- */

/* ---- the session's small-block cache ---- */

/* Each block is preceded by its capacity; the header keeps the payload
 * aligned for any type. */
struct mc_hdr {
	alignas(max_align_t) size_t cap;
};

static void *mc_malloc(size_t size, void *ud)
{
	struct rpc_memcache *mc = ud;
	if (size == 0)
		size = 1;
	if (size <= RPC_MC_MAX) {
		size_t cls = (size - 1) / RPC_MC_CLASS;
		void *p = mc->free[cls];
		if (p != NULL) {
			memcpy(&mc->free[cls], p, sizeof(void *));
			mc->bytes -= (cls + 1) * RPC_MC_CLASS;
			return p;
		}
		size = (cls + 1) * RPC_MC_CLASS;
	} else if (size > SIZE_MAX - sizeof(struct mc_hdr)) {
		return NULL;
	}
	struct mc_hdr *h = malloc(sizeof(*h) + size);
	if (h == NULL)
		return NULL;
	h->cap = size;
	return h + 1;
}

static void mc_free(void *p, void *ud)
{
	struct rpc_memcache *mc = ud;
	if (p == NULL)
		return;
	struct mc_hdr *h = (struct mc_hdr *)p - 1;
	if (h->cap <= RPC_MC_MAX && mc->bytes + h->cap <= RPC_MC_KEEP) {
		size_t cls = h->cap / RPC_MC_CLASS - 1;
		memcpy(p, &mc->free[cls], sizeof(void *));
		mc->free[cls] = p;
		mc->bytes += h->cap;
		return;
	}
	free(h);
}

static void *mc_calloc(size_t n, size_t size, void *ud)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	void *p = mc_malloc(n * size, ud);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

static void *mc_realloc(void *p, size_t size, void *ud)
{
	if (p == NULL)
		return mc_malloc(size, ud);
	struct mc_hdr *h = (struct mc_hdr *)p - 1;
	if (size <= h->cap)
		return p;
	void *n = mc_malloc(size, ud);
	if (n == NULL)
		return NULL;
	memcpy(n, p, h->cap);
	mc_free(p, ud);
	return n;
}

static void mc_drain(struct rpc_memcache *mc)
{
	for (size_t i = 0; i < RPC_MC_CLASSES; i++) {
		while (mc->free[i] != NULL) {
			void *p = mc->free[i];
			memcpy(&mc->free[i], p, sizeof(void *));
			free((struct mc_hdr *)p - 1);
		}
	}
	mc->bytes = 0;
}

nghttp2_mem conn_h2_mem(struct rpc_conn *conn)
{
	nghttp2_mem m = {&conn->mc, mc_malloc, mc_free, mc_calloc, mc_realloc};
	return m;
}

void conn_init(struct rpc_conn *conn, struct rpc_ioctx *ctx, void *owner)
{
	conn->ctx = ctx;
	conn->owner = owner;
	conn->io.h.data = conn;
}

void conn_mark_dirty(struct rpc_conn *conn)
{
	struct rpc_ioctx *ctx = conn->ctx;
	if (conn->dirty || conn->closing)
		return;
	conn->dirty = true;
	conn->dirty_next = ctx->dirty;
	ctx->dirty = conn;
	if (!ctx->active) {
		uv_check_start(&ctx->check, check_cb);
		uv_idle_start(&ctx->idle, idle_cb);
		ctx->active = true;
	}
}

/* Takes conn off the dirty list before it closes. If check_cb has already
 * taken the list it is on, it stays linked there (clearing dirty makes
 * check_cb skip it; its memory outlives that pass). */
static void unlink_dirty(struct rpc_conn *conn)
{
	if (!conn->dirty)
		return;
	for (struct rpc_conn **pp = &conn->ctx->dirty; *pp != NULL; pp = &(*pp)->dirty_next) {
		if (*pp == conn) {
			*pp = conn->dirty_next;
			conn->dirty_next = NULL;
			break;
		}
	}
	conn->dirty = false;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct rpc_conn *conn = h->data;
	(void)suggested;
	*buf = uv_buf_init((char *)conn->ctx->rbuf, RPC_READ_BUF);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct rpc_conn *conn = s->data;
	if (nread < 0) {
		conn_close(conn, nread == UV_EOF ? CAIRN_ECLOSED : CAIRN_ECONNRESET);
		return;
	}
	if (nread > 0)
		conn->ctx->conn_read(conn, (const uint8_t *)buf->base, (size_t)nread);
}

int conn_start_read(struct rpc_conn *conn)
{
	if (conn->reading || conn->closing)
		return 0;
	int rv = uv_read_start(&conn->io.s, alloc_cb, read_cb);
	if (rv < 0) {
		rpc_log("uv_read_start: %s", uv_strerror(rv));
		return CAIRN_EIO;
	}
	conn->reading = true;
	return 0;
}

static void stop_read(struct rpc_conn *conn)
{
	if (conn->reading) {
		uv_read_stop(&conn->io.s);
		conn->reading = false;
	}
}

static void write_cb(uv_write_t *req, int status)
{
	struct rpc_conn *conn = req->data;
	free(conn->spill);
	conn->spill = NULL;
	conn->writing = false;
	if (conn->closing)
		return;
	if (status < 0) {
		conn_close(conn, CAIRN_ECONNRESET);
		return;
	}
	conn_start_read(conn);
	conn_mark_dirty(conn);
}

/* Writes buf: what the kernel takes now, the rest through one uv_write. */
static int write_out(struct rpc_conn *conn, const uint8_t *buf, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	int n = uv_try_write(&conn->io.s, &b, 1);
	if (n == UV_EAGAIN || n == UV_ENOSYS)
		n = 0;
	if (n < 0)
		return CAIRN_ECONNRESET;
	if ((size_t)n == len)
		return 0;
	conn->spill = malloc(len - (size_t)n);
	if (conn->spill == NULL)
		return CAIRN_ENOMEM;
	memcpy(conn->spill, buf + n, len - (size_t)n);
	b = uv_buf_init((char *)conn->spill, (unsigned)(len - (size_t)n));
	conn->wreq.data = conn;
	int rv = uv_write(&conn->wreq, &conn->io.s, &b, 1, write_cb);
	if (rv < 0) {
		free(conn->spill);
		conn->spill = NULL;
		return CAIRN_ECONNRESET;
	}
	conn->writing = true;
	stop_read(conn);
	return 0;
}

bool conn_idle_output(const struct rpc_conn *conn)
{
	return !conn->writing && (conn->h2 == NULL || !nghttp2_session_want_write(conn->h2));
}

static void flush_conn(struct rpc_conn *conn)
{
	struct rpc_ioctx *ctx = conn->ctx;
	if (conn->closing || conn->writing || !conn->connected)
		return;
	while (conn->h2 != NULL) {
		size_t len = 0;
		while (len < RPC_SCRATCH_FLUSH) {
			const uint8_t *p;
			ssize_t n = nghttp2_session_mem_send(conn->h2, &p);
			if (n < 0) {
				rpc_log("nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
				conn_close(conn, CAIRN_EHTTP2);
				return;
			}
			if (n == 0)
				break;
			if (len + (size_t)n > ctx->scratch_cap) {
				size_t cap = len + (size_t)n;
				uint8_t *ns = realloc(ctx->scratch, cap);
				if (ns == NULL) {
					conn_close(conn, CAIRN_ENOMEM);
					return;
				}
				ctx->scratch = ns;
				ctx->scratch_cap = cap;
			}
			memcpy(ctx->scratch + len, p, (size_t)n);
			len += (size_t)n;
		}
		if (len == 0)
			break;
		int rv = write_out(conn, ctx->scratch, len);
		if (rv < 0) {
			conn_close(conn, rv);
			return;
		}
		if (conn->writing)
			break;
	}
	if (ctx->conn_flushed != NULL)
		ctx->conn_flushed(conn);
	if (conn->closing)
		return;
	if (conn->h2 != NULL && !nghttp2_session_want_read(conn->h2) &&
	    !nghttp2_session_want_write(conn->h2) && !conn->writing) {
		conn_close(conn, CAIRN_ECLOSED);
		return;
	}
	if (conn->close_when_flushed && !conn->writing)
		conn_close(conn, CAIRN_ECLOSED);
}

int conn_write_raw(struct rpc_conn *conn, const void *data, size_t len)
{
	if (conn->closing)
		return CAIRN_ECLOSED;
	if (!conn->writing)
		return write_out(conn, data, len);
	/* Append behind the write in flight: only HTTP/1 does this, and it
	 * answers one request at a time, so this stays small. */
	return CAIRN_EBUSY;
}

static void close_cb(uv_handle_t *h)
{
	struct rpc_conn *conn = h->data;
	struct rpc_ioctx *ctx = conn->ctx;
	free(conn->in);
	ctx->conn_freed(conn);
}

void conn_close(struct rpc_conn *conn, int reason)
{
	if (conn->closing)
		return;
	conn->closing = true;
	unlink_dirty(conn);
	stop_read(conn);
	conn->ctx->conn_teardown(conn, reason);
	if (conn->h2 != NULL) {
		nghttp2_session_del(conn->h2);
		conn->h2 = NULL;
	}
	mc_drain(&conn->mc);
	/* A pending uv_write is cancelled by uv_close; write_cb frees spill. */
	uv_close(&conn->io.h, close_cb);
}

/* ---- outbound queue ---- */

/* Queues `len` bytes (or the packed pmsg) after an optional gRPC prefix. */
static int push(struct h2out *o, bool prefix, const void *msg, size_t len,
                const ProtobufCMessage *pmsg)
{
	if (pmsg != NULL)
		len = protobuf_c_message_get_packed_size(pmsg);
	if (len > UINT32_MAX)
		return CAIRN_ETOOBIG;
	size_t hdr = prefix ? GRPC_FRAME_HDR : 0;
	struct out_chunk *c = malloc(sizeof(*c) + hdr + len);
	if (c == NULL)
		return CAIRN_ENOMEM;
	c->next = NULL;
	c->off = 0;
	c->len = hdr + len;
	if (prefix)
		grpc_frame_header(c->data, (uint32_t)len);
	if (pmsg != NULL)
		protobuf_c_message_pack(pmsg, c->data + hdr);
	else if (len > 0)
		memcpy(c->data + hdr, msg, len);
	if (o->tail != NULL)
		o->tail->next = c;
	else
		o->head = c;
	o->tail = c;
	o->bytes += c->len;
	if (o->acct != NULL)
		*o->acct += c->len;
	return 0;
}

int h2out_push(struct h2out *o, const void *msg, size_t len, const ProtobufCMessage *pmsg)
{
	return push(o, true, msg, len, pmsg);
}

int h2out_push_raw(struct h2out *o, const void *data, size_t len)
{
	return push(o, false, data, len, NULL);
}

void h2out_detach(struct h2out *o)
{
	if (o->acct != NULL)
		*o->acct -= o->bytes;
	o->acct = NULL;
}

void h2out_free(struct h2out *o)
{
	h2out_detach(o);
	struct out_chunk *c = o->head;
	while (c != NULL) {
		struct out_chunk *n = c->next;
		free(c);
		c = n;
	}
	o->head = o->tail = NULL;
	o->bytes = 0;
	free(o->message);
	o->message = NULL;
}

void h2out_resume(struct h2out *o, nghttp2_session *h2, int32_t id)
{
	if (o->deferred && h2 != NULL) {
		o->deferred = false;
		nghttp2_session_resume_data(h2, id);
	}
}

void h2out_want_pull(struct h2out *o, nghttp2_session *h2, int32_t id)
{
	o->pull = true;
	h2out_resume(o, h2, id);
}

static void submit_trailers(nghttp2_session *session, int32_t id, struct h2out *o)
{
	char code[12];
	snprintf(code, sizeof(code), "%d", o->status);
	nghttp2_nv nv[2];
	size_t n = 0;
	nv[n++] = rpc_nv("grpc-status", code);
	char enc[1024];
	if (o->message != NULL && o->message[0] != '\0') {
		grpc_percent_encode(o->message, strlen(o->message), enc, sizeof(enc));
		nv[n++] = rpc_nv("grpc-message", enc);
	}
	nghttp2_submit_trailer(session, id, nv, n);
}

ssize_t h2out_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                      uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct h2out *o = source->ptr;
	(void)user_data;
	size_t n = 0;
	while (n < length) {
		if (o->head == NULL) {
			/* The producer fills the queue as the connection drains
			 * (rpc_stream_want_pull): one call per arming, and none once
			 * it queued nothing, so a producer with nothing ready cannot
			 * spin here. */
			if (!o->pull || o->fin || o->pull_cb == NULL)
				break;
			o->pull = false;
			o->pull_cb(o->pull_arg);
			if (o->head == NULL)
				break;
		}
		struct out_chunk *c = o->head;
		size_t take = c->len - c->off;
		if (take > length - n)
			take = length - n;
		memcpy(buf + n, c->data + c->off, take);
		c->off += take;
		n += take;
		/* counted as it goes: a pull sees only what is still queued */
		o->bytes -= take;
		if (o->acct != NULL)
			*o->acct -= take;
		if (c->off == c->len) {
			o->head = c->next;
			if (o->head == NULL)
				o->tail = NULL;
			free(c);
		}
	}
	if (o->head == NULL && o->fin) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		if (o->trailers) {
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(session, stream_id, o);
		}
		return (ssize_t)n;
	}
	if (n == 0) {
		o->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* ---- addresses ---- */

int rpc_parse_url(const char *url, struct rpc_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(url, "unix://", 7) == 0 || strncmp(url, "unix:", 5) == 0) {
		const char *p = url + (url[5] == '/' && url[6] == '/' ? 7 : 5);
		if (*p == '\0' || strlen(p) >= sizeof(out->path))
			return CAIRN_EADDR;
		out->is_unix = true;
		strcpy(out->path, p);
		return 0;
	}
	if (strncmp(url, "http://", 7) == 0)
		url += 7;
	else if (strstr(url, "://") != NULL)
		return CAIRN_EADDR; /* https and friends: no TLS here */
	char host[256];
	const char *colon;
	if (url[0] == '[') {
		const char *end = strchr(url, ']');
		if (end == NULL || end[1] != ':' || (size_t)(end - url - 1) >= sizeof(host))
			return CAIRN_EADDR;
		memcpy(host, url + 1, (size_t)(end - url - 1));
		host[end - url - 1] = '\0';
		colon = end + 1;
	} else {
		colon = strrchr(url, ':');
		if (colon == NULL || (size_t)(colon - url) >= sizeof(host))
			return CAIRN_EADDR;
		memcpy(host, url, (size_t)(colon - url));
		host[colon - url] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || (*end != '\0' && *end != '/') || port < 0 || port > 65535)
		return CAIRN_EADDR;
	if (host[0] == '\0' || strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
	if (uv_ip4_addr(host, (int)port, a4) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, a6) == 0)
		return 0;
	return CAIRN_EADDR;
}
