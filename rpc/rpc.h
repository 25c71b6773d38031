/*
 * rpc.h — gRPC over HTTP/2 (and a little HTTP/1.1) on libuv, server and client.
 *
 * WHAT IT IS
 *
 * The wire layer of cairn. A server listens on one or more URLs, accepts
 * connections, speaks cleartext HTTP/2 with prior knowledge (what gRPC clients
 * use) and HTTP/1.1 on the same port (the first bytes decide), frames gRPC
 * messages and hands each request's *bytes* to the handler registered for its
 * full method path ("/etcdserverpb.KV/Range"). It knows nothing of what the
 * methods mean; the owner (server/) decodes with protobuf-c. The client side
 * (for cairnctl, cairn-bench and the peer transport) makes unary calls and
 * opens bidirectional streams on one HTTP/2 connection.
 *
 * nghttp2 does no I/O: bytes read by libuv go in with nghttp2_session_mem_recv;
 * bytes out come from nghttp2_session_mem_send into a scratch buffer and are
 * written with one uv_write (after a uv_try_write) per connection per loop
 * turn, from a uv_check handle that flushes the connections marked dirty.
 *
 * THREADING
 *
 * Everything runs on the thread that runs the uv_loop_t given at creation.
 * No function here may be called from another thread; to hand work back from
 * a worker thread use uv_async_t and call these functions from its callback.
 * Callbacks are never called from inside a function of this API, except where
 * stated (a handler may be called while the loop runs a read callback, and
 * may reply right there).
 *
 * ERRORS
 *
 * Functions return 0 or a negative cairn error code (common/cairn_error.h).
 * As in libuv: if a function that takes a callback returns an error, that
 * callback is never called. gRPC status codes (enum rpc_status) are a
 * different space: they travel on the wire in the grpc-status trailer.
 *
 * OWNERSHIP AND LIFETIMES (read this before keeping a pointer)
 *
 * - Byte buffers passed in (messages, paths, URLs, header names) are borrowed
 *   for the duration of the call; rpc copies what it keeps.
 * - Byte buffers passed to callbacks (requests, stream messages, responses)
 *   are valid only until the callback returns; decode or copy them there.
 * - struct rpc_call (unary, server side): handed to the unary handler. The
 *   owner must end it exactly once with rpc_call_reply(), rpc_call_reply_msg()
 *   or rpc_call_fail() — in the handler or at any later time (after a raft
 *   commit). After that call the pointer is dead. rpc never frees a call the
 *   owner has not ended: if the client cancels, resets, times out or the
 *   connection drops first, the call stays valid, rpc_call_cancelled() turns
 *   true, the optional cancel callback runs once, and the eventual reply is a
 *   cheap no-op that frees it. So a deferred reply can never touch freed
 *   memory, and forgetting to reply is a leak (ASan shows it).
 * - struct rpc_stream (streaming, server side): created by rpc when a client
 *   opens a streaming method; on_open is the first event and on_close the
 *   last, called exactly once in every case (owner closed it with
 *   rpc_stream_close and the trailers went out, the client reset it, its
 *   deadline passed, the connection dropped, the server closed). When
 *   on_close returns, rpc frees the stream: the owner must not touch it
 *   afterwards and must drop every pointer to it inside on_close.
 *   After rpc_stream_close() the owner may no longer send; on_close follows.
 * - struct rpc_client_stream: the same rule on the client side — on_close is
 *   the last event, after which the pointer is dead.
 * - struct rpc_server / struct rpc_client: freed by their close function,
 *   whose callback says when the memory is gone.
 *
 * BACK-PRESSURE AND LIMITS
 *
 * HTTP/2 flow control is honoured both ways. Each server stream has a bounded
 * outbound queue: rpc_stream_send() refuses with CAIRN_EAGAIN (queueing
 * nothing) while the queue holds stream_high_water bytes or more, and
 * on_writable runs once the queue has drained below half of it. A client that
 * stops reading fills its TCP window; rpc then stops reading from that
 * connection and stops producing frames for it, so its queues stop draining
 * and its producers see CAIRN_EAGAIN: it can neither grow server memory
 * without bound nor slow other connections. Inbound, a message larger than
 * max_recv_msg_size is answered with RESOURCE_EXHAUSTED ("grpc: received
 * message larger than max (N vs. M)", as grpc-go/etcd say) and the rest of it
 * discarded. Concurrent streams per connection are capped via SETTINGS; a
 * connection whose queued replies pass conn_outbound_limit (its client grants
 * no HTTP/2 window) gets REFUSED_STREAM for new streams until they drain.
 * Keepalive PINGs are answered by nghttp2. Not done: TLS, idle timeouts,
 * compression: a request whose grpc-encoding is not identity is refused
 * with UNIMPLEMENTED when its stream opens, and a message with the
 * compressed flag set anyway with INTERNAL, in grpc-go's words.
 *
 * A client that breaks gRPC on a stream gets grpc-go's status: a message
 * cut short by END_STREAM is UNKNOWN "unexpected EOF" on a unary call and
 * INTERNAL "unexpected EOF" on a stream, a unary call without a message
 * UNKNOWN "EOF", a flag byte other than 0 or 1 INTERNAL "grpc: received
 * unexpected payload format N".
 */
