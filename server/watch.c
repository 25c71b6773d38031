/*
 * watch.c — the watch hub: etcd's Watch service fed from the store history.
 * The design is in watch.h; this file keeps the invariants that make it work.
 *
 * POSITIONS, NOT QUEUES
 * Every watcher has a position (pos_rev, pos_sub): the first history event
 * it has not been sent. The hub has a fed revision `rev`: every revision up
 * to it has been offered to the live feed. Nothing else is kept per watcher,
 * so a stream that stops reading costs nothing in the hub.
 *
 * INVARIANTS
 *  1. A watcher is synced iff pos_rev > hub->rev (then pos_sub == 0): the
 *     live feed owes it every matching event above hub->rev and no more.
 *     A watcher with pos_rev <= hub->rev is unsynced: it is fed by catch-up
 *     reads of its key range from the store history (pump_stream).
 *  2. Events are handed to rpc only in position order, each exactly once:
 *     on success the position moves past what was queued; when rpc refuses
 *     (CAIRN_EAGAIN) the position stays at the first event not queued, even
 *     inside a revision (a fragmented response cut short is completed by the
 *     next response, which the client merges because the cut one carried
 *     fragment=true).
 *  3. A stream is `blocked` from a refused send until on_writable. While it is
 *     blocked or holds queued control messages, no event is sent on it: its
 *     watchers simply fall behind hub->rev and become unsynced (1).
 *  4. Control responses (created, canceled, progress) are never dropped: if
 *     rpc refuses one it waits in the stream's small ctrl queue (bounded by
 *     CTRL_MAX_BYTES; a client that overflows it by sending requests without
 *     reading is closed with RESOURCE_EXHAUSTED). The ctrl queue drains before
 *     any event, so "created" always precedes a watcher's events.
 *  5. A response never splits one revision of one watcher, except by the
 *     fragment protocol: history reads are extended to whole revisions
 *     (read_batch).
 *  6. A stream that is not `behind` has only synced (or compacted)
 *     watchers. Whatever can leave a watcher unsynced (a start in the past,
 *     a stream skipped or refused by the live feed, hub->rev jumping ahead)
 *     sets it; pump_stream clears it after a pass finds every watcher
 *     synced. So the periodic pump does not walk 100,000 synced watchers
 *     every tick.
 *
 * READS
 * The live feed reads each new range of revisions once for all watchers
 * (all keys), sorts that batch by key and finds each watcher's events by
 * binary search. Catch-up reads one watcher's key range from its position,
 * once for the consecutive watchers of a stream at that position on that
 * range (catch_up_pass). Every read is bounded: whole revisions of at most
 * about `chunk` events (adaptive, see FIRST_CHUNK_EVENTS) and, for
 * catch-up, a window of revisions (CATCHUP_SCAN_FACTOR), because the history
 * scan is linear.
 *
 * FAN-OUT
 * A live batch usually goes to many watchers with the same events (100,000
 * watchers of one prefix: every response differs from the next only in
 * watch_id). So feed_live encodes each event once per batch as the bytes of
 * a WatchResponse.events field (with and without prev_kv, on first use), and
 * the header once per batch; a response is then its gRPC prefix, the header
 * bytes, the watch_id and a copy of its events' bytes — the same bytes
 * protobuf-c would pack, field order included. A stream's responses are
 * built in one buffer and queued with one rpc_stream_send_framed (at most
 * LIVE_STREAM_BYTES at a time): one allocation per stream per batch instead
 * of one per watcher. Catch-up builds its responses the same way.
 * Positions move only when rpc accepted the buffer (invariant 2); when it
 * refuses, the buffer's watchers keep their positions and turn unsynced
 * (3) exactly as if each response had been refused. A response that must
 * be fragmented goes the per-watcher way (send_events).
 *
 * PULL
 * Building a whole stream's share of a large fan-out at once (1,000
 * watchers x 330 bytes per stream, 33 MB for 100,000 watchers) delays the
 * first byte on the wire until every stream's buffer is built, and touches
 * that much fresh memory per put. So feed_live stops a stream at PULL_BYTES
 * (fan_stop), as if rpc had refused it but without blocking it: the rest of
 * its watchers are left behind with the stream's cursor on the first of
 * them, and rpc_stream_want_pull asks rpc to call ws_on_pull when HTTP/2 has
 * drained the stream's queue. Each pull is a catch-up pass from the cursor
 * that queues PULL_BYTES more and asks again while the stream is behind. So
 * what the hub has built stays a few frames ahead of each socket, in buffers
 * malloc recycles hot. The catch-up path serves pulls, so invariants 1-6
 * need nothing new; the cursor is only where a pass starts (a pass that did
 * not start at the head proves nothing about the watchers before it unless
 * they were synced when the cursor was set at the current revision,
 * clean_rev). A pull that queued nothing is not repeated: the tick's pump
 * goes on with such a stream, as with any stream left behind.
 *
 * Watchers cancelled by compaction stay in their stream (inert) until the
 * client cancels them, as etcd keeps their ids taken.
 *
 * A client's half-close changes nothing (no on_half_close): etcd's recvLoop
 * returns nil on EOF and its Watch RPC goes on sending until the client
 * cancels or its deadline passes, the connection goes, or the server stops.
 * Each of those reaches us as on_close, or as srv_watch_hub_free.
 */
#include "server/watch.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"

#define DEFAULT_CHUNK_EVENTS   1000
#define DEFAULT_MAX_RESP_BYTES ((size_t)(1536 * 1024))
#define CTRL_MAX_BYTES         ((size_t)(1024 * 1024))
/* Catch-up chunks read per stream per pump: bounds one loop turn's work. */
#define PUMP_BUDGET_CHUNKS 64
/* A catch-up read scans at most this many times catchup_chunk_events
 * revisions: the history is scanned record by record, so a watcher on a
 * rarely written key must not scan the whole history in one step. */
#define CATCHUP_SCAN_FACTOR 8
/* Reads start at this many events and adapt (halve above, double below
 * half of max_response_bytes), so a history of large values is not read a
 * full chunk at a time: the hub's transient memory stays near
 * max_response_bytes whatever the value sizes. */
#define FIRST_CHUNK_EVENTS 16
#define MAX_CHUNK_EVENTS   ((size_t)1 << 20)
/* The live fan-out builds one stream's responses in one buffer and hands
 * them to rpc at once when it reaches this size (or the stream's watchers
 * are done): a stream queues at most rpc's high-water mark plus this plus
 * one response. */
#define LIVE_STREAM_BYTES ((size_t)(1024 * 1024))
/* A large fan-out is generated as the connection drains (PULL below): the
 * live feed builds at most this much per stream (plus one response), and
 * each rpc pull as much again. */
#define PULL_BYTES ((size_t)(32 * 1024))
/* Buffers above these sizes are freed after a live feed, not kept. */
#define LIVE_KEEP_OUT_BYTES ((size_t)(2 * LIVE_STREAM_BYTES + 64 * 1024))
#define LIVE_KEEP_ENC_BYTES ((size_t)(4 * 1024 * 1024))
/* etcd's clientv3.InvalidWatchID. */
#define INVALID_WATCH_ID (-1)

