/*
 * rpc_int.h — what the files of rpc/ share and nobody else may see: the
 * per-loop I/O context, the connection (one TCP or unix stream carrying
 * HTTP/2 or HTTP/1.1, server or client side) and the outbound message queue
 * that feeds nghttp2 data providers.
 *
 * Invariants (checked in debug builds where cheap):
 *  1. A connection is on its context's dirty list iff conn->dirty; every
 *     dirty connection is flushed in the next uv_check callback.
 *  2. conn->spill != NULL iff conn->writing: at most one uv_write in flight
 *     per connection, and while it is in flight nothing is read from that
 *     connection nor produced for it (that is the back-pressure).
 *  3. After conn_close() the connection has no nghttp2 session and no
 *     streams; its memory goes in the uv_close callback.
 */
#ifndef CAIRN_RPC_INT_H
#define CAIRN_RPC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "rpc/grpc_wire.h"
#include "rpc/rpc.h"

#define RPC_SCRATCH_FLUSH (64 * 1024) /* bytes produced per flush round */
#define RPC_READ_BUF      (64 * 1024)

struct rpc_conn;

/* The loop-wide machinery of one server or one client. */
struct rpc_ioctx {
	uv_loop_t *loop;
	uv_check_t check; /* flushes dirty connections after each poll */
	uv_idle_t idle;   /* active while something is dirty: poll must not block */
	uv_timer_t timer; /* the owner's: server grace period, client close */
	bool active;      /* check and idle started */
	struct rpc_conn *dirty;
	uint8_t *scratch; /* mem_send output gathered here, then written */
	size_t scratch_cap;
	uint8_t *rbuf; /* read buffer, shared: reads are consumed synchronously */
	int handles;   /* ioctx handles not yet closed */
	void (*closed_cb)(struct rpc_ioctx *ctx);
	/* Which kind of connection this context drives. */
	void (*conn_read)(struct rpc_conn *conn, const uint8_t *data, size_t len);
	void (*conn_teardown)(struct rpc_conn *conn, int reason);
	void (*conn_freed)(struct rpc_conn *conn);
	void (*conn_flushed)(struct rpc_conn *conn);
};

enum conn_proto { CONN_SNIFF, CONN_H2, CONN_HTTP1 };

/* A connection's cache of small blocks for its nghttp2 session (streams,
 * frames, header buffers: several allocations per request). With hundreds
 * of requests in flight, glibc's per-thread cache overflows and every one
 * of them took malloc's slow path (a quarter of the loop thread's time
 * under 1000 concurrent puts). Blocks of up to RPC_MC_MAX bytes, rounded to
 * 64-byte classes, are kept on free lists, at most RPC_MC_KEEP bytes per
 * connection; everything is freed with the session. */
#define RPC_MC_CLASS   64
#define RPC_MC_CLASSES 16
#define RPC_MC_MAX     (RPC_MC_CLASS * RPC_MC_CLASSES)
#define RPC_MC_KEEP    (64 * 1024)
struct rpc_memcache {
	void *free[RPC_MC_CLASSES];
	size_t bytes; /* held on the free lists */
};

/* One queued outbound gRPC message (prefix included) or HTTP/1 response. */
struct out_chunk {
	struct out_chunk *next;
	size_t len, off;
	uint8_t data[];
};

/* The source of an nghttp2 data provider: queued messages, then either the
 * end of the stream (client half-close) or trailers (server). */
struct h2out {
	struct out_chunk *head, *tail;
	size_t bytes;  /* queued, not yet copied into frames */
	bool fin;      /* nothing will be queued after what is there */
	bool trailers; /* at fin, send grpc-status trailers instead of END_STREAM */
	int status;    /* grpc-status for the trailers */
	char *message; /* grpc-message (raw, encoded when sent), may be NULL */
	bool deferred; /* the read callback returned NGHTTP2_ERR_DEFERRED */
	bool attached; /* a data provider for it was submitted */
	size_t *acct;  /* the connection's total of queued bytes, or NULL */
	/* Pull (rpc_stream_want_pull): when the queue runs empty while HTTP/2
	 * wants data, pull_cb(pull_arg) is called once to queue more. */
	bool pull;
	void (*pull_cb)(void *arg);
	void *pull_arg;
};