#ifndef CAIRN_RPC_H
#define CAIRN_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum rpc_status {
	RPC_OK = 0,
	RPC_CANCELLED = 1,
	RPC_UNKNOWN = 2,
	RPC_INVALID_ARGUMENT = 3,
	RPC_DEADLINE_EXCEEDED = 4,
	RPC_NOT_FOUND = 5,
	RPC_ALREADY_EXISTS = 6,
	RPC_PERMISSION_DENIED = 7,
	RPC_RESOURCE_EXHAUSTED = 8,
	RPC_FAILED_PRECONDITION = 9,
	RPC_ABORTED = 10,
	RPC_OUT_OF_RANGE = 11,
	RPC_UNIMPLEMENTED = 12,
	RPC_INTERNAL = 13,
	RPC_UNAVAILABLE = 14,
	RPC_DATA_LOSS = 15,
	RPC_UNAUTHENTICATED = 16,
};
#define RPC_STATUS_COUNT 17

/* "OK", "CANCELLED", ... as gRPC spells them (metric labels); "UNKNOWN" for
 * an out-of-range code. */
const char *rpc_status_name(int grpc_status);

/* Where rpc reports what it cannot return to a caller (a failed connect, a
 * peer that stopped acknowledging, a refused hello): one line, without its
 * newline, for the sink to log. The default sink writes "rpc: LINE" to
 * stderr. The sink is process-wide: set it once, before any loop runs (or
 * pass NULL to restore the default); it is called on the thread of the
 * loop whose object reports.
 *
 * Lines are rate limited per call site (per format string): at most
 * RPC_LOG_BURST of them per RPC_LOG_PERIOD_MS; the first one let through
 * after a suppression says how many were left out. A member cut off from
 * its peers retries connects several times a second and would otherwise
 * fill its log. */
#define RPC_LOG_BURST     5
#define RPC_LOG_PERIOD_MS 10000
typedef void (*rpc_log_cb)(void *userdata, const char *line);
void rpc_set_log_sink(rpc_log_cb cb, void *userdata);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

struct rpc_server;
struct rpc_call;
struct rpc_stream;

struct rpc_server_config {
	/* Largest inbound gRPC message accepted; 0 = 1.5 MiB + 512 KiB, which
	 * is etcd's --max-request-bytes default plus its gRPC overhead slack. */
	size_t max_recv_msg_size;
	/* SETTINGS_MAX_CONCURRENT_STREAMS per connection; 0 = 1000. */
	uint32_t max_concurrent_streams;
	/* Outbound bytes a stream may queue before rpc_stream_send() refuses;
	 * 0 = 256 KiB. One message is always accepted into an empty queue. */
	size_t stream_high_water;
	/* Bytes of partly received messages one connection may hold; a stream
	 * that pushes past it is reset with RESOURCE_EXHAUSTED. 0 = 64 MiB. */
	size_t conn_inbound_limit;
	/* Open connections; further accepts are closed at once. 0 = 10000. */
	uint32_t max_connections;
	/* Reply bytes one connection may have queued (a client that does not
	 * grant HTTP/2 window); beyond it new streams are refused with
	 * REFUSED_STREAM, which gRPC clients retry. 0 = 16 MiB. */
	size_t conn_outbound_limit;
};

