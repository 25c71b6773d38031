/*
 * test_watch.c — the watch hub on a real store with a fake rpc layer, so
 * back-pressure is exact: the fake stream accepts as many messages as the
 * test allows and then refuses with CAIRN_EAGAIN, as rpc_stream_send does
 * over its high-water mark. Checks the invariants of server/watch.c: no
 * event lost or repeated across refusals (also inside a fragmented
 * response), control responses kept in order, bounded control queue, and
 * stream lifecycle. The wire behaviour is in tests/test_watch.py.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "server/watch.h"
#include "tests/store_test_util.h"

/* ------------------------------------------------------------------------ */
/* Fake rpc streams: this binary does not link librpc.                        */

#define MAX_MSGS 4096

struct rpc_stream {
	void *data;
	int accept; /* messages still accepted; < 0 = unlimited */
	bool closed;
	int status;
	size_t n;
	Etcdserverpb__WatchResponse *msgs[MAX_MSGS];
	size_t refused;
	bool pull;     /* rpc_stream_want_pull armed */
	size_t queued; /* bytes accepted since the last pull began */
	size_t pulls;
};

int rpc_stream_send(struct rpc_stream *s, const void *msg, size_t len)
{
	if (s->closed)
		return CAIRN_ECLOSED;
	if (s->accept == 0) {
		s->refused++;
		return CAIRN_EAGAIN;
	}
	if (s->accept > 0)
		s->accept--;
	s->queued += len;
	assert_true(s->n < MAX_MSGS);
	s->msgs[s->n] = etcdserverpb__watch_response__unpack(NULL, len, msg);
	assert_non_null(s->msgs[s->n]);
	s->n++;
	return 0;
}

int rpc_stream_send_msg(struct rpc_stream *s, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	protobuf_c_message_pack(msg, buf);
	int rc = rpc_stream_send(s, buf, len);
	free(buf);
	return rc;
}

/* Like rpc: the framed messages are accepted or refused whole. Each must
 * be the bytes protobuf-c packs for the message it decodes to (the hub
 * builds them from pre-encoded parts). */
int rpc_stream_send_framed(struct rpc_stream *s, const void *frames, size_t len, size_t n_msgs)
{
	if (s->closed)
		return CAIRN_ECLOSED;
	if (s->accept == 0) {
		s->refused++;
		return CAIRN_EAGAIN;
	}
	const uint8_t *p = frames, *end = p + len;
	for (size_t i = 0; i < n_msgs; i++) {
		assert_true(end - p >= 5);
		assert_int_equal(p[0], 0);
		size_t ml = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
		p += 5;
		assert_true((size_t)(end - p) >= ml);
		assert_true(s->n < MAX_MSGS);
		s->msgs[s->n] = etcdserverpb__watch_response__unpack(NULL, ml, p);
		assert_non_null(s->msgs[s->n]);
		assert_int_equal(protobuf_c_message_get_packed_size(&s->msgs[s->n]->base), ml);
		uint8_t *again = malloc(ml ? ml : 1);
		protobuf_c_message_pack(&s->msgs[s->n]->base, again);
		assert_memory_equal(again, p, ml);
		free(again);
		s->n++;
		p += ml;
	}
	assert_true(p == end);
	s->queued += len;
	if (s->accept > 0)
		s->accept = (size_t)s->accept > n_msgs ? s->accept - (int)n_msgs : 0;
	return 0;
}

int rpc_stream_close(struct rpc_stream *s, int grpc_status, const char *message)
{
	(void)message;
	if (s->closed)
		return CAIRN_ECLOSED;
	s->closed = true;
	s->status = grpc_status;
	return 0;
}

/* As rpc: armed once per call; rpc pulls in the same loop turn, which the
 * tests play with pulls(). */
int rpc_stream_want_pull(struct rpc_stream *s)
{
	if (s->closed)
		return CAIRN_ECLOSED;
	s->pull = true;
	return 0;
}