/* etcd's error strings (mvcc/watcher.go); the per-stream limit is cairn's. */
#define ERR_EMPTY_RANGE  "mvcc: watcher range is empty"
#define ERR_DUPLICATE_ID "mvcc: duplicate watch ID provided on the WatchStream"
#define ERR_TOO_MANY     "etcdserver: too many watchers on the stream"

/* ------------------------------------------------------------------------ */
/* Types                                                                      */

enum range_kind { RANGE_KEY, RANGE_FROM, RANGE_SPAN };

struct wstream;
struct watcher;

/* A response in the fan-out buffer: its watcher moves to (rev, sub) when
 * rpc accepts the buffer. */
struct pend {
	struct watcher *w;
	int64_t rev, sub;
};

/* Packed small (64 bytes before its keys, one cache line): the fan-out
 * and every pull walk the watchers, 100,000 of them for one prefix, and
 * their size is most of what those watchers cost in memory. */
struct watcher {
	struct watcher *next; /* in the stream, creation order */
	struct wstream *ws;
	int64_t id;
	int64_t pos_rev; /* first event not yet sent (invariant 1) */
	int64_t pos_sub;
	uint32_t key_len; /* key: keys[0..key_len), never empty (etcd turns "" into "\0") */
	uint32_t end_len; /* range end, RANGE_SPAN only: keys[key_len..+end_len) */
	uint32_t chunk;   /* events per catch-up read (adaptive) */
	uint8_t kind;     /* enum range_kind */
	bool no_put, no_delete, prev_kv, progress_notify, fragment;
	bool idle;      /* no events since the last progress tick (etcd's progress[id]) */
	bool compacted; /* cancelled by compaction; inert until the client cancels */
	/* key and end, in the watcher's own allocation: the fan-out reads
	 * every watcher's range, and one cache line fewer per watcher shows
	 * with 100,000 of them */
	uint8_t keys[];
};

_Static_assert(offsetof(struct watcher, keys) <= 64, "struct watcher outgrew a cache line");

static const uint8_t *wkey(const struct watcher *w)
{
	return w->keys;
}

static const uint8_t *wend(const struct watcher *w)
{
	return w->keys + w->key_len;
}

struct ctrl_msg {
	struct ctrl_msg *next;
	size_t len;
	uint8_t data[];
};

struct wstream {
	struct wstream *prev, *next; /* in the hub */
	struct srv_watch_hub *hub;
	struct rpc_stream *rs; /* borrowed; valid until on_close */
	struct watcher *head, *tail;
	struct watcher *cursor; /* where the next catch-up pass starts; NULL = head */
	int64_t clean_rev;      /* every watcher before cursor is synced at this rev */
	uint32_t n_watchers;
	int64_t next_id;
	bool blocked;          /* invariant 3 */
	bool closing;          /* we closed it: send nothing more */
	bool progress_pending; /* a WatchProgressRequest waits for sync */
	bool behind;           /* invariant 6 */
	struct ctrl_msg *ctrl_head, *ctrl_tail;
	size_t ctrl_bytes;
};

struct srv_watch_hub {
	struct srv_watch_config cfg;
	struct wstream *streams;
	int64_t rev; /* fed revision (invariant 1) */
	uint64_t n_streams, n_watchers;
	uint64_t n_prev_kv; /* watchers asking for prev_kv: the live read asks too */
	size_t live_chunk;  /* events per live read (adaptive) */
	bool progress_clock_set;
	uint64_t last_progress_ms;
	/* Scratch of the watcher being served: indexes into the batch. */
	size_t *sel;
	size_t sel_cap;
	Mvccpb__Event **evp;
	/* Live fan-out (FAN-OUT below). */
	uint8_t hdr_field[64]; /* WatchResponse.header, tag and length included */
	size_t hdr_field_len;
	uint8_t *enc; /* events of the batch encoded as WatchResponse.events fields */
	size_t enc_len, enc_cap;
	size_t *enc_off;  /* [2 * event + with_prev_kv] into enc */
	uint32_t *enc_sz; /* same index; 0 = not encoded yet */
	size_t enc_slots;
	uint8_t *out; /* framed responses of one stream, not yet handed to rpc */
	size_t out_len, out_cap;
	/* out is handed to rpc when it would pass fan_limit; with fan_stop the
	 * stream then takes no more this time (the live feed, a pull) */
	size_t fan_limit;
	bool fan_stop;
	struct pend *pend; /* their watchers and positions after them, in order */
	size_t n_pend, pend_cap;
};

/* Events of whole revisions read from the history, converted once. */
struct batch {
	struct store_history_resp parts[2];
	int n_parts;
	size_t n;
	size_t bytes; /* keys and values held */
	const struct store_event **ev;
	size_t *by_key;         /* live batches: event indexes in key order */
	Mvccpb__Event *pb;      /* without prev_kv */
	Mvccpb__Event *pb_prev; /* with prev_kv where the store had one */
	Mvccpb__KeyValue *kv, *prev;
	bool more; /* resume at (next_rev, next_sub) */
	int64_t next_rev, next_sub;
	int64_t revision, compact_revision;
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c != 0)
		return c;
	return al < bl ? -1 : al > bl;
}

static bool watcher_matches_key(const struct watcher *w, const uint8_t *k, size_t kl)
{
	int c = bytes_cmp(k, kl, wkey(w), w->key_len);
	switch (w->kind) {
	case RANGE_KEY:
		return c == 0;
	case RANGE_FROM:
		return c >= 0;
	case RANGE_SPAN:
		return c >= 0 && bytes_cmp(k, kl, wend(w), w->end_len) < 0;
	}
	return false;
}

static bool watcher_synced(const struct watcher *w)
{
	return w->pos_rev > w->ws->hub->rev;
}

static bool pos_before(int64_t rev, int64_t sub, int64_t prev, int64_t psub)
{
	return rev < prev || (rev == prev && sub < psub);
}

static void fill_header(const struct srv_watch_hub *hub, int64_t revision,
                        Etcdserverpb__ResponseHeader *pb)
{
	struct srv_header h = {0};
	if (hub->cfg.header)
		hub->cfg.header(hub->cfg.header_ctx, &h);
	srv_header_to_pb(&h, revision, pb);
}

static int64_t store_current_rev(struct srv_watch_hub *hub)
{
	struct store_rtxn *r;
	if (store_rtxn_begin(hub->cfg.store, &r) != 0)
		return hub->rev;
	int64_t rev = store_rtxn_revision(r);
	store_rtxn_end(r);
	return rev;
}

/* ------------------------------------------------------------------------ */
/* Reading history in whole revisions                                         */

static void batch_free(struct batch *b)
{
	for (int i = 0; i < b->n_parts; i++)
		store_history_resp_free(&b->parts[i]);
	free(b->ev);
	free(b->by_key);
	b->by_key = NULL;
	free(b->pb);
	free(b->pb_prev);
	free(b->kv);
	free(b->prev);
	/* keeps revision and compact_revision: a caller reports them */
	b->n_parts = 0;
	b->n = 0;
	b->ev = NULL;
	b->pb = b->pb_prev = NULL;
	b->kv = b->prev = NULL;
}