/* Metrics of the whole server (monotonic counters and current gauges). */
struct rpc_server_stats {
	uint64_t conns_accepted;  /* connections accepted (all protocols) */
	uint64_t conns_rejected;  /* closed at accept: over max_connections */
	uint64_t conns_current;   /* open now */
	uint64_t streams_started; /* HTTP/2 streams opened by clients */
	uint64_t streams_current; /* open now */
	uint64_t bytes_received;
	uint64_t bytes_sent;
	uint64_t http1_requests;  /* plain HTTP requests answered (1.1 or 2) */
	uint64_t protocol_errors; /* connections closed on a protocol error */
	uint64_t unknown_method;  /* calls answered UNIMPLEMENTED */
	uint64_t streams_refused; /* over conn_outbound_limit */
};

/* Per registered method, for grpc_server_started_total/handled_total and
 * grpc_server_msg_received_total/msg_sent_total. */
struct rpc_method_stats {
	const char *path; /* "/etcdserverpb.KV/Range"; valid while the server is */
	bool streaming;
	uint64_t started;
	uint64_t handled[RPC_STATUS_COUNT]; /* by final grpc-status sent */
	uint64_t msg_received;
	uint64_t msg_sent;
};

/* Called with the request of a unary method, as soon as its one message is
 * complete (possibly before the client's END_STREAM). `req` is valid until
 * the callback returns. The owner ends `call` exactly once, now or later
 * (see OWNERSHIP above). */
typedef void (*rpc_unary_cb)(struct rpc_call *call, const uint8_t *req, size_t len, void *userdata);

/* Callbacks of a streaming method (client-, server- or bidi-streaming: the
 * wire is the same). Only on_open and on_close are required. */
struct rpc_stream_cbs {
	/* The client opened the stream. Set per-stream data with
	 * rpc_stream_set_data() here. May call rpc_stream_close() to refuse. */
	void (*on_open)(struct rpc_stream *stream, void *userdata);
	/* One inbound message; `msg` valid until the callback returns. */
	void (*on_message)(struct rpc_stream *stream, const uint8_t *msg, size_t len);
	/* The client half-closed (END_STREAM): no more messages will come. The
	 * owner may keep sending and must eventually rpc_stream_close(). */
	void (*on_half_close)(struct rpc_stream *stream);
	/* The outbound queue drained below half of stream_high_water after
	 * rpc_stream_send() refused with CAIRN_EAGAIN. */
	void (*on_writable)(struct rpc_stream *stream);
	/* Last event; the stream is freed when this returns. `reason` is 0 when
	 * the owner's rpc_stream_close() was delivered, CAIRN_ECANCELED when the
	 * client reset or cancelled, CAIRN_ETIMEOUT when its grpc-timeout
	 * passed (DEADLINE_EXCEEDED was sent), CAIRN_EPROTO when the client
	 * broke the protocol on it (an oversized, compressed, truncated or
	 * undecodable message: the status was sent), CAIRN_ECONNRESET when the connection was lost
	 * or was closed on an HTTP/2 error, CAIRN_ECLOSED when the server closed it. */
	void (*on_close)(struct rpc_stream *stream, int reason);
	/* After rpc_stream_want_pull(): HTTP/2 can send on the stream now and
	 * its queue is empty. Queue what is ready (rpc_stream_send*, which
	 * accept while the queue is below stream_high_water), at most a few
	 * frames' worth, and call rpc_stream_want_pull() again if more remains
	 * — only after queueing something: a pull that queues nothing is not
	 * repeated. Runs inside rpc's flush of the connection; the owner may
	 * send and close there, and must not block. Optional. */
	void (*on_pull)(struct rpc_stream *stream);
};