/* rpc pulls when the queue is empty: what was accepted since the pull
 * began is what is queued. */
size_t rpc_stream_queued(const struct rpc_stream *s)
{
	return s->queued;
}

void rpc_stream_set_data(struct rpc_stream *s, void *data)
{
	s->data = data;
}

void *rpc_stream_data(const struct rpc_stream *s)
{
	return s->data;
}

/* The connection drains: pulls while the hub asks for them. */
static void pulls(struct rpc_stream *s)
{
	for (int i = 0; i < 100000 && s->pull && !s->closed; i++) {
		s->pull = false;
		s->queued = 0;
		s->pulls++;
		srv_watch_stream_cbs.on_pull(s);
	}
	assert_false(s->pull && !s->closed);
}

static void stream_clear(struct rpc_stream *s)
{
	for (size_t i = 0; i < s->n; i++)
		etcdserverpb__watch_response__free_unpacked(s->msgs[i], NULL);
	s->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                    */

struct fx {
	char *dir;
	struct store *s;
	struct srv_watch_hub *hub;
	struct rpc_stream st;
};

static int setup_cfg(void **state, size_t chunk, size_t max_resp)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_tmpdir();
	if (!f->dir || tu_open(f->dir, &f->s) != 0)
		return -1;
	struct srv_watch_config cfg = {
	    .store = f->s, .catchup_chunk_events = chunk, .max_response_bytes = max_resp};
	if (srv_watch_hub_new(&cfg, &f->hub) != 0)
		return -1;
	f->st.accept = -1;
	srv_watch_stream_cbs.on_open(&f->st, f->hub);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_cfg(state, 10, 0);
}

static int setup_fragment(void **state)
{
	return setup_cfg(state, 100, 600);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (rpc_stream_data(&f->st))
		srv_watch_stream_cbs.on_close(&f->st, CAIRN_ECANCELED);
	stream_clear(&f->st);
	srv_watch_hub_free(f->hub);
	store_close(f->s);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void send_req(struct fx *f, const Etcdserverpb__WatchRequest *req)
{
	size_t len = protobuf_c_message_get_packed_size(&req->base);
	uint8_t *buf = malloc(len ? len : 1);
	protobuf_c_message_pack(&req->base, buf);
	srv_watch_stream_cbs.on_message(&f->st, buf, len);
	free(buf);
}

static void create_opts(struct fx *f, const char *key, const char *end, int64_t start,
                        bool fragment, int64_t id, bool prev_kv, bool no_put)
{
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType nop =
	    ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
	c.watch_id = id;
	c.prev_kv = prev_kv;
	if (no_put) {
		c.filters = &nop;
		c.n_filters = 1;
	}
	c.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
	if (end) /* "" means "\0": every key from key on */
		c.range_end = (ProtobufCBinaryData){*end ? strlen(end) : 1, (uint8_t *)end};
	c.start_revision = start;
	c.fragment = fragment;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req.create_request = &c;
	send_req(f, &req);
}

static void create(struct fx *f, const char *key, const char *end, int64_t start, bool fragment)
{
	create_opts(f, key, end, start, fragment, 0, false, false);
}

static void progress(struct fx *f)
{
	Etcdserverpb__WatchProgressRequest p = ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
	req.progress_request = &p;
	send_req(f, &req);
}

/* The member's notify after a commit, then rpc's pulls of the same turn. */
static void notify(struct fx *f)
{
	srv_watch_hub_notify(f->hub, tu_rev(f->s));
	pulls(&f->st);
}

static void put_n(struct fx *f, const char *prefix, int n, size_t vlen)
{
	char *v = malloc(vlen + 1);
	memset(v, 'v', vlen);
	v[vlen] = 0;
	for (int i = 0; i < n; i++) {
		char k[64];
		snprintf(k, sizeof(k), "%s%05d", prefix, i);
		assert_int_equal(tu_put(f->s, k, v), 0);
	}
	free(v);
	notify(f);
}

/* n puts of prefix%05d in one revision (one txn). */
static void txn_puts(struct fx *f, const char *prefix, int n, size_t vlen)
{
	char *v = malloc(vlen + 1);
	memset(v, 'v', vlen);
	char(*keys)[64] = calloc((size_t)n, sizeof(*keys));
	struct store_op *ops = calloc((size_t)n, sizeof(*ops));
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "%s%05d", prefix, i);
		ops[i].type = STORE_OP_PUT;
		ops[i].u.put = (struct store_put_req){.key = B(keys[i]),
		                                      .key_len = strlen(keys[i]),
		                                      .value = B(v),
		                                      .value_len = vlen};
	}
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(f->s, &w), 0);
	struct store_txn_req req = {.success = ops, .n_success = (size_t)n};
	struct store_txn_resp resp;
	assert_int_equal(store_txn(w, &req, &resp), 0);
	store_txn_resp_free(&resp);
	assert_int_equal(store_wtxn_commit(w), 0);
	free(ops);
	free(keys);
	free(v);
	notify(f);
}

