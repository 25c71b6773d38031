/*
 * peer.c — the peer transport (see peer.h): raft messages and snapshots
 * between members, over the rpc server and client of this directory.
 *
 * WIRE FORMAT
 *
 * Two bidi gRPC methods. Every gRPC message starts with a type byte;
 * integers are big-endian. The format belongs to cairn alone (members of
 * one cluster run the same version), so it is a few fixed layouts rather
 * than protobuf; the hello carries a version byte for the day it changes.
 *
 *   /cairnpeer.Peer/Stream (one per ordered pair of members)
 *     us → them  'H' hello: ver u8, cluster u64, from u64, to u64, window u32
 *                'M' + one raft message (opaque)
 *     them → us  'A' hello ack: ver u8, cluster u64, id u64
 *                'K' ack: msgs u64, bytes u64 (cumulative on this stream)
 *   /cairnpeer.Peer/Snapshot (one per snapshot, on its own connection)
 *     us → them  'H' hello (window = the most bytes we keep unacknowledged),
 *                'S' + meta, 'C' + chunk ..., 'E' total u64, half-close
 *     them → us  'A' hello ack, 'K' (chunks, bytes written to disk),
 *                'D' once on_snapshot ran; then grpc-status OK
 *
 * HOW THE FLOW CONTROL WORKS
 *
 * The rpc client queues whatever it is given, so the bound is kept here:
 * a peer's messages wait in our queue and move to the stream only while
 * fewer than WINDOW_MSGS / WINDOW_BYTES are unacknowledged. The receiver
 * acknowledges, once per loop turn, what it has delivered. The configured
 * queue bound counts queued + unacknowledged, so memory per peer is at most
 * the bound (plus the copy rpc holds of the window). A snapshot sender keeps
 * at most SNAP_WINDOW_CHUNKS chunks unacknowledged; the receiver
 * acknowledges a chunk once it is on disk and refuses a sender that
 * overruns the window, so neither side holds more than the window.
 *
 * STATES OF AN OUTBOUND PEER (peer_* functions make the transitions)
 *
 *   CONNECTING ──hello ack──► ACTIVE ──stream closed──► BACKOFF
 *       │  └──dial timeout / stream closed──────────────► BACKOFF
 *       └──────────────────◄─ timer (backoff delay) ◄──────┘
 *
 * Invariants:
 *  1. p->st != NULL in CONNECTING and ACTIVE (until its on_close); a
 *     stream's on_close with s != p->st belongs to a replaced connection and
 *     only its memory matters.
 *  2. queued = pending (our list) + unacknowledged (s_* - a_*) never exceeds
 *     the configured bound, except that one message is always accepted into
 *     an empty queue.
 *  3. Nothing is freed inside an API function: peers, snapshots and inbound
 *     streams go when their handles and rpc objects have closed; the net
 *     goes when `pending` (everything it must outlive) reaches zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cairn_error.h"
#include "rpc/peer.h"
#include "rpc/rpc_int.h"

#define PATH_STREAM   "/cairnpeer.Peer/Stream"
#define PATH_SNAPSHOT "/cairnpeer.Peer/Snapshot"
#define PEER_VERSION  1

enum {
	T_HELLO = 'H',
	T_HELLO_ACK = 'A',
	T_MSG = 'M',
	T_ACK = 'K',
	T_META = 'S',
	T_CHUNK = 'C',
	T_END = 'E',
	T_DONE = 'D',
};
#define HELLO_LEN     (1 + 1 + 8 + 8 + 8 + 4)
#define HELLO_ACK_LEN (1 + 1 + 8 + 8)
#define ACK_LEN       (1 + 8 + 8)
#define END_LEN       (1 + 8)

#define DEF_QUEUE_BYTES    (64u * 1024 * 1024)
#define DEF_QUEUE_MSGS     4096
#define DEF_MAX_MSG        (16u * 1024 * 1024)
#define DEF_BACKOFF_MIN    50
#define DEF_BACKOFF_MAX    2000
#define DEF_DIAL_TIMEOUT   1000
#define DEF_ACK_TIMEOUT    5000
#define DEF_SNAP_CHUNK     (1024u * 1024)
#define WINDOW_BYTES       (4u * 1024 * 1024)
#define WINDOW_MSGS        1024
#define SNAP_WINDOW_CHUNKS 4
#define SNAP_MAX_WINDOW    (64u * 1024 * 1024) /* what a receiver accepts */
#define DONE_TIMEOUT_MULT  10

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/* A queued message (data[0] = T_MSG, then the payload) or a received
 * snapshot chunk waiting for the disk (data = the bytes; off = written). */
struct qbuf {
	struct qbuf *next;
	size_t len, off;
	uint8_t data[];
};

enum pstate { P_CONNECTING, P_ACTIVE, P_BACKOFF };

struct peer {
	struct rpc_peer_net *net;
	uint64_t id;
	char *url;
	struct rpc_client *cli; /* NULL after a failure: a fresh one next time */
	struct rpc_client_stream *st;
	enum pstate state;
	bool removed;
	bool local_err;   /* we closed it and said why in stats.last_error */
	uv_timer_t timer; /* dial timeout in CONNECTING, delay in BACKOFF */
	struct qbuf *qhead, *qtail;
	size_t q_bytes, q_msgs;   /* pending in our list */
	uint64_t s_msgs, s_bytes; /* handed to the current stream */
	uint64_t a_msgs, a_bytes; /* acknowledged on the current stream */
	uint64_t backoff_ms;      /* the next delay's upper bound */
	uint64_t progress_at;     /* now_ms() when unacked data last moved */
	int refs;                 /* timer + rpc clients still closing */
	struct rpc_peer_status stats;
	struct peer *prev, *next;
};

struct snap_out {
	struct rpc_peer_net *net;
	uint64_t to;
	struct rpc_client *cli;
	struct rpc_client_stream *st;
	int fd;
	uint8_t *buf; /* T_CHUNK + one chunk */
	uv_fs_t req;
	bool reading, eof, got_hello, got_done, canceled, timed_out;
	bool stream_closed, finished, cli_freed;
	int read_error;
	uint64_t off, acked; /* bytes sent, bytes the peer has on disk */
	uint64_t progress_at;
	rpc_peer_snap_done_cb done_cb;
	void *arg;
	struct snap_out *prev, *next;
};