/* Answers a plain HTTP GET or HEAD, over HTTP/1.1 or over HTTP/2 (curl
 * --http2-prior-knowledge); `method` is "GET" or "HEAD" (others get 405
 * without a call), `path` includes any query string. Fill
 * `reply`; `body` must stay valid until the next call of this callback or
 * the server is closed (rpc copies it before the callback is called again).
 * Return 0; a non-zero return answers 500. */
struct rpc_http_reply {
	int status;               /* default 200 */
	const char *content_type; /* default "text/plain; charset=utf-8" */
	const void *body;
	size_t body_len;
};
typedef int (*rpc_http_cb)(const char *method, const char *path, struct rpc_http_reply *reply,
                           void *userdata);

typedef void (*rpc_server_close_cb)(void *arg);

/* Creates a server on `loop`. `cfg` may be NULL (all defaults); it is copied.
 * Nothing listens until rpc_server_listen(). */
int rpc_server_new(uv_loop_t *loop, const struct rpc_server_config *cfg, struct rpc_server **out);

/* Listens on `url`: "http://HOST:PORT" (HOST an IPv4/IPv6 literal, "[::1]"
 * or "localhost"; PORT 0 picks a free port) or "unix:///path". May be called
 * several times (etcd's --listen-client-urls is a list). If `port_out` is not
 * NULL it receives the bound TCP port (0 for unix). CAIRN_EADDR on a bad URL,
 * CAIRN_EIO (libuv's reason logged to stderr) when bind/listen fails. */
int rpc_server_listen(struct rpc_server *srv, const char *url, int *port_out);

/* Registers the handler of a full method path ("/etcdserverpb.KV/Range").
 * `cbs` is copied. CAIRN_EEXIST if the path is registered already. Register
 * before listening; unknown paths are answered UNIMPLEMENTED. */
int rpc_server_register_unary(struct rpc_server *srv, const char *path, rpc_unary_cb cb,
                              void *userdata);
int rpc_server_register_stream(struct rpc_server *srv, const char *path,
                               const struct rpc_stream_cbs *cbs, void *userdata);

/* Checks each inbound message of the method registered at `path` before
 * its handler sees it, the way a gRPC server's codec decodes it first
 * (grpc-go unmarshals a request before it calls the service). `cb` returns
 * 0 to deliver the message, or non-zero with the codec's reason written to
 * `why` (cap bytes, NUL-terminated: "unexpected EOF", "proto: ..."); rpc then
 * ends a unary call with INTERNAL "grpc: error unmarshalling request: WHY"
 * and a stream with INTERNAL "grpc: failed to unmarshal the received
 * message: WHY" (grpc-go's words), the handler never sees that message, and
 * a stream's owner hears on_close(CAIRN_EPROTO). `arg` is passed to `cb`.
 * Set before listening; CAIRN_ENOTFOUND if `path` is not registered. */
typedef int (*rpc_decode_check_cb)(const uint8_t *msg, size_t len, void *arg, char *why,
                                   size_t cap);
int rpc_server_set_decode_check(struct rpc_server *srv, const char *path, rpc_decode_check_cb cb,
                                void *arg);

/* Sets the HTTP/1.1 handler (one per server; NULL = answer 404 to all). */
void rpc_server_set_http_handler(struct rpc_server *srv, rpc_http_cb cb, void *userdata);

/* Graceful close: stops accepting, sends GOAWAY to every HTTP/2 connection,
 * lets in-flight calls and streams finish for up to `grace_ms`, then closes
 * every connection (remaining streams get on_close(CAIRN_ECLOSED), unanswered
 * calls become cancelled and are freed when answered) and frees the server;
 * `cb(arg)` runs once the memory is gone. Call once; CAIRN_EBUSY if already
 * closing. `cb` may be NULL. */