static int64_t unsynced(struct fx *f)
{
	struct srv_watch_stats st;
	srv_watch_hub_stats(f->hub, &st);
	return (int64_t)st.unsynced;
}

/* Revisions of every event in the stream's messages, in order. */
static size_t event_revs(struct fx *f, int64_t *out, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < f->st.n; i++)
		for (size_t j = 0; j < f->st.msgs[i]->n_events && k < max; j++)
			out[k++] = f->st.msgs[i]->events[j]->kv->mod_revision;
	return k;
}

/* Lets the stream drain until the hub has nothing more to send. */
static void drain(struct fx *f)
{
	for (int i = 0; i < 1000 && f->st.refused; i++) {
		f->st.refused = 0;
		f->st.accept = 1;
		srv_watch_stream_cbs.on_writable(&f->st);
	}
	f->st.accept = -1;
	srv_watch_stream_cbs.on_writable(&f->st);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                      */

static void test_live_then_refused_then_resumed(void **state)
{
	struct fx *f = *state;
	create(f, "k/", "k0", 0, false);
	assert_int_equal(f->st.n, 1);
	assert_true(f->st.msgs[0]->created);
	int64_t base = tu_rev(f->s);
	put_n(f, "k/a", 3, 10);
	assert_int_equal(f->st.n, 2); /* one notify: one response, three revisions */
	assert_int_equal(f->st.msgs[1]->n_events, 3);
	f->st.accept = 1; /* rpc takes one more message, then is full */
	put_n(f, "k/b", 25, 10);
	put_n(f, "k/c", 25, 10);
	assert_int_equal(unsynced(f), 1);
	drain(f);
	assert_int_equal(unsynced(f), 0);
	int64_t revs[64];
	size_t n = event_revs(f, revs, 64);
	assert_int_equal(n, 53);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(revs[i], base + 1 + (int64_t)i);
	/* synced again: live */
	put_n(f, "k/d", 1, 10);
	assert_int_equal(event_revs(f, revs, 64), 54);
}

static void test_fragment_cut_by_refusal(void **state)
{
	struct fx *f = *state;
	int64_t base = tu_rev(f->s);
	put_n(f, "f/", 20, 200);
	f->st.accept = 3; /* created + two fragments */
	create(f, "f/", "f0", base + 1, true);
	assert_int_equal(f->st.n, 3);
	assert_true(f->st.msgs[1]->fragment && f->st.msgs[2]->fragment);
	drain(f);
	int64_t revs[64];
	size_t n = event_revs(f, revs, 64);
	assert_int_equal(n, 20);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(revs[i], base + 1 + (int64_t)i);
	/* the cut group is completed by the next messages (the client merges
	 * until fragment=false); the stream ends on a whole response; each
	 * message fits */
	assert_false(f->st.msgs[f->st.n - 1]->fragment);
	for (size_t i = 1; i < f->st.n; i++)
		assert_true(f->st.msgs[i]->n_events == 1 ||
		            protobuf_c_message_get_packed_size(&f->st.msgs[i]->base) < 600);
}

static void test_fragment_cut_inside_a_revision(void **state)
{
	struct fx *f = *state;
	int64_t base = tu_rev(f->s);
	txn_puts(f, "t/a", 10, 200);
	txn_puts(f, "t/b", 10, 200);
	f->st.accept = 3; /* created + two fragments, cut inside revision base+1 */
	create(f, "t/", "t0", base + 1, true);
	assert_int_equal(f->st.n, 3);
	drain(f);
	size_t k = 0;
	for (size_t i = 1; i < f->st.n; i++) {
		for (size_t j = 0; j < f->st.msgs[i]->n_events; j++, k++) {
			Mvccpb__KeyValue *kv = f->st.msgs[i]->events[j]->kv;
			char want[16];
			snprintf(want, sizeof(want), "t/%c%05zu", k < 10 ? 'a' : 'b', k % 10);
			assert_int_equal(kv->mod_revision, base + 1 + (int64_t)(k / 10));
			assert_int_equal(kv->key.len, strlen(want));
			assert_memory_equal(kv->key.data, want, strlen(want));
		}
		/* a revision continued in the next message: only as a fragment */
		Etcdserverpb__WatchResponse *m = f->st.msgs[i];
		if (i + 1 < f->st.n && m->events[m->n_events - 1]->kv->mod_revision ==
		                           f->st.msgs[i + 1]->events[0]->kv->mod_revision)
			assert_true(m->fragment);
	}
	assert_false(f->st.msgs[f->st.n - 1]->fragment);
	assert_int_equal(k, 20);
}

/* Large values: reads shrink towards max_response_bytes (600 here). */
static void test_large_values_read_in_small_chunks(void **state)
{
	struct fx *f = *state;
	int64_t base = tu_rev(f->s);
	put_n(f, "big/", 60, 2000);
	create(f, "big/", "big0", base + 1, false);
	int64_t revs[64];
	assert_int_equal(event_revs(f, revs, 64), 60);
	size_t most = 0;
	for (size_t i = 1; i < f->st.n; i++)
		most = f->st.msgs[i]->n_events > most ? f->st.msgs[i]->n_events : most;
	assert_true(most <= 16);
	assert_int_equal(f->st.msgs[f->st.n - 1]->n_events, 1);
}

static void test_control_order_under_refusal(void **state)
{
	struct fx *f = *state;
	progress(f); /* no watchers: etcd 3.5 does not answer */
	assert_int_equal(f->st.n, 0);
	int64_t base = tu_rev(f->s);
	put_n(f, "o/", 5, 10);
	f->st.accept = 0;
	create(f, "o/", "o0", base + 1, false); /* catch-up watcher */
	create(f, "x", NULL, 0, false);
	progress(f); /* deferred: watcher 0 is behind */
	progress(f); /* shares the deferred answer */
	put_n(f, "o/", 2, 10);
	assert_int_equal(f->st.n, 0);
	drain(f);
	/* created 0, created 1, then events, then progress (-1) last */
	assert_true(f->st.n >= 4);
	assert_true(f->st.msgs[0]->created && f->st.msgs[0]->watch_id == 0);
	assert_true(f->st.msgs[1]->created && f->st.msgs[1]->watch_id == 1);
	Etcdserverpb__WatchResponse *last = f->st.msgs[f->st.n - 1];
	assert_int_equal(last->watch_id, -1);
	for (size_t i = 0; i + 1 < f->st.n; i++)
		assert_int_not_equal(f->st.msgs[i]->watch_id, -1);
	assert_int_equal(last->header->revision, tu_rev(f->s));
	int64_t revs[16];
	assert_int_equal(event_revs(f, revs, 16), 7);
	assert_int_equal(revs[6], tu_rev(f->s));
}

static void test_control_queue_bounded(void **state)
{
	struct fx *f = *state;
	create(f, "d", NULL, 0, false);
	f->st.accept = 0;
	/* duplicate ids: each is answered (created+canceled), none accepted */
	for (int i = 0; i < 100000 && !f->st.closed; i++) {
		Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
		c.key = (ProtobufCBinaryData){1, (uint8_t *)"d"};
		c.watch_id = 1; /* taken: answered with created+canceled */
		Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
		req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
		req.create_request = &c;
		send_req(f, &req);
	}
	assert_true(f->st.closed);
	assert_int_equal(f->st.status, RPC_RESOURCE_EXHAUSTED);
}

/* The live feed finds each watcher's events through the batch's key index:
 * one notify covering several revisions and a txn, watchers of every kind. */
static void test_live_batch_key_index(void **state)
{
	struct fx *f = *state;
	create(f, "b/1", NULL, 0, false); /* 0: one key */
	create(f, "b/", "b0", 0, false);  /* 1: prefix */
	create(f, "b/2", "", 0, false);   /* 2: from key */
	create(f, "", "", 0, false);      /* 3: every key */
	assert_int_equal(f->st.n, 4);
	int64_t base = tu_rev(f->s);
	assert_int_equal(tu_put(f->s, "c", "1"), 0);
	assert_int_equal(tu_put(f->s, "b/1", "1"), 0);
	assert_int_equal(tu_put(f->s, "a", "1"), 0);
	assert_int_equal(tu_put(f->s, "b/1", "2"), 0);
	txn_puts(f, "b/", 3, 1); /* b/00000..b/00002 in one revision, then notify */
	/* watcher 0: b/1 twice, in revision order */
	int64_t want0[] = {base + 2, base + 4};
	int64_t want1[] = {base + 2, base + 4, base + 5, base + 5, base + 5};
	int64_t want3[] = {base + 1, base + 2, base + 3, base + 4, base + 5, base + 5, base + 5};
	for (size_t i = 4; i < f->st.n; i++) {
		Etcdserverpb__WatchResponse *m = f->st.msgs[i];
		if (m->watch_id == 0) {
			assert_int_equal(m->n_events, 2);
			for (size_t j = 0; j < 2; j++)
				assert_int_equal(m->events[j]->kv->mod_revision, want0[j]);
		} else if (m->watch_id == 1) {
			assert_int_equal(m->n_events, 5);
			for (size_t j = 0; j < 5; j++)
				assert_int_equal(m->events[j]->kv->mod_revision, want1[j]);
			assert_memory_equal(m->events[2]->kv->key.data, "b/00000", 7);
			assert_memory_equal(m->events[4]->kv->key.data, "b/00002", 7);
		} else if (m->watch_id == 2) {
			assert_int_equal(m->n_events, 1); /* "c" only */
			assert_int_equal(m->events[0]->kv->mod_revision, base + 1);
		} else {
			assert_int_equal(m->watch_id, 3);
			assert_int_equal(m->n_events, 7);
			for (size_t j = 0; j < 7; j++)
				assert_int_equal(m->events[j]->kv->mod_revision, want3[j]);
		}
	}
	assert_int_equal(f->st.n, 8);
}

/* The fan-out's shared encoding: many watchers of one prefix with mixed
 * options get each event once, with their own watch_id (0 and large ids,
 * whose varints differ in length), prev_kv only where asked, filters
 * applied; the fake checks every response is byte-identical to protobuf-c's
 * packing. A refused stream's whole batch turns unsynced and catches up
 * through shared history reads, each watcher exactly once. */
static void test_fan_out_shared_encoding(void **state)
{
	struct fx *f = *state;
	enum { N = 300 };
	assert_int_equal(tu_put(f->s, "p/x", "old"), 0);
	notify(f);
	for (int i = 0; i < N; i++)
		create_opts(f, "p/", "p0", 0, false, i == 0 ? 0 : 100000 + i, i % 2 == 1,
		            i % 7 == 3);
	assert_int_equal(f->st.n, N);
	stream_clear(&f->st);
	int64_t base = tu_rev(f->s);
	assert_int_equal(tu_put(f->s, "p/x", "new"), 0);
	assert_int_equal(tu_put(f->s, "q", "other"), 0);
	notify(f);
	int with_put = 0;
	for (int i = 0; i < N; i++)
		with_put += i % 7 != 3;
	assert_int_equal(f->st.n, with_put);
	for (size_t m = 0; m < f->st.n; m++) {
		Etcdserverpb__WatchResponse *r = f->st.msgs[m];
		int64_t i = r->watch_id == 0 ? 0 : r->watch_id - 100000;
		assert_true(i >= 0 && i < N && i % 7 != 3);
		assert_int_equal(r->header->revision, base + 2);
		assert_int_equal(r->n_events, 1);
		assert_int_equal(r->events[0]->kv->mod_revision, base + 1);
		assert_memory_equal(r->events[0]->kv->value.data, "new", 3);
		if (i % 2 == 1) {
			assert_non_null(r->events[0]->prev_kv);
			assert_memory_equal(r->events[0]->prev_kv->value.data, "old", 3);
		} else {
			assert_null(r->events[0]->prev_kv);
		}
	}
	stream_clear(&f->st);
	/* refused: nothing queued, the rest behind, then each gets it once */
	f->st.accept = 0;
	assert_int_equal(tu_put(f->s, "p/x", "newer"), 0);
	notify(f);
	assert_int_equal(f->st.n, 0);
	assert_int_equal(unsynced(f), with_put); /* NOPUT watchers are owed nothing */
	f->st.refused = 0;
	f->st.accept = -1;
	srv_watch_stream_cbs.on_writable(&f->st);
	for (int k = 0; k < 10 && unsynced(f); k++)
		srv_watch_hub_tick(f->hub, 0);
	assert_int_equal(unsynced(f), 0);
	assert_int_equal(f->st.n, with_put);
	int seen[N] = {0};
	for (size_t m = 0; m < f->st.n; m++) {
		Etcdserverpb__WatchResponse *r = f->st.msgs[m];
		int64_t i = r->watch_id == 0 ? 0 : r->watch_id - 100000;
		assert_true(i >= 0 && i < N && i % 7 != 3 && !seen[i]);
		seen[i] = 1;
		assert_int_equal(r->n_events, 1);
		assert_int_equal(r->events[0]->kv->mod_revision, tu_rev(f->s));
		assert_memory_equal(r->events[0]->kv->value.data, "newer", 5);
		if (i % 2 == 1)
			assert_memory_equal(r->events[0]->prev_kv->value.data, "new", 3);
		else
			assert_null(r->events[0]->prev_kv);
	}
}

/* A fan-out larger than one pull is generated as rpc pulls: the live feed
 * queues a first part, the rest comes pull by pull. Whatever happens
 * between pulls (a new revision fed live, watchers cancelled, one of them
 * where the next pull would start), each watcher gets each of its events
 * exactly once, in revision order, and nothing after its cancel. */
static void test_large_fan_out_pulled(void **state)
{
	struct fx *f = *state;
	enum { N = 1000, CANCEL_FROM = 400, CANCEL_TO = 420 };
	char val[201];
	memset(val, 'x', 200);
	val[200] = 0;
	assert_int_equal(tu_put(f->s, "p/a", "old"), 0);
	notify(f);
	for (int i = 0; i < N; i++)
		create_opts(f, "p/", "p0", 0, false, 0, i % 3 == 0, false);
	assert_int_equal(f->st.n, N);
	stream_clear(&f->st);
	int64_t r1 = tu_rev(f->s) + 1;
	assert_int_equal(tu_put(f->s, "p/a", val), 0);
	srv_watch_hub_notify(f->hub, tu_rev(f->s));
	assert_true(f->st.n > 0 && f->st.n < N); /* a first part, then pulls */
	assert_true(f->st.pull);
	/* one pull, then a second revision fed live while pulls are owed */
	f->st.pull = false;
	f->st.queued = 0;
	srv_watch_stream_cbs.on_pull(&f->st);
	assert_true(f->st.pull);
	int64_t r2 = tu_rev(f->s) + 1;
	assert_int_equal(tu_put(f->s, "p/b", val), 0);
	srv_watch_hub_notify(f->hub, tu_rev(f->s));
	/* cancels, one of them at the live feed's stopping point */
	for (int id = CANCEL_FROM; id < CANCEL_TO; id++) {
		Etcdserverpb__WatchCancelRequest cr = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
		cr.watch_id = id;
		Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
		req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
		req.cancel_request = &cr;
		send_req(f, &req);
	}
	pulls(&f->st);
	for (int k = 0; k < 10 && unsynced(f); k++)
		srv_watch_hub_tick(f->hub, 0);
	assert_int_equal(unsynced(f), 0);
	assert_true(f->st.pulls > 2);
	int got[N] = {0};
	bool cancelled[N] = {false};
	for (size_t m = 0; m < f->st.n; m++) {
		Etcdserverpb__WatchResponse *r = f->st.msgs[m];
		assert_true(r->watch_id >= 0 && r->watch_id < N);
		int64_t i = r->watch_id;
		if (r->canceled) {
			assert_true(i >= CANCEL_FROM && i < CANCEL_TO && !cancelled[i]);
			cancelled[i] = true;
			continue;
		}
		assert_false(cancelled[i]);
		for (size_t e = 0; e < r->n_events; e++) {
			int64_t want = got[i] == 0 ? r1 : r2;
			assert_true(got[i] < 2);
			assert_int_equal(r->events[e]->kv->mod_revision, want);
			assert_int_equal(r->events[e]->kv->value.len, 200);
			if (want == r1 && i % 3 == 0)
				assert_memory_equal(r->events[e]->prev_kv->value.data, "old", 3);
			else
				assert_null(r->events[e]->prev_kv);
			got[i]++;
		}
	}
	for (int i = 0; i < N; i++) {
		if (i >= CANCEL_FROM && i < CANCEL_TO)
			assert_true(cancelled[i] && got[i] <= 2);
		else
			assert_int_equal(got[i], 2);
	}
}

/* A watcher on a rarely written key catches up in bounded scan windows. */
static void test_sparse_catch_up(void **state)
{
	struct fx *f = *state;
	put_n(f, "other", 500, 10);
	assert_int_equal(tu_put(f->s, "s", "1"), 0);
	notify(f);
	put_n(f, "more", 300, 10);
	create(f, "s", NULL, 1, false);
	assert_int_equal(f->st.n, 2);
	assert_int_equal(f->st.msgs[1]->n_events, 1);
	assert_int_equal(f->st.msgs[1]->events[0]->kv->mod_revision,
	                 502); /* empty store at 1, then 500 puts */
	assert_int_equal(unsynced(f), 0);
}

/* etcd 3.5 (before .22): a progress request right after a create is
 * answered with the current revision, even before any write. */
static void test_progress_right_after_create(void **state)
{
	struct fx *f = *state;
	create(f, "p", NULL, 0, false);
	progress(f);
	assert_int_equal(f->st.n, 2);
	assert_int_equal(f->st.msgs[1]->watch_id, -1);
	assert_int_equal(f->st.msgs[1]->header->revision, tu_rev(f->s));
}

static void test_bad_message_closes(void **state)
{
	struct fx *f = *state;
	srv_watch_stream_cbs.on_message(&f->st, (const uint8_t *)"\xff\xff", 2);
	assert_true(f->st.closed);
	assert_int_equal(f->st.status, RPC_INVALID_ARGUMENT);
}

/* etcd's recvLoop returns nil on EOF and the stream stays open: after a
 * half-close its watchers go on, history then live, until the client resets
 * (on_close, which frees them: ASan checks that). */
static void test_half_close_keeps_stream_open(void **state)
{
	struct fx *f = *state;
	put_n(f, "h", 30, 8);
	f->st.accept = 2; /* the catch-up is cut short by back-pressure */
	create(f, "h", "i", 2, false);
	if (srv_watch_stream_cbs.on_half_close) /* as rpc calls it: when set */
		srv_watch_stream_cbs.on_half_close(&f->st);
	assert_false(f->st.closed);
	drain(f);
	put_n(f, "h", 30, 8);
	assert_false(f->st.closed);
	int64_t revs[64];
	assert_int_equal(event_revs(f, revs, 64), 60);
	for (int i = 0; i < 60; i++)
		assert_int_equal(revs[i], 2 + i);
	struct srv_watch_stats ws;
	srv_watch_hub_stats(f->hub, &ws);
	assert_int_equal(ws.streams, 1);
	assert_int_equal(ws.watchers, 1);
	srv_watch_stream_cbs.on_close(&f->st, CAIRN_ECANCELED);
	assert_null(rpc_stream_data(&f->st));
	srv_watch_hub_stats(f->hub, &ws);
	assert_int_equal(ws.streams, 0);
	assert_int_equal(ws.watchers, 0);
}

static void test_compacted_while_behind(void **state)
{
	struct fx *f = *state;
	create(f, "c", NULL, 0, false);
	f->st.accept = 1;
	put_n(f, "c", 1, 10); /* accepted: "c00000" does not match "c" */
	assert_int_equal(tu_put(f->s, "c", "1"), 0);
	notify(f);
	assert_int_equal(tu_put(f->s, "c", "2"), 0); /* refused: the watcher stays here */
	notify(f);
	assert_int_equal(tu_put(f->s, "c", "3"), 0);
	notify(f);
	int64_t rev = tu_rev(f->s);
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(f->s, &w), 0);
	assert_int_equal(store_compact(w, rev), 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	drain(f);
	Etcdserverpb__WatchResponse *last = f->st.msgs[f->st.n - 1];
	assert_true(last->canceled);
	assert_int_equal(last->compact_revision, rev);
	assert_int_equal(unsynced(f), 0);
	/* the id stays taken until the client cancels it, as in etcd */
	Etcdserverpb__WatchCancelRequest cr = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
	cr.watch_id = 0;
	Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
	req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
	req.cancel_request = &cr;
	size_t before = f->st.n;
	send_req(f, &req);
	assert_int_equal(f->st.n, before + 1);
	assert_true(f->st.msgs[before]->canceled && f->st.msgs[before]->watch_id == 0);
}

static void test_hub_free_with_open_stream(void **state)
{
	struct fx *f = *state;
	create(f, "z", NULL, 0, false);
	srv_watch_hub_free(f->hub);
	assert_true(f->st.closed);
	assert_int_equal(f->st.status, RPC_UNAVAILABLE);
	assert_null(rpc_stream_data(&f->st));
	srv_watch_stream_cbs.on_close(&f->st, CAIRN_ECLOSED); /* rpc's later close: harmless */
	struct srv_watch_config cfg = {.store = f->s};
	assert_int_equal(srv_watch_hub_new(&cfg, &f->hub), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_live_then_refused_then_resumed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fragment_cut_by_refusal, setup_fragment, teardown),
	    cmocka_unit_test_setup_teardown(test_fragment_cut_inside_a_revision, setup_fragment,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_large_values_read_in_small_chunks, setup_fragment,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_control_order_under_refusal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_control_queue_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_live_batch_key_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fan_out_shared_encoding, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_large_fan_out_pulled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sparse_catch_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_progress_right_after_create, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_message_closes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_half_close_keeps_stream_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compacted_while_behind, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_free_with_open_stream, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