/* Reads up to about `limit` events of req's range from (from_rev, from_sub)
 * to to_rev, extended to the end of the last revision touched (invariant
 * 5), and converts them. */
static int read_batch(struct store *store, struct store_history_req *req, struct batch *b)
{
	memset(b, 0, sizeof(*b));
	struct store_rtxn *r;
	int rc = store_rtxn_begin(store, &r);
	if (rc != 0)
		return rc;
	b->revision = store_rtxn_revision(r);
	b->compact_revision = store_rtxn_compact_revision(r);
	int64_t to = req->to_rev ? req->to_rev : b->revision;
	rc = store_history(r, req, &b->parts[0]);
	if (rc != 0)
		goto out;
	b->n_parts = 1;
	b->more = b->parts[0].more;
	b->next_rev = b->parts[0].next_rev;
	b->next_sub = b->parts[0].next_sub;
	if (b->more && b->next_sub != 0) {
		struct store_history_req rest = *req;
		rest.from_rev = b->next_rev;
		rest.from_sub = b->next_sub;
		rest.to_rev = b->next_rev;
		rest.limit = 0;
		rc = store_history(r, &rest, &b->parts[1]);
		if (rc != 0)
			goto out;
		b->n_parts = 2;
		b->next_rev++;
		b->next_sub = 0;
		b->more = b->next_rev <= to;
	}
	if (!b->more) {
		b->next_rev = to + 1;
		b->next_sub = 0;
	}
	size_t n = b->parts[0].n_events + (b->n_parts > 1 ? b->parts[1].n_events : 0);
	if (n > 0) {
		b->ev = malloc(n * sizeof(*b->ev));
		b->pb = malloc(n * sizeof(*b->pb));
		b->kv = malloc(n * sizeof(*b->kv));
		if (req->prev_kv) {
			b->pb_prev = malloc(n * sizeof(*b->pb_prev));
			b->prev = malloc(n * sizeof(*b->prev));
		}
		if (!b->ev || !b->pb || !b->kv || (req->prev_kv && (!b->pb_prev || !b->prev))) {
			rc = CAIRN_ENOMEM;
			goto out;
		}
	}
	for (int p = 0; p < b->n_parts; p++) {
		for (size_t i = 0; i < b->parts[p].n_events; i++) {
			const struct store_event *e = &b->parts[p].events[i];
			size_t k = b->n++;
			b->bytes += e->kv.key_len + e->kv.value_len;
			if (e->has_prev)
				b->bytes += e->prev_kv.key_len + e->prev_kv.value_len;
			b->ev[k] = e;
			srv_kv_to_pb(&e->kv, &b->kv[k]);
			mvccpb__event__init(&b->pb[k]);
			b->pb[k].type = e->type == STORE_EVENT_DELETE
			                    ? MVCCPB__EVENT__EVENT_TYPE__DELETE
			                    : MVCCPB__EVENT__EVENT_TYPE__PUT;
			b->pb[k].kv = &b->kv[k];
			if (b->pb_prev) {
				b->pb_prev[k] = b->pb[k];
				if (e->has_prev) {
					srv_kv_to_pb(&e->prev_kv, &b->prev[k]);
					b->pb_prev[k].prev_kv = &b->prev[k];
				}
			}
		}
	}
out:
	store_rtxn_end(r); /* the events live in the responses' own memory */
	if (rc != 0)
		batch_free(b);
	return rc;
}

static size_t adapt_chunk(const struct srv_watch_hub *hub, size_t chunk, const struct batch *b)
{
	size_t target = hub->cfg.max_response_bytes;
	if (b->bytes > target && chunk > 1)
		return chunk / 2;
	if (b->bytes < target / 2 && b->n == chunk && chunk < hub->cfg.catchup_chunk_events)
		return chunk * 2 < hub->cfg.catchup_chunk_events ? chunk * 2
		                                                 : hub->cfg.catchup_chunk_events;
	return chunk;
}

static size_t first_chunk(const struct srv_watch_hub *hub)
{
	return hub->cfg.catchup_chunk_events < FIRST_CHUNK_EVENTS ? hub->cfg.catchup_chunk_events
	                                                          : FIRST_CHUNK_EVENTS;
}

