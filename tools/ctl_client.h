/*
 * ctl_client.h — blocking calls over the libuv rpc client, for cairnctl.
 *
 * One struct ctl_conn owns a private uv loop and one rpc_client for one
 * endpoint of a list. ctl_call() starts a unary call and runs the loop until
 * it ends, so the CLI reads like straight-line code; streaming commands
 * (watch, keep-alive, snapshot) open streams on ctl_conn.cli themselves and
 * drive the loop with ctl_run().
 *
 * Failover, as clientv3's balancer gives etcdctl: a call whose connection
 * could not be established (nothing was sent) moves to the next endpoint
 * of the list at once; once every endpoint failed, the round starts again
 * after a short pause until the dial timeout has passed. A call that was
 * sent and lost its connection is retried (on the same endpoint) only if it
 * only reads: a write may have been applied.
 *
 * Errors are reported as etcdctl (clientv3) words them: the server's
 * "etcdserver: ..." text as is, other statuses as
 * "rpc error: code = Unavailable desc = ...", and a call that could not
 * reach the server within the dial timeout, or that ran out of the command
 * timeout, as "context deadline exceeded".
 *
 * Single-threaded; not reentrant from inside loop callbacks.
 */
#ifndef CAIRN_TOOLS_CTL_CLIENT_H
#define CAIRN_TOOLS_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

struct ctl_conn {
	uv_loop_t loop;
	struct rpc_client *cli;
	char endpoint[256];     /* the current one, as the user gave it */
	char *const *endpoints; /* borrowed (or `self`): outlives the connection */
	size_t n_endpoints;
	size_t cur;    /* index of `endpoint` in `endpoints` */
	char one[256]; /* ctl_conn_open's list of one */
	char *self[1];
	uint64_t dial_timeout_ms;
	uint64_t command_timeout_ms;
	/* Unpacks responses (NULL: malloc; then free them with
	 * protobuf_c_message_free_unpacked(msg, NULL)). */
	ProtobufCAllocator *alloc;
};

/* Error text of the last failed call, etcdctl's words. */
#define CTL_ERR_LEN 512

/* "127.0.0.1:2379", "http://host:port" or "unix:///path". No I/O yet. */
int ctl_conn_open(struct ctl_conn *c, const char *endpoint, uint64_t dial_timeout_ms,
                  uint64_t command_timeout_ms);
/* The same over a list (n >= 1) that fails over; starts on endpoints[0]. */
int ctl_conn_open_list(struct ctl_conn *c, char *const *endpoints, size_t n,
                       uint64_t dial_timeout_ms, uint64_t command_timeout_ms);
void ctl_conn_close(struct ctl_conn *c);

/* Moves to the next endpoint of the list (wrapping); pending calls and
 * streams on the current one end with CANCELLED first. -1 if the client
 * for it could not be made (bad URL). */
int ctl_conn_next(struct ctl_conn *c);

/* True for the failure of a call or stream whose request was never sent
 * (its connection could not be established). */
bool ctl_not_sent(int grpc_status, const char *message);

/* Retry state of one call or stream, zeroed before its first attempt. */
struct ctl_retry {
	size_t failed; /* endpoints that failed in this round */
	unsigned backoff_ms;
};
/* After a failed attempt of a call begun at `start` (ctl_now_ms()): false
 * once the dial timeout has passed; else moves to the next endpoint if the
 * request was not sent (pausing once a whole round failed) and returns
 * true: try again. */
bool ctl_retry(struct ctl_conn *c, uint64_t start, struct ctl_retry *r, bool not_sent);

/* Unary call: packs req, waits, unpacks the response with `rd` into *out
 * (allocated with c->alloc). Returns 0, or
 * the gRPC status (> 0) with err filled. A connection failure is retried
 * (on the next endpoint, see above) until the dial timeout has passed (the
 * server may still be starting, as gRPC's blocking dial waits). */
int ctl_call(struct ctl_conn *c, const char *path, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out, char *err);

/* Runs the loop until *done is true (or nothing is left to run). */
void ctl_run(struct ctl_conn *c, const bool *done);

/* Formats a received status as clientv3 would print it. */
void ctl_format_error(int grpc_status, const char *message, char *err);

/* Milliseconds of a monotonic clock. */
uint64_t ctl_now_ms(void);

#endif