/* A TCP or unix-socket handle, seen as whatever libuv needs. */
union rpc_io {
	uv_handle_t h;
	uv_stream_t s;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

/* Intrusive doubly-linked lists: elements have `prev` and `next`; `head` is
 * any lvalue pointer (it may be a void * for lists of private types). */
#define RPC_DLIST_PUSH(head, e)                                                                    \
	do {                                                                                       \
		(e)->prev = NULL;                                                                  \
		(e)->next = (head);                                                                \
		if ((e)->next != NULL)                                                             \
			(e)->next->prev = (e);                                                     \
		(head) = (e);                                                                      \
	} while (0)
#define RPC_DLIST_UNLINK(head, e)                                                                  \
	do {                                                                                       \
		if ((e)->prev != NULL)                                                             \
			(e)->prev->next = (e)->next;                                               \
		else                                                                               \
			(head) = (e)->next;                                                        \
		if ((e)->next != NULL)                                                             \
			(e)->next->prev = (e)->prev;                                               \
		(e)->prev = (e)->next = NULL;                                                      \
	} while (0)

struct rpc_conn {
	union rpc_io io;
	struct rpc_ioctx *ctx;
	void *owner; /* struct rpc_server or struct rpc_client */
	nghttp2_session *h2;
	enum conn_proto proto;
	uint8_t *in; /* HTTP/1 and sniffing: bytes not yet consumed */
	size_t in_len, in_cap;
	uv_write_t wreq;
	uint8_t *spill; /* the buffer of the uv_write in flight */
	bool writing, dirty, closing, reading, connected, close_when_flushed;
	struct rpc_conn *dirty_next;
	struct rpc_conn *prev, *next; /* owner's list */
	void *streams;                /* owner's list of live streams */
	size_t inbound;               /* bytes held by partial inbound messages */
	unsigned nwaiting;            /* streams waiting for on_writable */
	size_t queued;                /* bytes queued in its streams' h2out */
	struct rpc_memcache mc;       /* the nghttp2 session's allocator */
};

/* ---- conn.c ---- */
/* The allocator for conn's nghttp2 session (nghttp2_session_*_new3). */
nghttp2_mem conn_h2_mem(struct rpc_conn *conn);
int ioctx_init(struct rpc_ioctx *ctx, uv_loop_t *loop);
/* Closes the context's handles; ctx->closed_cb runs when they are closed
 * (and may free the memory holding ctx). */
void ioctx_close(struct rpc_ioctx *ctx);

/* Initialises conn (zeroed by the caller) for ctx; the io handle is set up
 * by the caller (uv_tcp_init / uv_pipe_init) before conn_start_read. */
void conn_init(struct rpc_conn *conn, struct rpc_ioctx *ctx, void *owner);
int conn_start_read(struct rpc_conn *conn);
void conn_mark_dirty(struct rpc_conn *conn);
/* Writes raw bytes (HTTP/1), after whatever is in flight. */
int conn_write_raw(struct rpc_conn *conn, const void *data, size_t len);
/* Closes now: ctx->conn_teardown(conn, reason) first, then uv_close. */
void conn_close(struct rpc_conn *conn, int reason);
bool conn_idle_output(const struct rpc_conn *conn);

/* nghttp2 data provider reading from a struct h2out. */
ssize_t h2out_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                      uint32_t *data_flags, nghttp2_data_source *source, void *user_data);
/* Queues a message (5-byte prefix + msg, or a packed protobuf-c message when
 * pmsg != NULL). */
int h2out_push(struct h2out *o, const void *msg, size_t len, const ProtobufCMessage *pmsg);
/* Queues bytes as they are (a plain HTTP/2 response body). */
int h2out_push_raw(struct h2out *o, const void *data, size_t len);
void h2out_free(struct h2out *o);
/* Stops counting o in its connection's total (the connection goes away). */
void h2out_detach(struct h2out *o);
/* Wakes a deferred data provider. */
void h2out_resume(struct h2out *o, nghttp2_session *h2, int32_t id);
/* Arms o's pull callback (one call) and wakes the data provider. */
void h2out_want_pull(struct h2out *o, nghttp2_session *h2, int32_t id);

/* A header pair that nghttp2 copies (names must be lower case). */
nghttp2_nv rpc_nv(const char *name, const char *value);

/* Parses "http://host:port", "host:port", "unix://path". */
struct rpc_addr {
	bool is_unix;
	char path[108];
	struct sockaddr_storage ss;
};
int rpc_parse_url(const char *url, struct rpc_addr *out);

void rpc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