static void watcher_history_req(const struct watcher *w, struct store_history_req *req)
{
	memset(req, 0, sizeof(*req));
	req->key = wkey(w);
	req->key_len = w->key_len;
	if (w->kind == RANGE_FROM) {
		req->range_end = (const uint8_t *)"";
		req->range_end_len = 1; /* "\0": every key >= key */
	} else if (w->kind == RANGE_SPAN) {
		req->range_end = wend(w);
		req->range_end_len = w->end_len;
	}
	req->from_rev = w->pos_rev < 1 ? 1 : w->pos_rev;
	req->from_sub = w->pos_sub;
	req->prev_kv = w->prev_kv;
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                    */

static void stream_fail(struct wstream *ws, int grpc_status, const char *msg)
{
	if (ws->closing)
		return;
	ws->closing = true;
	rpc_stream_close(ws->rs, grpc_status, msg);
}

/* Sends an event-path message: refused (CAIRN_EAGAIN) while the stream is
 * blocked or has control messages waiting (invariants 3, 4). */
static int send_event_msg(struct wstream *ws, const Etcdserverpb__WatchResponse *r)
{
	if (ws->closing)
		return CAIRN_ECLOSED;
	if (ws->blocked || ws->ctrl_head)
		return CAIRN_EAGAIN;
	int rc = rpc_stream_send_msg(ws->rs, &r->base);
	if (rc == CAIRN_EAGAIN)
		ws->blocked = true;
	return rc;
}

static void send_ctrl_msg(struct wstream *ws, const Etcdserverpb__WatchResponse *r)
{
	if (ws->closing)
		return;
	if (!ws->blocked && !ws->ctrl_head) {
		int rc = rpc_stream_send_msg(ws->rs, &r->base);
		if (rc != CAIRN_EAGAIN)
			return; /* sent, or the stream is going away */
		ws->blocked = true;
	}
	size_t len = protobuf_c_message_get_packed_size(&r->base);
	if (ws->ctrl_bytes + len > CTRL_MAX_BYTES) {
		stream_fail(ws, RPC_RESOURCE_EXHAUSTED,
		            "etcdserver: too many pending watch responses");
		return;
	}
	struct ctrl_msg *m = malloc(sizeof(*m) + len);
	if (!m) {
		stream_fail(ws, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
		return;
	}
	m->next = NULL;
	m->len = protobuf_c_message_pack(&r->base, m->data);
	if (ws->ctrl_tail)
		ws->ctrl_tail->next = m;
	else
		ws->ctrl_head = m;
	ws->ctrl_tail = m;
	ws->ctrl_bytes += len;
}

/* Returns false while the stream still holds control messages. */
static bool flush_ctrl(struct wstream *ws)
{
	while (ws->ctrl_head && !ws->closing) {
		struct ctrl_msg *m = ws->ctrl_head;
		int rc = rpc_stream_send(ws->rs, m->data, m->len);
		if (rc == CAIRN_EAGAIN) {
			ws->blocked = true;
			return false;
		}
		ws->ctrl_head = m->next;
		if (!ws->ctrl_head)
			ws->ctrl_tail = NULL;
		ws->ctrl_bytes -= m->len;
		free(m);
	}
	return true;
}

static void send_simple(struct wstream *ws, int64_t watch_id, int64_t revision, bool created,
                        bool canceled, const char *reason)
{
	Etcdserverpb__ResponseHeader h;
	fill_header(ws->hub, revision, &h);
	Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	r.header = &h;
	r.watch_id = watch_id;
	r.created = created;
	r.canceled = canceled;
	if (reason)
		r.cancel_reason = (char *)reason;
	send_ctrl_msg(ws, &r);
}

static size_t varint_size(size_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Sends evs[0..n) of w in one response, or in fragments as etcd's
 * sendFragments when the watcher asked and the response is too large.
 * *sent = events queued (all of them on success). */
static int send_events(struct watcher *w, Mvccpb__Event **evs, size_t n, int64_t revision,
                       size_t *sent)
{
	struct srv_watch_hub *hub = w->ws->hub;
	Etcdserverpb__ResponseHeader h;
	fill_header(hub, revision, &h);
	Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	r.header = &h;
	r.watch_id = w->id;
	r.events = evs;
	r.n_events = n;
	*sent = 0;
	size_t max = hub->cfg.max_response_bytes;
	if (!w->fragment || n < 2 || protobuf_c_message_get_packed_size(&r.base) < max) {
		int rc = send_event_msg(w->ws, &r);
		if (rc == 0)
			*sent = n;
		return rc;
	}
	r.fragment = true;
	r.n_events = 0;
	size_t base = protobuf_c_message_get_packed_size(&r.base);
	size_t idx = 0;
	while (idx < n) {
		size_t cnt = 0, size = base;
		while (idx + cnt < n) {
			size_t es = protobuf_c_message_get_packed_size(&evs[idx + cnt]->base);
			es += 1 + varint_size(es); /* field 11 tag + length */
			if (cnt > 0 && size + es >= max)
				break;
			size += es;
			cnt++;
		}
		r.events = evs + idx;
		r.n_events = cnt;
		r.fragment = idx + cnt < n;
		int rc = send_event_msg(w->ws, &r);
		if (rc != 0)
			return rc;
		idx += cnt;
		*sent = idx;
	}
	return 0;
}

static int cmp_key_order(const void *x, const void *y, void *arg)
{
	const struct batch *b = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	const struct store_kv *a = &b->ev[i]->kv, *c = &b->ev[j]->kv;
	int r = bytes_cmp(a->key, a->key_len, c->key, c->key_len);
	return r ? r : (i > j) - (i < j);
}

static int cmp_index(const void *x, const void *y)
{
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	return (i > j) - (i < j);
}

/* Sorts the live batch by key once, so each watcher finds its events by
 * binary search instead of testing every event (watchers x events). Without
 * the index (no memory) select_events tests every event. */
static void batch_index_keys(struct batch *b)
{
	if (b->n < 2 || !(b->by_key = malloc(b->n * sizeof(*b->by_key))))
		return;
	for (size_t i = 0; i < b->n; i++)
		b->by_key[i] = i;
	qsort_r(b->by_key, b->n, sizeof(*b->by_key), cmp_key_order, b);
}

/* First position in by_key whose key is >= k (> k when `after`). */
static size_t key_bound(const struct batch *b, const uint8_t *k, size_t kl, bool after)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct store_kv *kv = &b->ev[b->by_key[mid]]->kv;
		int c = bytes_cmp(kv->key, kv->key_len, k, kl);
		if (c < 0 || (after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool event_wanted(const struct watcher *w, const struct store_event *e)
{
	if (pos_before(e->kv.mod_revision, e->sub_revision, w->pos_rev, w->pos_sub))
		return false;
	return e->type == STORE_EVENT_PUT ? !w->no_put : !w->no_delete;
}

/* Selects w's events of the batch at or after its position (filters
 * applied; the range too when `check_range`) into hub->sel / hub->evp, in
 * batch (revision) order. */
static size_t select_events(struct watcher *w, const struct batch *b, bool check_range)
{
	struct srv_watch_hub *hub = w->ws->hub;
	size_t n = 0;
	if (check_range && b->by_key) {
		size_t lo = key_bound(b, wkey(w), w->key_len, false);
		size_t hi = w->kind == RANGE_KEY    ? key_bound(b, wkey(w), w->key_len, true)
		            : w->kind == RANGE_FROM ? b->n
		                                    : key_bound(b, wend(w), w->end_len, false);
		for (size_t j = lo; j < hi; j++)
			if (event_wanted(w, b->ev[b->by_key[j]]))
				hub->sel[n++] = b->by_key[j];
		qsort(hub->sel, n, sizeof(*hub->sel), cmp_index);
	} else {
		for (size_t i = 0; i < b->n; i++)
			if (event_wanted(w, b->ev[i]) &&
			    (!check_range ||
			     watcher_matches_key(w, b->ev[i]->kv.key, b->ev[i]->kv.key_len)))
				hub->sel[n++] = i;
	}
	for (size_t k = 0; k < n; k++)
		hub->evp[k] =
		    w->prev_kv && b->pb_prev ? &b->pb_prev[hub->sel[k]] : &b->pb[hub->sel[k]];
	return n;
}

static int ensure_scratch(struct srv_watch_hub *hub, size_t n)
{
	if (n <= hub->sel_cap)
		return 0;
	size_t *sel = realloc(hub->sel, n * sizeof(*sel));
	if (!sel)
		return CAIRN_ENOMEM;
	hub->sel = sel;
	Mvccpb__Event **evp = realloc(hub->evp, n * sizeof(*evp));
	if (!evp)
		return CAIRN_ENOMEM;
	hub->evp = evp;
	hub->sel_cap = n;
	return 0;
}

/* Hands w its events of the batch and moves its position: to `done_rev`+1
 * when all were queued, else to the first event rpc refused (invariant 2).
 * Returns 0 or the send error. */
static int feed_watcher(struct watcher *w, const struct batch *b, bool check_range,
                        int64_t header_rev, int64_t done_rev, int64_t done_sub)
{
	struct srv_watch_hub *hub = w->ws->hub;
	size_t n = select_events(w, b, check_range);
	if (n > 0) {
		size_t sent;
		int rc = send_events(w, hub->evp, n, header_rev, &sent);
		if (sent > 0)
			w->idle = false;
		if (rc != 0) {
			if (sent > 0) {
				const struct store_event *e = b->ev[hub->sel[sent]];
				w->pos_rev = e->kv.mod_revision;
				w->pos_sub = e->sub_revision;
			}
			return rc;
		}
	}
	if (pos_before(w->pos_rev, w->pos_sub, done_rev, done_sub)) {
		w->pos_rev = done_rev;
		w->pos_sub = done_sub;
	}
	return 0;
}

/* Encodes the header of the next responses (at `revision`). */
static int fan_header(struct srv_watch_hub *hub, int64_t revision)
{
	Etcdserverpb__ResponseHeader h;
	fill_header(hub, revision, &h);
	size_t hl = protobuf_c_message_get_packed_size(&h.base);
	if (hl + 2 > sizeof(hub->hdr_field))
		return CAIRN_ETOOBIG; /* cannot happen: four varints */
	hub->hdr_field[0] = 0x0a;     /* field 1, length-delimited */
	hub->hdr_field[1] = (uint8_t)hl;
	hub->hdr_field_len = 2 + protobuf_c_message_pack(&h.base, hub->hdr_field + 2);
	return 0;
}

/* Empties the event cache for a batch of b->n events. */
static int fan_events_reset(struct srv_watch_hub *hub, const struct batch *b)
{
	if (2 * b->n > hub->enc_slots) {
		size_t *off = realloc(hub->enc_off, 2 * b->n * sizeof(*off));
		if (!off)
			return CAIRN_ENOMEM;
		hub->enc_off = off;
		uint32_t *sz = realloc(hub->enc_sz, 2 * b->n * sizeof(*sz));
		if (!sz)
			return CAIRN_ENOMEM;
		hub->enc_sz = sz;
		hub->enc_slots = 2 * b->n;
	}
	if (b->n)
		memset(hub->enc_sz, 0, 2 * b->n * sizeof(*hub->enc_sz));
	hub->enc_len = 0;
	return 0;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	uint8_t *nb = realloc(*buf, c);
	if (!nb)
		return CAIRN_ENOMEM;
	*buf = nb;
	*cap = c;
	return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* The slot of event i (with prev_kv or not), encoded on first use. */
static int fan_event(struct srv_watch_hub *hub, const struct batch *b, size_t i, bool prev,
                     size_t *slot)
{
	*slot = 2 * i + (prev ? 1 : 0);
	if (hub->enc_sz[*slot])
		return 0;
	const Mvccpb__Event *e = prev ? &b->pb_prev[i] : &b->pb[i];
	size_t es = protobuf_c_message_get_packed_size(&e->base);
	size_t need = 1 + varint_size(es) + es;
	if (need > UINT32_MAX)
		return CAIRN_ETOOBIG;
	int rc = grow(&hub->enc, &hub->enc_cap, hub->enc_len + need);
	if (rc != 0)
		return rc;
	uint8_t *p = hub->enc + hub->enc_len;
	p[0] = 0x5a; /* field 11, length-delimited */
	size_t k = 1 + put_varint(p + 1, es);
	protobuf_c_message_pack(&e->base, p + k);
	hub->enc_off[*slot] = hub->enc_len;
	hub->enc_sz[*slot] = (uint32_t)need;
	hub->enc_len += need;
	return 0;
}

/* Hands the stream's built responses to rpc (as send_event_msg would each
 * one); on success their watchers move to the position after their
 * response. False when nothing could be queued. */
static bool fan_flush(struct wstream *ws)
{
	struct srv_watch_hub *hub = ws->hub;
	if (hub->n_pend == 0)
		return true;
	int rc = CAIRN_EAGAIN;
	if (ws->closing)
		rc = CAIRN_ECLOSED;
	else if (!ws->blocked && !ws->ctrl_head)
		rc = rpc_stream_send_framed(ws->rs, hub->out, hub->out_len, hub->n_pend);
	if (rc == CAIRN_EAGAIN)
		ws->blocked = true;
	if (rc == 0) {
		for (size_t k = 0; k < hub->n_pend; k++) {
			struct watcher *w = hub->pend[k].w;
			w->idle = false;
			if (pos_before(w->pos_rev, w->pos_sub, hub->pend[k].rev,
			               hub->pend[k].sub)) {
				w->pos_rev = hub->pend[k].rev;
				w->pos_sub = hub->pend[k].sub;
			}
		}
	}
	hub->out_len = 0;
	hub->n_pend = 0;
	return rc == 0;
}

/* feed_watcher through the stream's buffer: adds w's response (header
 * from fan_header, which must be at header_rev) and moves w to `done` when
 * the buffer is accepted; a response that must be fragmented is sent the
 * per-watcher way. Non-zero when the stream cannot take more. */
static int fan_watcher(struct watcher *w, const struct batch *b, bool check_range,
                       int64_t header_rev, int64_t done_rev, int64_t done_sub)
{
	struct srv_watch_hub *hub = w->ws->hub;
	size_t n = select_events(w, b, check_range);
	if (n == 0) {
		if (pos_before(w->pos_rev, w->pos_sub, done_rev, done_sub)) {
			w->pos_rev = done_rev;
			w->pos_sub = done_sub;
		}
		return 0;
	}
	bool prev = w->prev_kv && b->pb_prev;
	size_t ev_bytes = 0;
	for (size_t k = 0; k < n; k++) {
		size_t slot;
		int rc = fan_event(hub, b, hub->sel[k], prev, &slot);
		if (rc != 0)
			return rc;
		hub->sel[k] = slot;
		ev_bytes += hub->enc_sz[slot];
	}
	size_t id_len = w->id ? 1 + varint_size((uint64_t)w->id) : 0;
	size_t msg = hub->hdr_field_len + id_len + ev_bytes;
	if (msg > UINT32_MAX)
		return CAIRN_ETOOBIG;
	if (w->fragment && n >= 2 && msg >= hub->cfg.max_response_bytes) {
		if (!fan_flush(w->ws))
			return CAIRN_EAGAIN;
		return feed_watcher(w, b, check_range, header_rev, done_rev, done_sub);
	}
	if (hub->out_len > 0 && hub->out_len + 5 + msg > hub->fan_limit &&
	    (!fan_flush(w->ws) || hub->fan_stop))
		return CAIRN_EAGAIN;
	if (grow(&hub->out, &hub->out_cap, hub->out_len + 5 + msg) != 0)
		return CAIRN_ENOMEM;
	if (hub->n_pend == hub->pend_cap) {
		size_t c = hub->pend_cap ? 2 * hub->pend_cap : 256;
		struct pend *np = realloc(hub->pend, c * sizeof(*np));
		if (!np)
			return CAIRN_ENOMEM;
		hub->pend = np;
		hub->pend_cap = c;
	}
	uint8_t *p = hub->out + hub->out_len;
	p[0] = 0; /* gRPC prefix: not compressed, big-endian length */
	p[1] = (uint8_t)(msg >> 24);
	p[2] = (uint8_t)(msg >> 16);
	p[3] = (uint8_t)(msg >> 8);
	p[4] = (uint8_t)msg;
	p += 5;
	memcpy(p, hub->hdr_field, hub->hdr_field_len);
	p += hub->hdr_field_len;
	if (w->id) {
		*p++ = 0x10; /* field 2, varint */
		p += put_varint(p, (uint64_t)w->id);
	}
	for (size_t k = 0; k < n; k++) {
		memcpy(p, hub->enc + hub->enc_off[hub->sel[k]], hub->enc_sz[hub->sel[k]]);
		p += hub->enc_sz[hub->sel[k]];
	}
	hub->out_len += 5 + msg;
	hub->pend[hub->n_pend++] = (struct pend){w, done_rev, done_sub};
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Catch-up and progress                                                      */

static bool stream_progress_ok(const struct wstream *ws)
{
	if (!ws->behind)
		return true;
	for (const struct watcher *w = ws->head; w; w = w->next)
		if (!w->compacted && !watcher_synced(w))
			return false;
	return true;
}

static void send_progress_if_synced(struct wstream *ws)
{
	if (ws->progress_pending && stream_progress_ok(ws)) {
		ws->progress_pending = false;
		send_simple(ws, INVALID_WATCH_ID, ws->hub->rev, false, false, NULL);
	}
}

/* Reads w's next chunk of history into *b (one catch-up step). 1 when
 * there is none because w's next revision was compacted: w is cancelled,
 * or its cancel refused (rpc full: the stream is blocked). */
static int catch_up_read(struct watcher *w, struct batch *b)
{
	struct srv_watch_hub *hub = w->ws->hub;
	struct store_history_req req;
	watcher_history_req(w, &req);
	int64_t window = (int64_t)hub->cfg.catchup_chunk_events * CATCHUP_SCAN_FACTOR;
	req.to_rev = hub->rev - req.from_rev >= window ? req.from_rev + window - 1 : hub->rev;
	if (!w->chunk)
		w->chunk = (uint32_t)first_chunk(hub); /* <= MAX_CHUNK_EVENTS */
	req.limit = w->chunk;
	int rc = read_batch(hub->cfg.store, &req, b);
	if (rc == CAIRN_ECOMPACTED) {
		/* etcd: {watch_id, compact_revision} on the watch channel, whose
		 * header revision is 0, canceled because compact_revision != 0. */
		Etcdserverpb__ResponseHeader h;
		fill_header(hub, 0, &h);
		Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
		r.header = &h;
		r.watch_id = w->id;
		r.canceled = true;
		r.compact_revision = b->compact_revision;
		if (send_event_msg(w->ws, &r) == 0)
			w->compacted = true;
		return 1;
	}
	if (rc != 0)
		return rc;
	w->chunk = (uint32_t)adapt_chunk(hub, w->chunk, b);
	return ensure_scratch(hub, b->n);
}

/* True when the history read made for `r` at (rev, sub) serves w too: same
 * position and range, and prev_kv read if w wants it. */
static bool same_read(const struct watcher *r, int64_t rev, int64_t sub, const struct watcher *w)
{
	return w->pos_rev == rev && w->pos_sub == sub && w->kind == r->kind &&
	       (r->prev_kv || !w->prev_kv) &&
	       bytes_cmp(wkey(w), w->key_len, wkey(r), r->key_len) == 0 &&
	       (w->kind != RANGE_SPAN || bytes_cmp(wend(w), w->end_len, wend(r), r->end_len) == 0);
}

/* One pass of catch-up over the stream's unsynced watchers, one chunk
 * each, from ws->cursor (where the last pass stopped) to the end. Watchers
 * at the same position on the same range (a stream of watchers on one
 * prefix that fell behind together) share one history read and the fan-out
 * buffer. Sets *left unless the pass proved every watcher synced: it started
 * at the head or at a clean cursor (every watcher before it synced at
 * hub->rev, ws->clean_rev) and each watcher it served was read up to
 * hub->rev. Non-zero when the stream cannot take more (or a store error);
 * the cursor is then the first watcher the pass did not finish, clean when
 * everything before it is synced. */
static int catch_up_pass(struct wstream *ws, int *budget, bool *left)
{
	struct srv_watch_hub *hub = ws->hub;
	bool shared = fan_header(hub, hub->rev) == 0;
	struct batch b;
	bool have = false;
	const struct watcher *r = NULL;
	int64_t r_rev = 0, r_sub = 0;
	int rc = 0;
	hub->out_len = 0;
	hub->n_pend = 0;
	struct watcher *w = ws->cursor ? ws->cursor : ws->head;
	bool unproven = ws->cursor && ws->clean_rev != hub->rev;
	for (; w; w = w->next) {
		if (w->compacted || watcher_synced(w))
			continue;
		if (!have || !same_read(r, r_rev, r_sub, w)) {
			if (have)
				batch_free(&b);
			have = false;
			if (*budget == 0) {
				rc = CAIRN_EAGAIN;
				break;
			}
			(*budget)--;
			r = w;
			r_rev = w->pos_rev;
			r_sub = w->pos_sub;
			rc = catch_up_read(w, &b);
			if (rc == 1) {
				rc = 0;
				if (ws->blocked) {
					rc = CAIRN_EAGAIN;
					break;
				}
				continue;
			}
			if (rc != 0)
				break;
			have = true;
			shared = shared && fan_events_reset(hub, &b) == 0;
		}
		rc = shared ? fan_watcher(w, &b, false, hub->rev, b.next_rev, b.next_sub)
		            : feed_watcher(w, &b, false, hub->rev, b.next_rev, b.next_sub);
		if (rc != 0)
			break;
		if (b.next_rev <= hub->rev)
			unproven = true; /* w has more to read */
	}
	ws->cursor = w;
	if (!fan_flush(ws) && rc == 0)
		rc = CAIRN_EAGAIN;
	if (ws->blocked || ws->closing)
		unproven = true; /* a refused buffer left its watchers behind */
	*left = unproven;
	ws->clean_rev = unproven ? 0 : hub->rev;
	if (have)
		batch_free(&b);
	return rc;
}

/* Catches the stream's unsynced watchers up, one chunk each in turn, until
 * all are synced, rpc refuses, or the budget is spent (tick goes on). */
static void pump_stream(struct wstream *ws)
{
	int budget = PUMP_BUDGET_CHUNKS;
	if (ws->closing || ws->blocked || !flush_ctrl(ws))
		return;
	while (ws->behind && budget > 0) {
		bool left = false;
		if (catch_up_pass(ws, &budget, &left) != 0)
			return; /* blocked, closing, or a store error: retried on tick */
		if (!left)
			ws->behind = false; /* invariant 6 */
	}
	send_progress_if_synced(ws);
}

static void tick_progress(struct srv_watch_hub *hub)
{
	for (struct wstream *ws = hub->streams; ws; ws = ws->next) {
		for (struct watcher *w = ws->head; w; w = w->next) {
			if (!w->progress_notify || w->compacted)
				continue;
			if (w->idle && watcher_synced(w)) {
				Etcdserverpb__ResponseHeader h;
				fill_header(hub, hub->rev, &h);
				Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
				r.header = &h;
				r.watch_id = w->id;
				/* optional: a refused notification is just skipped */
				send_event_msg(ws, &r);
			}
			w->idle = true;
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                   */

static struct watcher *find_watcher(struct wstream *ws, int64_t id, struct watcher ***link)
{
	for (struct watcher **p = &ws->head; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			if (link)
				*link = p;
			return *p;
		}
	}
	return NULL;
}

static void watcher_free(struct srv_watch_hub *hub, struct watcher *w)
{
	hub->n_watchers--;
	if (w->prev_kv)
		hub->n_prev_kv--;
	free(w);
}

static void on_create(struct wstream *ws, const Etcdserverpb__WatchCreateRequest *c)
{
	struct srv_watch_hub *hub = ws->hub;
	int64_t cur = store_current_rev(hub);
	static const uint8_t zero = 0;
	const uint8_t *key = c->key.len ? c->key.data : &zero;
	size_t key_len = c->key.len ? c->key.len : 1;
	enum range_kind kind = RANGE_SPAN;
	if (c->range_end.len == 0)
		kind = RANGE_KEY;
	else if (c->range_end.len == 1 && c->range_end.data[0] == 0)
		kind = RANGE_FROM;
	const char *err = NULL;
	int64_t id = c->watch_id;
	if (kind == RANGE_SPAN && bytes_cmp(key, key_len, c->range_end.data, c->range_end.len) >= 0)
		err = ERR_EMPTY_RANGE;
	else if (id != 0 && find_watcher(ws, id, NULL))
		err = ERR_DUPLICATE_ID;
	else if (hub->cfg.max_watchers_per_stream &&
	         ws->n_watchers >= hub->cfg.max_watchers_per_stream)
		err = ERR_TOO_MANY;
	if (err) {
		send_simple(ws, INVALID_WATCH_ID, cur, true, true, err);
		return;
	}
	size_t end_len = kind == RANGE_SPAN ? c->range_end.len : 0;
	if (key_len > UINT32_MAX || end_len > UINT32_MAX) {
		/* cannot come through rpc's message size limit */
		stream_fail(ws, RPC_INVALID_ARGUMENT, "etcdserver: request is too large");
		return;
	}
	struct watcher *w = calloc(1, sizeof(*w) + key_len + end_len);
	if (!w) {
		stream_fail(ws, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
		return;
	}
	memcpy(w->keys, key, key_len);
	if (kind == RANGE_SPAN)
		memcpy(w->keys + key_len, c->range_end.data, end_len);
	if (id == 0) { /* clientv3.AutoWatchID */
		while (find_watcher(ws, ws->next_id, NULL))
			ws->next_id++;
		id = ws->next_id++;
	}
	w->ws = ws;
	w->id = id;
	w->kind = (uint8_t)kind;
	w->key_len = (uint32_t)key_len;
	w->end_len = (uint32_t)end_len;
	/* etcd: 0 means "after now"; a negative start reads all the history.
	 * Progress is not held back until the store reaches the start revision
	 * (etcd 3.5.22's startRev check): etcd 3.4 and 3.5 up to .21 answer at
	 * once, and clients of those are what cairn stands in for. */
	int64_t start = c->start_revision == 0 ? cur + 1 : c->start_revision;
	w->pos_rev = start < 1 ? 1 : start;
	for (size_t i = 0; i < c->n_filters; i++) {
		if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
			w->no_put = true;
		else if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
			w->no_delete = true;
	}
	w->prev_kv = c->prev_kv;
	w->progress_notify = c->progress_notify;
	w->fragment = c->fragment;
	w->idle = true;
	if (ws->tail)
		ws->tail->next = w;
	else
		ws->head = w;
	ws->tail = w;
	ws->n_watchers++;
	hub->n_watchers++;
	if (w->prev_kv)
		hub->n_prev_kv++;
	send_simple(ws, id, cur, true, false, NULL);
	if (!watcher_synced(w)) {
		ws->behind = true;
		pump_stream(ws);
	}
}

static void on_cancel(struct wstream *ws, int64_t id)
{
	struct watcher **link;
	struct watcher *w = find_watcher(ws, id, &link);
	if (!w)
		return; /* etcd ignores an unknown id */
	*link = w->next;
	if (ws->cursor == w)
		ws->cursor = w->next;
	if (ws->tail == w) {
		ws->tail = NULL;
		for (struct watcher *p = ws->head; p; p = p->next)
			ws->tail = p;
	}
	ws->n_watchers--;
	watcher_free(ws->hub, w);
	send_simple(ws, id, store_current_rev(ws->hub), false, true, NULL);
	/* the cancelled watcher may have been the last unsynced one */
	send_progress_if_synced(ws);
}

/* ------------------------------------------------------------------------ */
/* Stream callbacks                                                           */

static void ws_on_open(struct rpc_stream *rs, void *userdata)
{
	struct srv_watch_hub *hub = userdata;
	struct wstream *ws = calloc(1, sizeof(*ws));
	if (!ws) {
		rpc_stream_close(rs, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
		return;
	}
	ws->hub = hub;
	ws->rs = rs;
	ws->next = hub->streams;
	if (hub->streams)
		hub->streams->prev = ws;
	hub->streams = ws;
	hub->n_streams++;
	rpc_stream_set_data(rs, ws);
}

static void ws_on_message(struct rpc_stream *rs, const uint8_t *msg, size_t len)
{
	struct wstream *ws = rpc_stream_data(rs);
	if (!ws || ws->closing)
		return;
	Etcdserverpb__WatchRequest *req = etcdserverpb__watch_request__unpack(NULL, len, msg);
	if (!req) {
		stream_fail(ws, RPC_INVALID_ARGUMENT, "etcdserver: cannot decode WatchRequest");
		return;
	}
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		if (req->create_request)
			on_create(ws, req->create_request);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
		if (req->cancel_request)
			on_cancel(ws, req->cancel_request->watch_id);
		break;
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		/* etcd 3.5 (progressIfSync) answers through one of the stream's
		 * watchers: a stream without watchers gets no answer. Requests
		 * made while one is deferred share its answer. */
		if (ws->head) {
			ws->progress_pending = true;
			send_progress_if_synced(ws);
		}
		break;
	default:
		break; /* etcd ignores what it does not know */
	}
	etcdserverpb__watch_request__free_unpacked(req, NULL);
}

static void ws_on_writable(struct rpc_stream *rs)
{
	struct wstream *ws = rpc_stream_data(rs);
	if (!ws)
		return;
	ws->blocked = false;
	pump_stream(ws);
}

/* rpc's connection drained to this stream (PULL): the next PULL_BYTES of
 * what it owes, and another pull while it is still behind. */
static void ws_on_pull(struct rpc_stream *rs)
{
	struct wstream *ws = rpc_stream_data(rs);
	if (!ws)
		return;
	struct srv_watch_hub *hub = ws->hub;
	hub->fan_limit = PULL_BYTES;
	hub->fan_stop = true;
	pump_stream(ws);
	hub->fan_limit = LIVE_STREAM_BYTES;
	hub->fan_stop = false;
	if (ws->behind && !ws->blocked && !ws->closing && rpc_stream_queued(rs) > 0)
		rpc_stream_want_pull(rs);
}

static void wstream_free(struct wstream *ws)
{
	struct srv_watch_hub *hub = ws->hub;
	if (ws->prev)
		ws->prev->next = ws->next;
	else
		hub->streams = ws->next;
	if (ws->next)
		ws->next->prev = ws->prev;
	hub->n_streams--;
	while (ws->head) {
		struct watcher *w = ws->head;
		ws->head = w->next;
		watcher_free(hub, w);
	}
	while (ws->ctrl_head) {
		struct ctrl_msg *m = ws->ctrl_head;
		ws->ctrl_head = m->next;
		free(m);
	}
	free(ws);
}

static void ws_on_close(struct rpc_stream *rs, int reason)
{
	(void)reason;
	struct wstream *ws = rpc_stream_data(rs);
	if (!ws)
		return;
	rpc_stream_set_data(rs, NULL);
	wstream_free(ws);
}

const struct rpc_stream_cbs srv_watch_stream_cbs = {
    .on_open = ws_on_open,
    .on_message = ws_on_message,
    .on_writable = ws_on_writable,
    .on_pull = ws_on_pull,
    .on_close = ws_on_close,
};

/* ------------------------------------------------------------------------ */
/* Hub API                                                                    */

int srv_watch_hub_new(const struct srv_watch_config *cfg, struct srv_watch_hub **out)
{
	if (!cfg || !cfg->store || !out)
		return CAIRN_EINVAL;
	struct srv_watch_hub *hub = calloc(1, sizeof(*hub));
	if (!hub)
		return CAIRN_ENOMEM;
	hub->cfg = *cfg;
	if (!hub->cfg.catchup_chunk_events)
		hub->cfg.catchup_chunk_events = DEFAULT_CHUNK_EVENTS;
	if (hub->cfg.catchup_chunk_events > MAX_CHUNK_EVENTS)
		hub->cfg.catchup_chunk_events =
		    MAX_CHUNK_EVENTS; /* keeps the scan window in range */
	if (!hub->cfg.max_response_bytes)
		hub->cfg.max_response_bytes = DEFAULT_MAX_RESP_BYTES;
	hub->live_chunk = first_chunk(hub);
	hub->fan_limit = LIVE_STREAM_BYTES;
	struct store_rtxn *r;
	int rc = store_rtxn_begin(cfg->store, &r);
	if (rc != 0) {
		free(hub);
		return rc;
	}
	hub->rev = store_rtxn_revision(r);
	store_rtxn_end(r);
	*out = hub;
	return 0;
}

void srv_watch_hub_free(struct srv_watch_hub *hub)
{
	if (!hub)
		return;
	while (hub->streams) {
		struct wstream *ws = hub->streams;
		/* on_close comes after the hub is gone: detach the stream first */
		rpc_stream_set_data(ws->rs, NULL);
		if (!ws->closing)
			rpc_stream_close(ws->rs, RPC_UNAVAILABLE, "etcdserver: server stopped");
		wstream_free(ws);
	}
	free(hub->sel);
	free(hub->evp);
	free(hub->enc);
	free(hub->enc_off);
	free(hub->enc_sz);
	free(hub->out);
	free(hub->pend);
	free(hub);
}

/* Feeds one batch of the live history (revisions up to `upto`) to every
 * synced watcher of every stream that can take it. */
static void feed_live(struct srv_watch_hub *hub, const struct batch *b, int64_t upto)
{
	bool shared = fan_header(hub, upto) == 0 && fan_events_reset(hub, b) == 0;
	hub->fan_limit = PULL_BYTES;
	hub->fan_stop = true;
	for (struct wstream *ws = hub->streams; ws; ws = ws->next) {
		if (ws->closing || ws->blocked || ws->ctrl_head) {
			ws->behind = ws->head != NULL; /* invariant 3: its watchers fall behind */
			continue;
		}
		hub->out_len = 0;
		hub->n_pend = 0;
		bool was_behind = ws->behind;
		for (struct watcher *w = ws->head; w; w = w->next) {
			if (w->compacted || !watcher_synced(w))
				continue;
			int rc = shared ? fan_watcher(w, b, true, upto, upto + 1, 0)
			                : feed_watcher(w, b, true, upto, upto + 1, 0);
			if (rc != 0) {
				ws->behind = true;
				if (!ws->blocked && !ws->closing) {
					/* stopped at PULL_BYTES: the rest as the
					 * connection drains, from here; everyone
					 * before w has this batch if all were
					 * synced when it started */
					ws->cursor = w;
					ws->clean_rev = was_behind ? 0 : upto;
					rpc_stream_want_pull(ws->rs);
				}
				break;
			}
		}
		if (!fan_flush(ws))
			ws->behind = true;
	}
	hub->fan_limit = LIVE_STREAM_BYTES;
	hub->fan_stop = false;
	if (hub->out_cap > LIVE_KEEP_OUT_BYTES) {
		free(hub->out);
		hub->out = NULL;
		hub->out_cap = 0;
	}
	if (hub->enc_cap > LIVE_KEEP_ENC_BYTES) {
		free(hub->enc);
		hub->enc = NULL;
		hub->enc_cap = 0;
	}
}

/* hub->rev jumped past what the live feed delivered (invariant 6). */
static void mark_all_behind(struct srv_watch_hub *hub)
{
	for (struct wstream *ws = hub->streams; ws; ws = ws->next)
		if (ws->head)
			ws->behind = true;
}

static bool any_live_watcher(const struct srv_watch_hub *hub)
{
	for (const struct wstream *ws = hub->streams; ws; ws = ws->next) {
		if (ws->closing || ws->blocked || ws->ctrl_head)
			continue;
		for (const struct watcher *w = ws->head; w; w = w->next)
			if (!w->compacted && watcher_synced(w))
				return true;
	}
	return false;
}

void srv_watch_hub_notify(struct srv_watch_hub *hub, int64_t revision)
{
	while (hub->rev < revision) {
		if (!any_live_watcher(hub)) {
			hub->rev = revision;
			mark_all_behind(hub);
			break;
		}
		static const uint8_t all_end = 0;
		struct store_history_req req = {
		    .key = (const uint8_t *)"",
		    .key_len = 0,
		    .range_end = &all_end,
		    .range_end_len = 1,
		    .from_rev = hub->rev + 1,
		    .to_rev = revision,
		    .limit = hub->live_chunk,
		    .prev_kv = hub->n_prev_kv > 0,
		};
		struct batch b;
		int rc = read_batch(hub->cfg.store, &req, &b);
		if (rc == CAIRN_EFUTUREREV)
			break; /* not visible yet: the next notify goes on */
		if (rc == 0)
			rc = ensure_scratch(hub, b.n);
		if (rc != 0) {
			/* Skip the range: the synced watchers become unsynced and
			 * the catch-up path retries (or reports compaction). */
			batch_free(&b);
			hub->rev = revision;
			mark_all_behind(hub);
			break;
		}
		hub->live_chunk = adapt_chunk(hub, hub->live_chunk, &b);
		batch_index_keys(&b);
		int64_t upto = b.more ? b.next_rev - 1 : revision;
		feed_live(hub, &b, upto);
		batch_free(&b);
		hub->rev = upto;
	}
	for (struct wstream *ws = hub->streams; ws; ws = ws->next)
		send_progress_if_synced(ws);
}

void srv_watch_hub_tick(struct srv_watch_hub *hub, uint64_t now_ms)
{
	if (hub->cfg.progress_interval_ms > 0) {
		if (!hub->progress_clock_set) {
			hub->progress_clock_set = true;
			hub->last_progress_ms = now_ms;
		} else if (now_ms - hub->last_progress_ms >=
		           (uint64_t)hub->cfg.progress_interval_ms) {
			hub->last_progress_ms = now_ms;
			tick_progress(hub);
		}
	}
	for (struct wstream *ws = hub->streams; ws; ws = ws->next)
		if (!ws->blocked)
			pump_stream(ws);
}

void srv_watch_hub_stats(const struct srv_watch_hub *hub, struct srv_watch_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->streams = hub->n_streams;
	out->watchers = hub->n_watchers;
	for (const struct wstream *ws = hub->streams; ws; ws = ws->next)
		for (const struct watcher *w = ws->head; w; w = w->next)
			if (!w->compacted && !watcher_synced(w))
				out->unsynced++;
}