/* One inbound stream of either method. */
struct inb {
	struct rpc_peer_net *net;
	struct rpc_stream *st; /* NULL once its on_close ran */
	bool snap, helloed, on_ackq, want_writable;
	uint64_t from;
	uint64_t got_msgs, got_bytes; /* delivered (messages) or on disk (snapshot) */
	uint64_t acked_msgs, acked_bytes;
	struct inb *prev, *next; /* net->inbs: every inbound stream */
	struct inb *ack_next;    /* net->ackq */
	/* Snapshot receiving. */
	uint64_t window;
	uint8_t *meta;
	size_t meta_len;
	bool have_meta, end, fs_busy, delivered;
	char *path; /* the temp file, until handed to on_snapshot */
	uv_file fd;
	uv_fs_t req;
	struct qbuf *wq_head, *wq_tail;
	uint64_t recv_bytes, total;
};

struct rpc_peer_net {
	uv_loop_t *loop;
	struct rpc_peer_config cfg; /* defaults filled in; snap_dir is ours */
	struct rpc_peer_cbs cbs;
	void *ud;
	struct rpc_server *srv;
	struct peer *peers;
	struct snap_out *snaps;
	struct inb *inbs;
	struct inb *ackq; /* inbound streams with an ack to send this turn */
	uv_check_t ack_check;
	uv_timer_t watchdog;
	uint64_t rng;
	int pending;
	bool closing;
	void (*close_cb)(void *);
	void *close_arg;
	struct rpc_peer_net_stats stats;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Big-endian integers of `n` bytes. */
static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Read fresh, not the loop's cached uv_now(): the owner may call us after
 * a long synchronous step (writing the snapshot it then sends), and a stale
 * start would trip the ack watchdog at once. */
static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

/* splitmix64: the only randomness, from the caller's seed. */
static uint64_t next_rand(struct rpc_peer_net *net)
{
	uint64_t z = (net->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void encode_hello(struct rpc_peer_net *net, uint64_t to, uint32_t window, uint8_t *b)
{
	b[0] = T_HELLO;
	b[1] = PEER_VERSION;
	put_be(b + 2, net->cfg.cluster_id, 8);
	put_be(b + 10, net->cfg.self_id, 8);
	put_be(b + 18, to, 8);
	put_be(b + 26, window, 4);
}

/* Checks a hello ack from the member we dialled as `id`; 0 or a message. */
static const char *check_hello_ack(struct rpc_peer_net *net, uint64_t id, const uint8_t *m,
                                   size_t len)
{
	if (len != HELLO_ACK_LEN || m[1] != PEER_VERSION)
		return "bad hello ack";
	if (get_be(m + 2, 8) != net->cfg.cluster_id)
		return "peer belongs to another cluster";
	if (get_be(m + 10, 8) != id)
		return "peer URL answers with another member id";
	return NULL;
}

static void set_error(struct rpc_peer_status *st, int code, const char *what, const char *detail)
{
	st->last_error = code;
	snprintf(st->last_error_msg, sizeof(st->last_error_msg), "%s%s%s", what,
	         detail != NULL && *detail ? ": " : "", detail != NULL ? detail : "");
}

static struct peer *find_peer(const struct rpc_peer_net *net, uint64_t id)
{
	for (struct peer *p = net->peers; p != NULL; p = p->next)
		if (p->id == id && !p->removed)
			return p;
	return NULL;
}

static void free_qbufs(struct qbuf *q)
{
	while (q != NULL) {
		struct qbuf *next = q->next;
		free(q);
		q = next;
	}
}

static void net_maybe_free(struct rpc_peer_net *net)
{
	if (!net->closing || net->pending > 0)
		return;
	void (*cb)(void *) = net->close_cb;
	void *arg = net->close_arg;
	free(net->cfg.snap_dir == NULL ? NULL : (char *)net->cfg.snap_dir);
	free(net);
	if (cb != NULL)
		cb(arg);
}

static void net_unpend(struct rpc_peer_net *net)
{
	net->pending--;
	net_maybe_free(net);
}

static void handle_unpend(uv_handle_t *h)
{
	net_unpend(h->data);
}

/* ------------------------------------------------------------------------ */
/* Outbound message streams                                                 */
/* ------------------------------------------------------------------------ */

static void peer_connect(struct peer *p);
static void snap_close_client(struct snap_out *s);

static const struct rpc_client_config client_cfg = {.max_recv_msg_size = 64 * 1024};

static void peer_maybe_free(struct peer *p)
{
	if (!p->removed || p->refs > 0)
		return;
	struct rpc_peer_net *net = p->net;
	free_qbufs(p->qhead);
	free(p->url);
	free(p);
	net_unpend(net);
}

static void peer_client_closed(void *arg)
{
	struct peer *p = arg;
	p->refs--;
	peer_maybe_free(p);
}

static void peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	p->refs--;
	peer_maybe_free(p);
}

/* Closes the peer's client (and so its connection, whatever state it is
 * in); the current stream's on_close follows from the loop. */
static void peer_drop_client(struct peer *p)
{
	if (p->cli == NULL)
		return;
	p->refs++;
	rpc_client_close(p->cli, peer_client_closed, p);
	p->cli = NULL;
}

/* Moves queued messages to the stream while the window allows. */
static void peer_pump(struct peer *p)
{
	while (p->state == P_ACTIVE && p->qhead != NULL) {
		struct qbuf *q = p->qhead;
		uint64_t un_msgs = p->s_msgs - p->a_msgs, un_bytes = p->s_bytes - p->a_bytes;
		if (un_msgs > 0 && (un_msgs >= WINDOW_MSGS || un_bytes + q->len - 1 > WINDOW_BYTES))
			return;
		if (rpc_client_stream_send(p->st, q->data, q->len) != 0)
			return; /* on_close is on its way; the message stays queued */
		if (un_msgs == 0)
			p->progress_at = now_ms();
		p->qhead = q->next;
		if (p->qhead == NULL)
			p->qtail = NULL;
		p->q_msgs--;
		p->q_bytes -= q->len - 1;
		p->s_msgs++;
		p->s_bytes += q->len - 1;
		p->stats.msgs_sent++;
		p->stats.bytes_sent += q->len - 1;
		free(q);
	}
}

/* Gives up on the current connection for a reason found here. */
static void peer_fail(struct peer *p, int code, const char *what)
{
	set_error(&p->stats, code, what, p->url);
	p->local_err = p->st != NULL;
	peer_drop_client(p);
}

static void peer_timer_cb(uv_timer_t *t)
{
	struct peer *p = t->data;
	if (p->state == P_BACKOFF) {
		peer_connect(p);
	} else if (p->state == P_CONNECTING) {
		peer_fail(p, CAIRN_ETIMEOUT, "dial timeout");
	}
}

static void peer_backoff(struct peer *p)
{
	struct rpc_peer_net *net = p->net;
	uint64_t d = p->backoff_ms;
	uint64_t delay = d / 2 + (d > 1 ? next_rand(net) % (d - d / 2 + 1) : 0);
	p->backoff_ms = d * 2 > net->cfg.backoff_max_ms ? net->cfg.backoff_max_ms : d * 2;
	p->state = P_BACKOFF;
	uv_timer_start(&p->timer, peer_timer_cb, delay, 0);
}

static void out_on_message(struct rpc_client_stream *s, const uint8_t *m, size_t len)
{
	struct peer *p = rpc_client_stream_data(s);
	if (s != p->st || len == 0)
		return;
	struct rpc_peer_net *net = p->net;
	if (m[0] == T_HELLO_ACK && p->state == P_CONNECTING) {
		const char *bad = check_hello_ack(net, p->id, m, len);
		if (bad != NULL) {
			rpc_log("peer %llx at %s: %s", (unsigned long long)p->id, p->url, bad);
			peer_fail(p, CAIRN_EPROTO, bad);
			return;
		}
		uv_timer_stop(&p->timer);
		p->state = P_ACTIVE;
		p->backoff_ms = net->cfg.backoff_min_ms;
		p->stats.connected = true;
		p->stats.connects++;
		if (net->cbs.on_peer_active != NULL)
			net->cbs.on_peer_active(net->ud, p->id, true);
		if (p->st == s) /* the callback may have removed the peer */
			peer_pump(p);
	} else if (m[0] == T_ACK && len == ACK_LEN && p->state == P_ACTIVE) {
		uint64_t am = get_be(m + 1, 8), ab = get_be(m + 9, 8);
		if (am > p->s_msgs || ab > p->s_bytes || am < p->a_msgs) {
			peer_fail(p, CAIRN_EPROTO, "bad ack");
			return;
		}
		if (am > p->a_msgs)
			p->progress_at = now_ms();
		p->a_msgs = am;
		p->a_bytes = ab;
		peer_pump(p);
	} else {
		peer_fail(p, CAIRN_EPROTO, "unexpected message from peer");
	}
}

static void out_on_close(struct rpc_client_stream *s, int status, const char *message)
{
	struct peer *p = rpc_client_stream_data(s);
	if (s != p->st)
		return; /* a replaced or removed connection */
	struct rpc_peer_net *net = p->net;
	bool was_active = p->state == P_ACTIVE;
	p->st = NULL;
	p->stats.msgs_dropped += p->s_msgs - p->a_msgs;
	p->s_msgs = p->s_bytes = p->a_msgs = p->a_bytes = 0;
	p->stats.connected = false;
	if (!p->local_err) {
		char what[48];
		snprintf(what, sizeof(what), "stream closed (%s)", rpc_status_name(status));
		if (status == RPC_FAILED_PRECONDITION)
			rpc_log("peer %llx at %s refused us: %s", (unsigned long long)p->id, p->url,
			        message);
		set_error(&p->stats, CAIRN_ECONNRESET, what, message);
	}
	p->local_err = false;
	/* A connection that failed may be half-dead: start the next attempt on
	 * a fresh one. */
	peer_drop_client(p);
	uv_timer_stop(&p->timer);
	peer_backoff(p);
	if (was_active && net->cbs.on_peer_active != NULL)
		net->cbs.on_peer_active(net->ud, p->id, false);
}

static const struct rpc_client_stream_cbs out_cbs = {
    .on_message = out_on_message,
    .on_close = out_on_close,
};

static void peer_connect(struct peer *p)
{
	struct rpc_peer_net *net = p->net;
	uint8_t hello[HELLO_LEN];
	int rv = 0;
	if (p->cli == NULL)
		rv = rpc_client_new(net->loop, p->url, &client_cfg, &p->cli);
	if (rv == 0)
		rv = rpc_client_stream_open(p->cli, PATH_STREAM, &out_cbs, p, &p->st);
	if (rv != 0) {
		set_error(&p->stats, rv, "cannot open stream", cairn_strerror(rv));
		peer_backoff(p);
		return;
	}
	p->state = P_CONNECTING;
	uv_update_time(net->loop); /* timers count from the loop's "now" */
	uv_timer_start(&p->timer, peer_timer_cb, net->cfg.dial_timeout_ms, 0);
	encode_hello(net, p->id, WINDOW_BYTES, hello);
	if (rpc_client_stream_send(p->st, hello, sizeof(hello)) != 0)
		peer_fail(p, CAIRN_ECONNRESET, "cannot send hello"); /* on_close follows */
}

/* Takes the peer out of service; its memory goes when its handles close. */
static void peer_remove(struct peer *p)
{
	struct rpc_peer_net *net = p->net;
	p->removed = true;
	p->st = NULL; /* its on_close is now a stale one */
	peer_drop_client(p);
	free_qbufs(p->qhead);
	p->qhead = p->qtail = NULL;
	for (struct snap_out *s = net->snaps; s != NULL; s = s->next) {
		if (s->to == p->id) {
			s->canceled = true;
			snap_close_client(s);
		}
	}
	RPC_DLIST_UNLINK(net->peers, p);
	uv_close((uv_handle_t *)&p->timer, peer_timer_closed);
}

/* ------------------------------------------------------------------------ */
/* Outbound snapshots                                                       */
/* ------------------------------------------------------------------------ */

static uint64_t snap_window(const struct rpc_peer_net *net)
{
	return (uint64_t)net->cfg.snap_chunk * SNAP_WINDOW_CHUNKS;
}

static void snap_maybe_free(struct snap_out *s)
{
	if (!s->finished || !s->cli_freed)
		return;
	struct rpc_peer_net *net = s->net;
	free(s->buf);
	free(s);
	net_unpend(net);
}

static void snap_client_freed(void *arg)
{
	struct snap_out *s = arg;
	s->cli_freed = true;
	snap_maybe_free(s);
}

static void snap_close_client(struct snap_out *s)
{
	if (s->cli == NULL)
		return;
	rpc_client_close(s->cli, snap_client_freed, s);
	s->cli = NULL;
}

/* Runs done_cb once the stream is over and the fd is no longer read. */
static void snap_maybe_finish(struct snap_out *s)
{
	if (!s->stream_closed || s->reading || s->finished)
		return;
	struct rpc_peer_net *net = s->net;
	s->finished = true;
	RPC_DLIST_UNLINK(net->snaps, s);
	int status = s->got_done          ? 0
	             : s->canceled        ? CAIRN_ECANCELED
	             : s->read_error != 0 ? CAIRN_EIO
	                                  : CAIRN_ECONNRESET;
	struct peer *p = find_peer(net, s->to);
	if (p != NULL) {
		if (status == 0) {
			p->stats.snaps_sent++;
		} else {
			p->stats.snaps_failed++;
			set_error(&p->stats, status, "snapshot failed",
			          s->timed_out ? "no acknowledgement" : NULL);
		}
	}
	snap_close_client(s);
	s->done_cb(s->arg, status);
	snap_maybe_free(s);
}

static void snap_pump(struct snap_out *s);

static void snap_read_cb(uv_fs_t *req)
{
	struct snap_out *s = req->data;
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	s->reading = false;
	if (s->st == NULL || s->canceled) {
		snap_maybe_finish(s);
		return;
	}
	if (n < 0) {
		rpc_log("peer snapshot to %llx: read: %s", (unsigned long long)s->to,
		        uv_strerror((int)n));
		s->read_error = CAIRN_EIO;
		snap_close_client(s);
		return;
	}
	if (n == 0) {
		uint8_t end[END_LEN] = {T_END};
		put_be(end + 1, s->off, 8);
		s->eof = true;
		if (rpc_client_stream_send(s->st, end, sizeof(end)) != 0 ||
		    rpc_client_stream_half_close(s->st) != 0)
			snap_close_client(s);
		return;
	}
	s->buf[0] = T_CHUNK;
	if (s->off == s->acked)
		s->progress_at = now_ms();
	if (rpc_client_stream_send(s->st, s->buf, (size_t)n + 1) != 0) {
		snap_close_client(s);
		return;
	}
	s->off += (uint64_t)n;
	snap_pump(s);
}

static void snap_pump(struct snap_out *s)
{
	uint64_t chunk = s->net->cfg.snap_chunk;
	if (s->reading || s->eof || s->st == NULL || !s->got_hello ||
	    s->off - s->acked + chunk > snap_window(s->net))
		return;
	uv_buf_t b = uv_buf_init((char *)s->buf + 1, (unsigned)s->net->cfg.snap_chunk);
	s->req.data = s;
	int rv = uv_fs_read(s->net->loop, &s->req, s->fd, &b, 1, (int64_t)s->off, snap_read_cb);
	if (rv != 0) {
		rpc_log("peer snapshot to %llx: read: %s", (unsigned long long)s->to,
		        uv_strerror(rv));
		s->read_error = CAIRN_EIO;
		snap_close_client(s);
		return;
	}
	s->reading = true;
}

static void snap_on_message(struct rpc_client_stream *st, const uint8_t *m, size_t len)
{
	struct snap_out *s = rpc_client_stream_data(st);
	if (len == 0)
		return;
	if (m[0] == T_HELLO_ACK && !s->got_hello) {
		const char *bad = check_hello_ack(s->net, s->to, m, len);
		if (bad != NULL) {
			rpc_log("peer snapshot to %llx: %s", (unsigned long long)s->to, bad);
			snap_close_client(s);
			return;
		}
		s->got_hello = true;
		s->progress_at = now_ms();
		snap_pump(s);
	} else if (m[0] == T_ACK && len == ACK_LEN && s->got_hello) {
		uint64_t ab = get_be(m + 9, 8);
		if (ab > s->off || ab < s->acked) {
			snap_close_client(s);
			return;
		}
		if (ab > s->acked)
			s->progress_at = now_ms();
		s->acked = ab;
		snap_pump(s);
	} else if (m[0] == T_DONE && len == 1 && s->eof && s->acked == s->off) {
		s->got_done = true;
	} else {
		snap_close_client(s);
	}
}

static void snap_on_close(struct rpc_client_stream *st, int status, const char *message)
{
	struct snap_out *s = rpc_client_stream_data(st);
	if (status != RPC_OK && !s->canceled)
		rpc_log("peer snapshot to %llx: %s: %s", (unsigned long long)s->to,
		        rpc_status_name(status), message);
	/* After 'D' the peer has the file, whatever happened to the trailers. */
	s->st = NULL;
	s->stream_closed = true;
	snap_maybe_finish(s);
}

static const struct rpc_client_stream_cbs snap_cbs = {
    .on_message = snap_on_message,
    .on_close = snap_on_close,
};

/* ------------------------------------------------------------------------ */
/* Inbound streams                                                          */
/* ------------------------------------------------------------------------ */

static void ack_check_cb(uv_check_t *h);

static void inb_send_ack(struct inb *in)
{
	if (in->st == NULL || (in->got_msgs == in->acked_msgs && in->got_bytes == in->acked_bytes))
		return;
	uint8_t ack[ACK_LEN] = {T_ACK};
	put_be(ack + 1, in->got_msgs, 8);
	put_be(ack + 9, in->got_bytes, 8);
	int rv = rpc_stream_send(in->st, ack, sizeof(ack));
	if (rv == CAIRN_EAGAIN) {
		in->want_writable = true; /* on_writable retries; acks are cumulative */
		return;
	}
	in->acked_msgs = in->got_msgs;
	in->acked_bytes = in->got_bytes;
}

/* Acknowledges at the end of this loop turn: one ack covers everything
 * that arrived in the turn. */
static void inb_queue_ack(struct inb *in)
{
	struct rpc_peer_net *net = in->net;
	if (in->on_ackq || net->closing)
		return;
	in->on_ackq = true;
	if (net->ackq == NULL)
		uv_check_start(&net->ack_check, ack_check_cb);
	in->ack_next = net->ackq;
	net->ackq = in;
}

static void ack_check_cb(uv_check_t *h)
{
	struct rpc_peer_net *net = h->data;
	while (net->ackq != NULL) {
		struct inb *in = net->ackq;
		net->ackq = in->ack_next;
		in->on_ackq = false;
		inb_send_ack(in);
	}
	uv_check_stop(h);
}

static void inb_maybe_free(struct inb *in)
{
	if (in->st != NULL || in->fs_busy)
		return;
	struct rpc_peer_net *net = in->net;
	for (struct inb **pp = &net->ackq; in->on_ackq && *pp != NULL; pp = &(*pp)->ack_next) {
		if (*pp == in) {
			*pp = in->ack_next;
			break;
		}
	}
	RPC_DLIST_UNLINK(net->inbs, in);
	if (in->fd >= 0) {
		uv_fs_t req;
		uv_fs_close(NULL, &req, in->fd, NULL);
		uv_fs_req_cleanup(&req);
	}
	if (in->path != NULL) {
		unlink(in->path);
		free(in->path);
	}
	if (in->snap && !in->delivered)
		net->stats.snaps_refused++;
	free_qbufs(in->wq_head);
	free(in->meta);
	free(in);
	net_unpend(net);
}

/* Ends an inbound stream with an error status (on_close follows). */
static void inb_fail(struct inb *in, int status, const char *message)
{
	if (in->st != NULL)
		rpc_stream_close(in->st, status, message);
}

static void inb_snap_step(struct inb *in);

static void inb_fs_cb(uv_fs_t *req)
{
	struct inb *in = req->data;
	ssize_t n = req->result;
	uv_fs_type type = req->fs_type;
	uv_fs_req_cleanup(req);
	in->fs_busy = false;
	if (in->st == NULL || in->net->closing) {
		/* No callbacks once the owner closed the net: the stream's
		 * on_close (if still to come) frees it and removes the file. */
		inb_maybe_free(in);
		return;
	}
	if (n < 0) {
		rpc_log("peer snapshot from %llx: %s: %s", (unsigned long long)in->from,
		        type == UV_FS_WRITE ? "write" : "fsync", uv_strerror((int)n));
		inb_fail(in, RPC_INTERNAL, "cairn peer: cannot write snapshot");
		return;
	}
	if (type == UV_FS_WRITE) {
		struct qbuf *q = in->wq_head;
		q->off += (size_t)n;
		in->got_bytes += (uint64_t)n;
		if (q->off == q->len) {
			in->wq_head = q->next;
			if (in->wq_head == NULL)
				in->wq_tail = NULL;
			in->got_msgs++;
			free(q);
		}
		inb_queue_ack(in);
	} else if (type == UV_FS_FSYNC) {
		struct rpc_peer_net *net = in->net;
		uv_fs_close(NULL, req, in->fd, NULL);
		uv_fs_req_cleanup(req);
		in->fd = -1;
		char *path = in->path;
		in->path = NULL; /* the owner's now */
		in->delivered = true;
		net->stats.snaps_received++;
		net->cbs.on_snapshot(net->ud, in->from, in->meta, in->meta_len, path);
		free(path);
		if (in->st != NULL) {
			uint8_t done = T_DONE;
			inb_send_ack(in);
			if (rpc_stream_send(in->st, &done, 1) == 0)
				rpc_stream_close(in->st, RPC_OK, NULL);
			else
				inb_fail(in, RPC_UNAVAILABLE, "cairn peer: cannot confirm");
		}
		return;
	}
	inb_snap_step(in);
}

/* Starts the next disk operation of a snapshot being received. */
static void inb_snap_step(struct inb *in)
{
	if (in->fs_busy || in->st == NULL || in->delivered)
		return;
	uv_loop_t *loop = in->net->loop;
	in->req.data = in;
	int rv;
	if (in->wq_head != NULL) {
		struct qbuf *q = in->wq_head;
		uv_buf_t b = uv_buf_init((char *)q->data + q->off, (unsigned)(q->len - q->off));
		rv = uv_fs_write(loop, &in->req, in->fd, &b, 1, -1, inb_fs_cb);
	} else if (in->end && in->got_bytes == in->total) {
		rv = uv_fs_fsync(loop, &in->req, in->fd, inb_fs_cb);
	} else {
		return;
	}
	if (rv != 0) {
		rpc_log("peer snapshot from %llx: %s", (unsigned long long)in->from,
		        uv_strerror(rv));
		inb_fail(in, RPC_INTERNAL, "cairn peer: cannot write snapshot");
		return;
	}
	in->fs_busy = true;
}

static void inb_snap_message(struct inb *in, const uint8_t *m, size_t len)
{
	struct rpc_peer_net *net = in->net;
	if (m[0] == T_META && !in->have_meta) {
		char tmpl[4096];
		int n = snprintf(tmpl, sizeof(tmpl), "%s/cairn-snap-XXXXXX.tmp", net->cfg.snap_dir);
		in->meta = malloc(len);
		if (in->meta == NULL || n < 0 || (size_t)n >= sizeof(tmpl)) {
			inb_fail(in, RPC_RESOURCE_EXHAUSTED, "cairn peer: cannot store snapshot");
			return;
		}
		in->meta_len = len - 1;
		memcpy(in->meta, m + 1, len - 1);
		in->have_meta = true;
		in->fd = mkostemps(tmpl, 4, O_CLOEXEC);
		if (in->fd < 0) {
			rpc_log("peer snapshot from %llx: %s: %s", (unsigned long long)in->from,
			        tmpl, strerror(errno));
			inb_fail(in, RPC_INTERNAL, "cairn peer: cannot create snapshot file");
			return;
		}
		in->path = strdup(tmpl);
		if (in->path == NULL)
			inb_fail(in, RPC_RESOURCE_EXHAUSTED, "cairn peer: out of memory");
	} else if (m[0] == T_CHUNK && in->have_meta && !in->end && len > 1) {
		if (in->recv_bytes + (len - 1) - in->got_bytes > in->window) {
			inb_fail(in, RPC_RESOURCE_EXHAUSTED, "cairn peer: snapshot window overrun");
			return;
		}
		struct qbuf *q = malloc(sizeof(*q) + len - 1);
		if (q == NULL) {
			inb_fail(in, RPC_RESOURCE_EXHAUSTED, "cairn peer: out of memory");
			return;
		}
		q->next = NULL;
		q->len = len - 1;
		q->off = 0;
		memcpy(q->data, m + 1, len - 1);
		if (in->wq_tail != NULL)
			in->wq_tail->next = q;
		else
			in->wq_head = q;
		in->wq_tail = q;
		in->recv_bytes += len - 1;
		inb_snap_step(in);
	} else if (m[0] == T_END && len == END_LEN && in->have_meta && !in->end) {
		in->end = true;
		in->total = get_be(m + 1, 8);
		if (in->total != in->recv_bytes) {
			inb_fail(in, RPC_DATA_LOSS, "cairn peer: snapshot size mismatch");
			return;
		}
		inb_snap_step(in);
	} else {
		inb_fail(in, RPC_INVALID_ARGUMENT, "cairn peer: unexpected snapshot message");
	}
}

/* Checks the first message of an inbound stream; NULL when it is a good
 * hello, else why it is refused. */
static const char *check_hello(struct rpc_peer_net *net, struct inb *in, const uint8_t *m,
                               size_t len)
{
	if (len != HELLO_LEN || m[0] != T_HELLO)
		return "cairn peer: expected a hello";
	if (m[1] != PEER_VERSION)
		return "cairn peer: unsupported protocol version";
	uint64_t cluster = get_be(m + 2, 8), from = get_be(m + 10, 8), to = get_be(m + 18, 8);
	in->from = from;
	in->window = get_be(m + 26, 4);
	if (net->cfg.cluster_id == 0 && cluster != 0) {
		/* A member joining an existing cluster learns the cluster id
		 * from the first member that contacts it. */
		net->cfg.cluster_id = cluster;
		rpc_log("peer: joined cluster %llx (learnt from member %llx)",
		        (unsigned long long)cluster, (unsigned long long)from);
	}
	if (cluster != net->cfg.cluster_id) {
		rpc_log("peer: refused member %llx of cluster %llx (this is cluster %llx)",
		        (unsigned long long)from, (unsigned long long)cluster,
		        (unsigned long long)net->cfg.cluster_id);
		return "cairn peer: cluster ID mismatch";
	}
	if (to != net->cfg.self_id || from == 0 || from == net->cfg.self_id) {
		rpc_log("peer: refused member %llx: it meant member %llx, this is %llx",
		        (unsigned long long)from, (unsigned long long)to,
		        (unsigned long long)net->cfg.self_id);
		return "cairn peer: member ID mismatch";
	}
	if (in->snap && (net->cfg.snap_dir == NULL || net->cbs.on_snapshot == NULL ||
	                 in->window == 0 || in->window > SNAP_MAX_WINDOW))
		return "cairn peer: snapshots not accepted";
	return NULL;
}

/* A member has one message stream to us at a time: when it opens a new
 * one, it has given up on the old (it closes its connection first), but a
 * crashed host's half-open connection would linger here forever. */
static void inb_replace_older(struct inb *in)
{
	for (struct inb *o = in->net->inbs; o != NULL; o = o->next) {
		if (o != in && !o->snap && o->helloed && o->from == in->from && o->st != NULL) {
			rpc_log("peer: member %llx opened a new stream; closing its older one",
			        (unsigned long long)in->from);
			inb_fail(o, RPC_ABORTED, "cairn peer: replaced by a newer stream");
		}
	}
}

static void inb_on_message(struct rpc_stream *st, const uint8_t *m, size_t len)
{
	struct inb *in = rpc_stream_data(st);
	struct rpc_peer_net *net = in->net;
	if (in->st == NULL || net->closing)
		return;
	if (!in->helloed) {
		const char *bad = check_hello(net, in, m, len);
		if (bad != NULL) {
			net->stats.hellos_refused++;
			inb_fail(in, RPC_FAILED_PRECONDITION, bad);
			return;
		}
		in->helloed = true;
		if (!in->snap)
			inb_replace_older(in);
		uint8_t ack[HELLO_ACK_LEN] = {T_HELLO_ACK, PEER_VERSION};
		put_be(ack + 2, net->cfg.cluster_id, 8);
		put_be(ack + 10, net->cfg.self_id, 8);
		if (rpc_stream_send(st, ack, sizeof(ack)) != 0)
			inb_fail(in, RPC_UNAVAILABLE, "cairn peer: cannot answer");
		return;
	}
	if (len == 0) {
		inb_fail(in, RPC_INVALID_ARGUMENT, "cairn peer: empty message");
	} else if (in->snap) {
		inb_snap_message(in, m, len);
	} else if (m[0] == T_MSG) {
		in->got_msgs++;
		in->got_bytes += len - 1;
		inb_queue_ack(in);
		struct peer *p = find_peer(net, in->from);
		if (p != NULL) {
			p->stats.msgs_received++;
			p->stats.bytes_received += len - 1;
		} else {
			net->stats.msgs_from_unknown++;
		}
		net->cbs.on_message(net->ud, in->from, m + 1, len - 1);
	} else {
		inb_fail(in, RPC_INVALID_ARGUMENT, "cairn peer: unexpected message type");
	}
}

static void inb_open(struct rpc_stream *st, void *userdata, bool snap)
{
	struct rpc_peer_net *net = userdata;
	struct inb *in = calloc(1, sizeof(*in));
	if (in == NULL || net->closing) {
		free(in);
		rpc_stream_close(st, RPC_UNAVAILABLE, "cairn peer: not accepting");
		return;
	}
	in->net = net;
	in->st = st;
	in->snap = snap;
	in->fd = -1;
	net->pending++;
	RPC_DLIST_PUSH(net->inbs, in);
	rpc_stream_set_data(st, in);
}

static void inb_open_stream(struct rpc_stream *st, void *userdata)
{
	inb_open(st, userdata, false);
}

static void inb_open_snapshot(struct rpc_stream *st, void *userdata)
{
	inb_open(st, userdata, true);
}

static void inb_on_half_close(struct rpc_stream *st)
{
	struct inb *in = rpc_stream_data(st);
	if (in != NULL && !in->snap)
		rpc_stream_close(st, RPC_OK, NULL);
}

static void inb_on_writable(struct rpc_stream *st)
{
	struct inb *in = rpc_stream_data(st);
	if (in != NULL && in->want_writable) {
		in->want_writable = false;
		inb_send_ack(in);
	}
}

static void inb_on_close(struct rpc_stream *st, int reason)
{
	(void)reason;
	struct inb *in = rpc_stream_data(st);
	if (in == NULL)
		return; /* refused in on_open */
	in->st = NULL;
	inb_maybe_free(in);
}

static const struct rpc_stream_cbs inb_stream_cbs = {
    .on_open = inb_open_stream,
    .on_message = inb_on_message,
    .on_half_close = inb_on_half_close,
    .on_writable = inb_on_writable,
    .on_close = inb_on_close,
};

static const struct rpc_stream_cbs inb_snap_cbs = {
    .on_open = inb_open_snapshot,
    .on_message = inb_on_message,
    .on_half_close = inb_on_half_close,
    .on_writable = inb_on_writable,
    .on_close = inb_on_close,
};

/* ------------------------------------------------------------------------ */
/* The net                                                                  */
/* ------------------------------------------------------------------------ */

/* Closes connections whose peer stopped acknowledging (a dead host does not
 * always reset TCP). A snapshot's final confirmation gets DONE_TIMEOUT_MULT
 * times longer: the receiver may be fsyncing gigabytes. */
static void watchdog_cb(uv_timer_t *t)
{
	struct rpc_peer_net *net = t->data;
	uint64_t now = now_ms(), limit = net->cfg.ack_timeout_ms;
	for (struct peer *p = net->peers; p != NULL; p = p->next) {
		if (p->state == P_ACTIVE && p->s_msgs > p->a_msgs && now - p->progress_at > limit) {
			rpc_log("peer %llx at %s: no acknowledgement for %llu ms, reconnecting",
			        (unsigned long long)p->id, p->url, (unsigned long long)limit);
			peer_fail(p, CAIRN_ETIMEOUT, "no acknowledgement");
		}
	}
	for (struct snap_out *s = net->snaps; s != NULL; s = s->next) {
		bool waiting = !s->got_hello || s->off > s->acked;
		bool done_wait = !waiting && s->eof && !s->got_done;
		uint64_t lim = done_wait ? limit * DONE_TIMEOUT_MULT : limit;
		if (s->st != NULL && (waiting || done_wait) && now - s->progress_at > lim) {
			rpc_log("peer snapshot to %llx: no acknowledgement for %llu ms (%s, %llu "
			        "bytes sent, %llu acknowledged)",
			        (unsigned long long)s->to, (unsigned long long)lim,
			        !s->got_hello ? "no hello"
			        : done_wait   ? "waiting for the fsync"
			                      : "streaming",
			        (unsigned long long)s->off, (unsigned long long)s->acked);
			s->timed_out = true;
			snap_close_client(s);
		}
	}
}

static int health_cb(const char *method, const char *path, struct rpc_http_reply *reply,
                     void *userdata)
{
	(void)method;
	(void)userdata;
	if (strcmp(path, "/health") != 0) {
		reply->status = 404;
		reply->body = "not found\n";
		reply->body_len = 10;
		return 0;
	}
	reply->body = "ok\n";
	reply->body_len = 3;
	return 0;
}

int rpc_peer_net_new(uv_loop_t *loop, const struct rpc_peer_config *cfg,
                     const struct rpc_peer_cbs *cbs, void *userdata, struct rpc_peer_net **out)
{
	if (cfg == NULL || cbs == NULL || cbs->on_message == NULL || cfg->self_id == 0)
		return CAIRN_EINVAL;
	struct rpc_peer_net *net = calloc(1, sizeof(*net));
	if (net == NULL)
		return CAIRN_ENOMEM;
	net->loop = loop;
	net->cfg = *cfg;
	net->cbs = *cbs;
	net->ud = userdata;
	struct rpc_peer_config *c = &net->cfg;
#define DEFAULT(f, v)                                                                              \
	if (c->f == 0)                                                                             \
	c->f = (v)
	DEFAULT(max_queue_bytes, DEF_QUEUE_BYTES);
	DEFAULT(max_queue_msgs, DEF_QUEUE_MSGS);
	DEFAULT(max_msg_size, DEF_MAX_MSG);
	DEFAULT(backoff_min_ms, DEF_BACKOFF_MIN);
	DEFAULT(backoff_max_ms, DEF_BACKOFF_MAX);
	DEFAULT(dial_timeout_ms, DEF_DIAL_TIMEOUT);
	DEFAULT(ack_timeout_ms, DEF_ACK_TIMEOUT);
	DEFAULT(snap_chunk, DEF_SNAP_CHUNK);
#undef DEFAULT
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
	if (c->snap_chunk * SNAP_WINDOW_CHUNKS > SNAP_MAX_WINDOW)
		c->snap_chunk = SNAP_MAX_WINDOW / SNAP_WINDOW_CHUNKS;
	net->rng = cfg->seed;
	if (cfg->snap_dir != NULL && (c->snap_dir = strdup(cfg->snap_dir)) == NULL) {
		free(net);
		return CAIRN_ENOMEM;
	}
	size_t big = c->max_msg_size > c->snap_chunk ? c->max_msg_size : c->snap_chunk;
	struct rpc_server_config scfg = {
	    .max_recv_msg_size = big + 64,
	    .max_concurrent_streams = 100,
	    .conn_inbound_limit = big * 2 + 1024,
	    .max_connections = 1000,
	};
	int rv = rpc_server_new(loop, &scfg, &net->srv);
	if (rv == 0)
		rv = rpc_server_register_stream(net->srv, PATH_STREAM, &inb_stream_cbs, net);
	if (rv == 0)
		rv = rpc_server_register_stream(net->srv, PATH_SNAPSHOT, &inb_snap_cbs, net);
	if (rv != 0) {
		/* Nothing listens yet: the server is gone after one loop turn
		 * without calling anything of ours. */
		if (net->srv != NULL)
			rpc_server_close(net->srv, 0, NULL, NULL);
		free((char *)c->snap_dir);
		free(net);
		return rv;
	}
	rpc_server_set_http_handler(net->srv, health_cb, net);
	uv_check_init(loop, &net->ack_check);
	net->ack_check.data = net;
	uv_timer_init(loop, &net->watchdog);
	net->watchdog.data = net;
	uint64_t period = c->ack_timeout_ms / 4 > 0 ? c->ack_timeout_ms / 4 : 1;
	uv_timer_start(&net->watchdog, watchdog_cb, period, period);
	uv_unref((uv_handle_t *)&net->watchdog);
	net->pending = 3; /* server, ack_check, watchdog */
	*out = net;
	return 0;
}

int rpc_peer_net_listen(struct rpc_peer_net *net, const char *url, int *port_out)
{
	if (net->closing)
		return CAIRN_ECLOSED;
	return rpc_server_listen(net->srv, url, port_out);
}

int rpc_peer_net_set_peer(struct rpc_peer_net *net, uint64_t id, const char *url)
{
	if (net->closing)
		return CAIRN_ECLOSED;
	if (id == 0 || id == net->cfg.self_id || url == NULL)
		return CAIRN_EINVAL;
	struct rpc_addr addr;
	int rv = rpc_parse_url(url, &addr);
	if (rv != 0)
		return rv;
	char *u = strdup(url);
	if (u == NULL)
		return CAIRN_ENOMEM;
	struct peer *p = find_peer(net, id);
	if (p != NULL) {
		if (strcmp(p->url, url) == 0) {
			free(u);
			return 0;
		}
		free(p->url);
		p->url = u;
		if (p->st != NULL) {
			p->stats.msgs_dropped += p->s_msgs - p->a_msgs;
			p->s_msgs = p->s_bytes = p->a_msgs = p->a_bytes = 0;
			p->stats.connected = false;
			p->st = NULL; /* its on_close is now a stale one */
		}
		peer_drop_client(p);
		uv_timer_stop(&p->timer);
		p->backoff_ms = net->cfg.backoff_min_ms;
		peer_connect(p);
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		free(u);
		return CAIRN_ENOMEM;
	}
	p->net = net;
	p->id = id;
	p->url = u;
	p->backoff_ms = net->cfg.backoff_min_ms;
	uv_timer_init(net->loop, &p->timer);
	p->timer.data = p;
	p->refs = 1; /* the timer */
	net->pending++;
	RPC_DLIST_PUSH(net->peers, p);
	peer_connect(p);
	return 0;
}

int rpc_peer_net_remove_peer(struct rpc_peer_net *net, uint64_t id)
{
	struct peer *p = find_peer(net, id);
	if (p == NULL)
		return CAIRN_ENOTFOUND;
	peer_remove(p);
	return 0;
}

int rpc_peer_net_send(struct rpc_peer_net *net, uint64_t to, const void *msg, size_t len)
{
	if (net->closing)
		return CAIRN_ECLOSED;
	struct peer *p = find_peer(net, to);
	if (p == NULL)
		return CAIRN_ENOTFOUND;
	if (len > net->cfg.max_msg_size)
		return CAIRN_ETOOBIG;
	size_t qb = p->q_bytes + (size_t)(p->s_bytes - p->a_bytes);
	size_t qm = p->q_msgs + (size_t)(p->s_msgs - p->a_msgs);
	if (qm > 0 && (qm + 1 > net->cfg.max_queue_msgs || qb + len > net->cfg.max_queue_bytes)) {
		p->stats.msgs_dropped++;
		return CAIRN_EAGAIN;
	}
	struct qbuf *q = malloc(sizeof(*q) + 1 + len);
	if (q == NULL)
		return CAIRN_ENOMEM;
	q->next = NULL;
	q->len = 1 + len;
	q->off = 0;
	q->data[0] = T_MSG;
	if (len > 0)
		memcpy(q->data + 1, msg, len);
	if (p->qtail != NULL)
		p->qtail->next = q;
	else
		p->qhead = q;
	p->qtail = q;
	p->q_msgs++;
	p->q_bytes += len;
	peer_pump(p);
	return 0;
}

int rpc_peer_net_send_snapshot(struct rpc_peer_net *net, uint64_t to, const void *meta,
                               size_t meta_len, int fd, rpc_peer_snap_done_cb done_cb, void *arg)
{
	if (net->closing)
		return CAIRN_ECLOSED;
	struct stat sb;
	if (done_cb == NULL || fd < 0 || fstat(fd, &sb) != 0)
		return CAIRN_EINVAL;
	if (meta_len > net->cfg.max_msg_size)
		return CAIRN_ETOOBIG;
	struct peer *p = find_peer(net, to);
	if (p == NULL)
		return CAIRN_ENOTFOUND;
	struct snap_out *s = calloc(1, sizeof(*s));
	uint8_t *m = malloc(1 + meta_len);
	if (s == NULL || m == NULL || (s->buf = malloc(1 + net->cfg.snap_chunk)) == NULL) {
		free(m);
		free(s);
		return CAIRN_ENOMEM;
	}
	s->net = net;
	s->to = to;
	s->fd = fd;
	s->done_cb = done_cb;
	s->arg = arg;
	s->progress_at = now_ms();
	uint8_t hello[HELLO_LEN];
	encode_hello(net, to, (uint32_t)snap_window(net), hello);
	m[0] = T_META;
	if (meta_len > 0)
		memcpy(m + 1, meta, meta_len);
	int rv = rpc_client_new(net->loop, p->url, &client_cfg, &s->cli);
	if (rv == 0) {
		rv = rpc_client_stream_open(s->cli, PATH_SNAPSHOT, &snap_cbs, s, &s->st);
		if (rv == 0)
			rv = rpc_client_stream_send(s->st, hello, sizeof(hello));
		if (rv == 0)
			rv = rpc_client_stream_send(s->st, m, 1 + meta_len);
	}
	free(m);
	net->pending++;
	if (rv != 0) {
		/* done_cb must not run: finish quietly once the client is gone. */
		s->finished = true;
		if (s->cli != NULL)
			snap_close_client(s);
		else
			s->cli_freed = true;
		snap_maybe_free(s);
		return rv;
	}
	RPC_DLIST_PUSH(net->snaps, s);
	return 0;
}

int rpc_peer_net_peer_status(const struct rpc_peer_net *net, uint64_t id,
                             struct rpc_peer_status *st)
{
	const struct peer *p = find_peer(net, id);
	if (p == NULL)
		return CAIRN_ENOTFOUND;
	*st = p->stats;
	st->queued_bytes = p->q_bytes + (size_t)(p->s_bytes - p->a_bytes);
	st->queued_msgs = p->q_msgs + (size_t)(p->s_msgs - p->a_msgs);
	return 0;
}

void rpc_peer_net_get_stats(const struct rpc_peer_net *net, struct rpc_peer_net_stats *out)
{
	*out = net->stats;
}

static void server_closed(void *arg)
{
	net_unpend(arg);
}

int rpc_peer_net_close(struct rpc_peer_net *net, void (*cb)(void *arg), void *arg)
{
	if (net->closing)
		return CAIRN_EBUSY;
	net->closing = true;
	net->close_cb = cb;
	net->close_arg = arg;
	while (net->peers != NULL)
		peer_remove(net->peers);
	for (struct snap_out *s = net->snaps; s != NULL; s = s->next) {
		s->canceled = true;
		snap_close_client(s);
	}
	rpc_server_close(net->srv, 0, server_closed, net);
	uv_close((uv_handle_t *)&net->ack_check, handle_unpend);
	uv_close((uv_handle_t *)&net->watchdog, handle_unpend);
	return 0;
}

uint64_t rpc_peer_net_cluster_id(const struct rpc_peer_net *net)
{
	return net->cfg.cluster_id;
}