int rpc_server_close(struct rpc_server *srv, uint64_t grace_ms, rpc_server_close_cb cb, void *arg);

void rpc_server_get_stats(const struct rpc_server *srv, struct rpc_server_stats *out);
/* Calls `cb` for every registered method, in registration order. */
void rpc_server_foreach_method(const struct rpc_server *srv,
                               void (*cb)(const struct rpc_method_stats *m, void *arg), void *arg);

/* ---- unary calls ---- */

/* Sends `msg` (a serialized protobuf, len may be 0) with grpc-status 0 and
 * ends the call. Returns 0 also when the call was cancelled (nothing is sent);
 * the call is freed in every case, even on error. */
int rpc_call_reply(struct rpc_call *call, const void *msg, size_t len);
/* The same, packing a protobuf-c message straight into the queued frame
 * buffer (one allocation, no intermediate copy). */
int rpc_call_reply_msg(struct rpc_call *call, const ProtobufCMessage *msg);
/* Ends the call with a non-OK status and a message (UTF-8, may be NULL;
 * percent-encoded on the wire). Frees the call. */
int rpc_call_fail(struct rpc_call *call, int grpc_status, const char *message);

/* True once the client cancelled, reset, timed out or went away: a reply will
 * not be delivered, and work for it may be abandoned (still end the call). */
bool rpc_call_cancelled(const struct rpc_call *call);
/* Runs `cb(call, arg)` once when the call becomes cancelled (never after it
 * is ended, never if it already is cancelled: check rpc_call_cancelled()).
 * Inside `cb` the owner may end the call. */
void rpc_call_set_cancel_cb(struct rpc_call *call, void (*cb)(struct rpc_call *, void *),
                            void *arg);

/* Request metadata (HTTP/2 header, lower-case name, e.g. "token" for etcd
 * auth, "hasleader"); NULL if absent. Valid until the call is ended. */
const char *rpc_call_header(const struct rpc_call *call, const char *name);
/* The full method path, valid until the call is ended. */
const char *rpc_call_path(const struct rpc_call *call);

/* ---- streams ---- */

/* Queues one outbound message. 0 when queued; CAIRN_EAGAIN (nothing queued)
 * while the queue is over the high-water mark — wait for on_writable;
 * CAIRN_ECLOSED after rpc_stream_close() or once the peer is gone (on_close
 * is on its way). */
int rpc_stream_send(struct rpc_stream *stream, const void *msg, size_t len);
int rpc_stream_send_msg(struct rpc_stream *stream, const ProtobufCMessage *msg);
/* Queues `n_msgs` messages at once, each already framed by the caller (the
 * 5-byte gRPC prefix: flag 0, big-endian length, then the message) in
 * frames/len, copied. Accepted or refused whole, like one message: a
 * producer that fans one event out to many receivers on a stream builds
 * their messages in one buffer instead of queueing each. */
int rpc_stream_send_framed(struct rpc_stream *stream, const void *frames, size_t len,
                           size_t n_msgs);
/* Asks for one on_pull as soon as HTTP/2 can send on the stream and its
 * queue is empty: a producer with much to say (one revision to 1,000
 * watchers) generates it as the connection drains instead of queueing all
 * of it at once, so what it has built is never far ahead of the socket.
 * Needs on_pull and a stream that has sent a message (its response headers);
 * CAIRN_EINVAL otherwise, CAIRN_ECLOSED once it is closed. */
int rpc_stream_want_pull(struct rpc_stream *stream);
/* Bytes queued and not yet handed to HTTP/2. */
size_t rpc_stream_queued(const struct rpc_stream *stream);
/* Ends the stream after the queued messages with trailers carrying
 * `grpc_status` and `message` (may be NULL). on_close follows (reason 0 once
 * delivered, or the reason the peer went away first). CAIRN_ECLOSED if it was
 * closed already. */
int rpc_stream_close(struct rpc_stream *stream, int grpc_status, const char *message);

