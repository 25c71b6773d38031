/*
 * peer.h — the peer transport: how cairnd members send raft messages and
 * snapshots to each other.
 *
 * WHAT IT IS
 *
 * A peer network (struct rpc_peer_net) lives on the member's libuv loop. It
 * listens on the member's peer URL with an rpc_server and keeps, for every
 * other member it was told about, one persistent outbound HTTP/2 stream
 * ("/cairnpeer.Peer/Stream", opened by us, messages flow from us to them).
 * Each member therefore has one inbound stream per peer (their outbound) and
 * one outbound stream per peer. Messages are opaque bytes: rpc/ never looks
 * inside them (raft/raft_codec.h encodes and decodes them, in server/).
 *
 * Snapshots travel on their own connection and stream
 * ("/cairnpeer.Peer/Snapshot"), read from a file descriptor in chunks and
 * written by the receiver to a temporary file, so a snapshot of any size is
 * never held in memory and never delays raft messages to the same peer.
 *
 * Every stream starts with a hello carrying the cluster id and the sender's
 * and receiver's member ids; a member of another cluster (or a stream meant
 * for another member) is refused with FAILED_PRECONDITION and logged.
 *
 * DELIVERY GUARANTEES (what raft needs, nothing more)
 *
 * - Messages to one peer are delivered in the order they were sent while one
 *   connection lasts. When it drops, the messages on the wire and not yet
 *   acknowledged by the receiver may be lost; queued ones are kept and sent
 *   in order after the reconnect. Raft tolerates loss and reordering across
 *   reconnects (it retransmits).
 * - Each peer has a bounded queue (bytes and messages, counting what is
 *   queued plus what is on the wire unacknowledged). rpc_peer_net_send()
 *   refuses with CAIRN_EAGAIN when it is full: the message is dropped, memory
 *   stays bounded. A slow or dead peer never blocks sends to other peers.
 * - Receivers acknowledge what they have delivered; the sender keeps at most
 *   a window of unacknowledged bytes on the wire (that is the flow control).
 *
 * THREADING
 *
 * Everything runs on the thread that runs the loop given at creation; no
 * function may be called from another thread. Callbacks are never called
 * from inside a function of this API: always from a loop callback. Inside a
 * callback the owner may call any function here, including
 * rpc_peer_net_close().
 *
 * ERRORS
 *
 * Functions return 0 or a negative cairn error code (common/cairn_error.h).
 * As in libuv: if a function that takes a callback returns an error, that
 * callback is never called. Any function that allocates may also return
 * CAIRN_ENOMEM.
 *
 * OWNERSHIP AND LIFETIMES
 *
 * - Buffers passed in (messages, snapshot meta, URLs, paths) are borrowed for
 *   the call; the net copies what it keeps.
 * - Buffers passed to callbacks (messages, meta, the snapshot path) are valid
 *   only until the callback returns.
 * - The snapshot file descriptor given to rpc_peer_net_send_snapshot() stays
 *   the caller's: it must stay open and unchanged until done_cb runs; the net
 *   reads it with pread() from offset 0 to EOF and never closes it.
 * - The file named in on_snapshot belongs to the owner once the callback
 *   runs: it must rename or unlink it (in the callback or later).
 * - The net is freed by rpc_peer_net_close(); its callback says when.
 */
#ifndef CAIRN_RPC_PEER_H
#define CAIRN_RPC_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct rpc_peer_net;

struct rpc_peer_config {
	uint64_t self_id; /* this member's id; non-zero */
	/* Checked in every hello. 0 = joining an existing cluster: adopt the
	 * cluster id of the first member whose hello arrives (outbound hellos
	 * are refused by the others until then, and retried). */
	uint64_t cluster_id;
	/* Per-peer bound on queued + unacknowledged outbound messages.
	 * 0 = 64 MiB and 4096 messages. */
	size_t max_queue_bytes;
	size_t max_queue_msgs;
	/* Largest raft message sent or accepted; 0 = 16 MiB. */
	size_t max_msg_size;
	/* Reconnect backoff: starts at backoff_min_ms, doubles on each failed
	 * attempt up to backoff_max_ms; each delay is drawn uniformly from
	 * [delay/2, delay] with a PRNG seeded from `seed` (no hidden
	 * randomness: the same seed gives the same delays). 0 = 50 ms / 2 s. */
	uint64_t backoff_min_ms;
	uint64_t backoff_max_ms;
	uint64_t seed;
	/* A connection attempt (TCP connect + hello answered) that takes longer
	 * is abandoned and retried after the backoff. 0 = 1000 ms. */
	uint64_t dial_timeout_ms;
	/* An active stream (or snapshot) with data on the wire that the peer
	 * has not acknowledged for this long is considered dead: its
	 * connection is closed and re-dialled. A snapshot sender waits ten
	 * times as long for the receiver's final confirmation (its fsync).
	 * 0 = 5000 ms. */
	uint64_t ack_timeout_ms;
	/* Where received snapshots are written (temporary files named
	 * "cairn-snap-*.tmp"); must exist. NULL = snapshots are refused. */
	const char *snap_dir;
	/* Snapshot chunk size; 0 = 1 MiB, at most 16 MiB. Must not exceed the
	 * receivers' max_msg_size (members of a cluster share one config). */
	size_t snap_chunk;
};

struct rpc_peer_cbs {
	/* One message from member `from` (its id from its hello). Required.
	 * Inbound streams are accepted from any member of the cluster, peer
	 * or not (counted in msgs_from_unknown): raft checks membership. A
	 * member's newer stream closes its older one (a half-open connection
	 * of a crashed host does not linger). */
	void (*on_message)(void *userdata, uint64_t from, const uint8_t *msg, size_t len);
	/* A complete snapshot from `from`: its `meta` bytes and the file at
	 * `path`, fsynced. The owner takes the file (rename or unlink). NULL =
	 * snapshots are refused. */
	void (*on_snapshot)(void *userdata, uint64_t from, const uint8_t *meta, size_t meta_len,
	                    const char *path);
	/* Optional: the outbound stream to `id` became active (hello answered)
	 * or stopped being active. For member health and logs. Not called for
	 * what the owner caused itself (rpc_peer_net_remove_peer, a new URL in
	 * rpc_peer_net_set_peer: active may then be reported true twice). */
	void (*on_peer_active)(void *userdata, uint64_t id, bool active);
};

/* Per-peer counters (monotonic) and gauges, for /metrics
 * (etcd_network_peer_sent_bytes_total, ..._received_bytes_total,
 * etcd_network_peer_sent_failures_total) and for member health. */
struct rpc_peer_status {
	bool connected;         /* the outbound stream is active */
	size_t queued_bytes;    /* queued + on the wire unacknowledged */
	size_t queued_msgs;     /* the same, in messages */
	uint64_t msgs_sent;     /* handed to the connection */
	uint64_t bytes_sent;    /* payload bytes of msgs_sent */
	uint64_t msgs_received; /* delivered to on_message from this peer */
	uint64_t bytes_received;
	uint64_t msgs_dropped; /* refused (queue full) or lost unacknowledged */
	uint64_t connects;     /* outbound streams that became active */
	uint64_t snaps_sent;   /* snapshots the peer confirmed */
	uint64_t snaps_failed; /* snapshots that ended with an error */
	int last_error;        /* cairn code of the last failure, 0 if none */
	char last_error_msg[128];
};

/* Creates a net on `loop`. `cfg` and `cbs` are copied (snap_dir too).
 * CAIRN_EINVAL when self_id, cluster_id or cbs->on_message is missing.
 * Nothing listens until rpc_peer_net_listen(). */
int rpc_peer_net_new(uv_loop_t *loop, const struct rpc_peer_config *cfg,
                     const struct rpc_peer_cbs *cbs, void *userdata, struct rpc_peer_net **out);