void rpc_stream_set_data(struct rpc_stream *stream, void *data);
void *rpc_stream_data(const struct rpc_stream *stream);
const char *rpc_stream_header(const struct rpc_stream *stream, const char *name);
const char *rpc_stream_path(const struct rpc_stream *stream);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

struct rpc_client;
struct rpc_client_stream;

struct rpc_client_config {
	/* Largest inbound message; 0 = 64 MiB (snapshots come in chunks). */
	size_t max_recv_msg_size;
	/* Extra request headers sent on every call, e.g. {"token", "..."};
	 * `nheaders` pairs, copied. */
	const char *const (*headers)[2];
	size_t nheaders;
};

/* Result of a unary call: `grpc_status` as received (or synthesized:
 * UNAVAILABLE when the connection failed, DEADLINE_EXCEEDED on timeout,
 * CANCELLED when the client closed), `message` the decoded grpc-message
 * (never NULL), `resp`/`len` the response message (NULL/0 unless OK). All
 * valid until the callback returns. A connection that was never established
 * fails its calls and streams with UNAVAILABLE and a message starting with
 * RPC_CONNECT_FAILED ("connect failed: connection refused"): nothing of the
 * request was sent, so it is safe to retry, on this or another server. */
#define RPC_CONNECT_FAILED "connect failed: "

typedef void (*rpc_client_unary_cb)(int grpc_status, const char *message, const uint8_t *resp,
                                    size_t len, void *arg);

struct rpc_client_stream_cbs {
	void (*on_message)(struct rpc_client_stream *s, const uint8_t *msg, size_t len);
	/* Last event; the stream is freed when it returns. */
	void (*on_close)(struct rpc_client_stream *s, int grpc_status, const char *message);
};

/* Creates a client for `url` ("http://HOST:PORT" or "unix:///path"). It
 * connects on the first call and reconnects on a later call after the
 * connection was lost; calls made while connecting wait for it. */
int rpc_client_new(uv_loop_t *loop, const char *url, const struct rpc_client_config *cfg,
                   struct rpc_client **out);

/* Starts a unary call. `timeout_ms` 0 = none (else sent as grpc-timeout and
 * enforced locally). `cb` runs exactly once, never from inside this
 * function. */
int rpc_client_call(struct rpc_client *c, const char *path, const void *req, size_t len,
                    uint64_t timeout_ms, rpc_client_unary_cb cb, void *arg);
int rpc_client_call_msg(struct rpc_client *c, const char *path, const ProtobufCMessage *req,
                        uint64_t timeout_ms, rpc_client_unary_cb cb, void *arg);

/* Opens a streaming call; `cbs` is copied, `arg` is rpc_client_stream_data(). */
int rpc_client_stream_open(struct rpc_client *c, const char *path,
                           const struct rpc_client_stream_cbs *cbs, void *arg,
                           struct rpc_client_stream **out);
/* Queues a message. No high-water limit on the client: the caller paces
 * itself with rpc_client_stream_queued() (bytes not yet handed to HTTP/2,
 * which shrinks as the server grants window). */
int rpc_client_stream_send(struct rpc_client_stream *s, const void *msg, size_t len);
int rpc_client_stream_send_msg(struct rpc_client_stream *s, const ProtobufCMessage *msg);
/* Half-closes: no more messages from this side. */
int rpc_client_stream_half_close(struct rpc_client_stream *s);
/* Resets the stream; on_close(CANCELLED) follows from the loop. */
int rpc_client_stream_cancel(struct rpc_client_stream *s);
size_t rpc_client_stream_queued(const struct rpc_client_stream *s);
void *rpc_client_stream_data(const struct rpc_client_stream *s);

/* Fails every pending call and stream with CANCELLED (their callbacks run
 * from the loop, before `cb`), closes the connection and frees the client;
 * `cb(arg)` (may be NULL) runs once the memory is gone. */
int rpc_client_close(struct rpc_client *c, void (*cb)(void *arg), void *arg);

#endif