/* Listens on the member's peer URL ("http://HOST:PORT", PORT 0 picks one;
 * the bound port goes to *port_out when not NULL). HTTP/1.1 GET /health on
 * the same port answers "ok". May be called more than once. CAIRN_EADDR on a
 * bad URL, CAIRN_EIO when bind fails. */
int rpc_peer_net_listen(struct rpc_peer_net *net, const char *url, int *port_out);

/* Adds peer `id` at `url` ("http://HOST:PORT") or changes its URL (the
 * connection to the old URL is closed, queued messages are kept). Connects
 * at once. CAIRN_EINVAL for id 0 or self_id, CAIRN_EADDR on a bad URL. */
int rpc_peer_net_set_peer(struct rpc_peer_net *net, uint64_t id, const char *url);

/* Removes peer `id`: its queue is discarded, its connection closed, its
 * snapshots in flight end with CAIRN_ECANCELED. CAIRN_ENOTFOUND if unknown. */
int rpc_peer_net_remove_peer(struct rpc_peer_net *net, uint64_t id);

/* Copies `msg` into peer `to`'s queue. 0 when queued; CAIRN_EAGAIN when the
 * queue is full (nothing queued, counted in msgs_dropped; an empty queue
 * always takes one message, however large); CAIRN_ENOTFOUND
 * for an unknown peer; CAIRN_ETOOBIG over max_msg_size; CAIRN_ECLOSED once
 * the net is closing. */
int rpc_peer_net_send(struct rpc_peer_net *net, uint64_t to, const void *msg, size_t len);

/* Streams a snapshot to `to`: `meta` (copied, at most max_msg_size bytes),
 * then the contents of `fd` from offset 0 to EOF, on a connection of its
 * own. `done_cb(arg, status)` runs once: 0 when the peer has the file
 * (its on_snapshot ran), CAIRN_ECONNRESET when the connection failed or the
 * peer refused it, CAIRN_ECANCELED when the peer was removed or the net
 * closed, CAIRN_EIO when reading `fd` failed. Returns CAIRN_ENOTFOUND for an
 * unknown peer, CAIRN_EINVAL for a bad fd or NULL done_cb, CAIRN_ETOOBIG for
 * a too large meta, CAIRN_ECLOSED once the net is closing. */
typedef void (*rpc_peer_snap_done_cb)(void *arg, int status);
int rpc_peer_net_send_snapshot(struct rpc_peer_net *net, uint64_t to, const void *meta,
                               size_t meta_len, int fd, rpc_peer_snap_done_cb done_cb, void *arg);

/* Fills *st for peer `id`; CAIRN_ENOTFOUND if unknown. */
int rpc_peer_net_peer_status(const struct rpc_peer_net *net, uint64_t id,
                             struct rpc_peer_status *st);

/* Messages received from members that are not (or no longer) peers, and
 * hellos refused (wrong cluster, wrong member, bad protocol). */
struct rpc_peer_net_stats {
	uint64_t msgs_from_unknown;
	uint64_t hellos_refused;
	uint64_t snaps_received;
	uint64_t snaps_refused; /* refused or failed while receiving */
};
void rpc_peer_net_get_stats(const struct rpc_peer_net *net, struct rpc_peer_net_stats *out);

/* Graceful close: stops listening, closes every connection (queued messages
 * are discarded; snapshots in flight end with CAIRN_ECANCELED, partial
 * received snapshot files are removed), then frees the net; `cb(arg)` (may
 * be NULL) runs once the memory is gone. From this call on, no callback
 * runs but the done_cb of snapshots in flight and `cb`. Call once; CAIRN_EBUSY if already
 * closing. */
/* The cluster id in force (the adopted one for a joining member). */
uint64_t rpc_peer_net_cluster_id(const struct rpc_peer_net *net);

int rpc_peer_net_close(struct rpc_peer_net *net, void (*cb)(void *arg), void *arg);

#endif
