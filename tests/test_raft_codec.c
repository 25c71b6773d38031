/* test_raft_codec.c — raft messages survive encode/decode unchanged, and
 * decoding garbage (random bytes, truncations, bit flips of valid
 * messages) returns CAIRN_EPROTO or a valid message, never crashes (run
 * under ASan by `make test-asan`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/raft_codec.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(struct raft_msg *m, struct raft_entry *ents, uint8_t *data, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = 1 + rnd() % 7;
	m->to = 1 + rnd() % 7;
	/* Only what raft_msg_check() accepts: terms and indexes <= 2^63 - 1,
	 * entries and snapshots no newer than the message's term. */
	m->term = 5 + rnd() % 1000;
	m->index = rnd() % 1000;
	m->log_term = rnd() % (m->term + 1);
	m->commit = rnd() >> 1;
	m->ctx = rnd();
	m->reject_hint = rnd() % 50;
	m->reject = rnd() & 1;
	m->transfer = rnd() & 1;
	if (type == RAFT_MSG_APPEND) {
		m->n_entries = (uint32_t)(rnd() % 5);
		for (uint32_t i = 0; i < m->n_entries; i++) {
			ents[i] =
			    (struct raft_entry){.term = m->term,
			                        .index = m->index + 1 + i,
			                        .type = (uint8_t)(rnd() % 2),
			                        .data = {.base = i ? data : NULL, .len = i * 3}};
		}
		m->entries = ents;
	}
	if (type == RAFT_MSG_SNAPSHOT) {
		m->snapshot.index = 77;
		m->snapshot.term = 5;
		m->snapshot.conf.n_voters = 3;
		m->snapshot.conf.voters[0] = 1;
		m->snapshot.conf.voters[1] = 2;
		m->snapshot.conf.voters[2] = 9;
		m->snapshot.conf.n_learners = 1;
		m->snapshot.conf.learners[0] = 4;
		m->snapshot_data = (struct raft_buf){data, 16};
	}
}

static void assert_same(const struct raft_msg *a, const struct raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_true(a->from == b->from && a->to == b->to && a->term == b->term);
	assert_true(a->index == b->index && a->log_term == b->log_term);
	assert_true(a->commit == b->commit && a->ctx == b->ctx && a->reject_hint == b->reject_hint);
	assert_int_equal(a->reject, b->reject);
	assert_int_equal(a->transfer, b->transfer);
	assert_int_equal(a->n_entries, b->n_entries);
	for (uint32_t i = 0; i < a->n_entries; i++) {
		const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
		assert_true(x->term == y->term && x->index == y->index && x->type == y->type);
		assert_int_equal(x->data.len, y->data.len);
		if (x->data.len)
			assert_memory_equal(x->data.base, y->data.base, x->data.len);
	}
	if (a->type == RAFT_MSG_SNAPSHOT) {
		assert_memory_equal(&a->snapshot, &b->snapshot, sizeof(a->snapshot));
		assert_int_equal(a->snapshot_data.len, b->snapshot_data.len);
		assert_memory_equal(a->snapshot_data.base, b->snapshot_data.base,
		                    a->snapshot_data.len);
	}
}

static void test_roundtrip_every_type(void **state)
{
	(void)state;
	uint8_t data[64];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	for (int k = 0; k < 200; k++) {
		for (uint8_t t = 1; t <= RAFT_MSG_TYPE_MAX; t++) {
			struct raft_msg m;
			struct raft_entry ents[8];
			fill(&m, ents, data, t);
			uint8_t *buf;
			size_t len;
			assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
			struct raft_msg_decoded *d;
			assert_int_equal(raft_msg_decode(buf, len, &d), 0);
			assert_same(&m, &d->msg);
			raft_msg_decoded_free(d);
			free(buf);
		}
	}
}

static void test_encode_rejects_bad_type(void **state)
{
	(void)state;
	struct raft_msg m = {.type = 0, .from = 1, .to = 2};
	uint8_t *buf;
	size_t len;
	assert_int_equal(raft_msg_encode(&m, &buf, &len), CAIRN_EINVAL);
	m.type = RAFT_MSG_TYPE_MAX + 1;
	assert_int_equal(raft_msg_encode(&m, &buf, &len), CAIRN_EINVAL);
}

/* What raft_msg_check() refuses, the decoder refuses: a peer cannot hand
 * the core a term it would overflow, entries newer than their leader, or a
 * snapshot whose configuration miscounts a quorum. */
static void test_decode_refuses_what_core_cannot_use(void **state)
{
	(void)state;
	uint8_t data[64] = {0};
	for (int k = 0; k < 8; k++) {
		struct raft_msg m;
		struct raft_entry ents[8];
		fill(&m, ents, data,
		     k < 3   ? RAFT_MSG_HEARTBEAT
		     : k < 5 ? RAFT_MSG_APPEND
		             : RAFT_MSG_SNAPSHOT);
		switch (k) {
		case 0:
			m.term = UINT64_MAX;
			break;
		case 1:
			m.commit = (uint64_t)INT64_MAX + 1;
			break;
		case 2:
			m.term = (uint64_t)RAFT_MAX_INDEX + 1;
			break;
		case 3:
			m.n_entries = 1;
			ents[0] = (struct raft_entry){.term = m.term + 1, .index = m.index + 1};
			break;
		case 4:
			m.index = UINT64_MAX - 1;
			m.n_entries = 1;
			ents[0] = (struct raft_entry){.term = m.term, .index = UINT64_MAX};
			break;
		case 5:
			m.snapshot.term = m.term + 1;
			break;
		case 6:
			m.snapshot.conf.voters[2] = 1; /* voter 1 twice: quorum miscounted */
			break;
		case 7:
			m.snapshot.conf.learners[0] = 2; /* a learner that is a voter */
			break;
		}
		assert_int_equal(raft_msg_check(&m), CAIRN_EINVAL);
		uint8_t *buf;
		size_t len;
		assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
		struct raft_msg_decoded *d = NULL;
		assert_int_equal(raft_msg_decode(buf, len, &d), CAIRN_EPROTO);
		free(buf);
	}
}

static void decode_any(const uint8_t *b, size_t n)
{
	struct raft_msg_decoded *d = NULL;
	int rv = raft_msg_decode(b, n, &d);
	if (rv == 0) {
		const struct raft_msg *m = &d->msg;
		assert_true(m->type >= 1 && m->type <= RAFT_MSG_TYPE_MAX);
		assert_true(m->from != 0 && m->to != 0);
		assert_int_equal(raft_msg_check(m), 0);
		for (uint32_t i = 0; i < m->n_entries; i++)
			assert_true(m->entries[i].index == m->index + 1 + i);
		raft_msg_decoded_free(d);
	} else {
		assert_int_equal(rv, CAIRN_EPROTO);
	}
}

static void test_garbage_never_crashes(void **state)
{
	(void)state;
	uint8_t junk[256];
	for (int k = 0; k < 20000; k++) {
		size_t n = rnd() % sizeof(junk);
		for (size_t i = 0; i < n; i++)
			junk[i] = (uint8_t)rnd();
		decode_any(junk, n);
	}
	decode_any(NULL, 0);
	/* Mutations of valid messages reach deeper into the parser. */
	uint8_t data[64] = {1, 2, 3};
	for (int k = 0; k < 3000; k++) {
		struct raft_msg m;
		struct raft_entry ents[8];
		fill(&m, ents, data, (uint8_t)(1 + rnd() % RAFT_MSG_TYPE_MAX));
		uint8_t *buf;
		size_t len;
		assert_int_equal(raft_msg_encode(&m, &buf, &len), 0);
		decode_any(buf, rnd() % (len + 1)); /* truncated */
		if (len) {
			for (int f = 0; f < 3; f++)
				buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
			decode_any(buf, len);
		}
		free(buf);
	}
}

/* Whatever decodes, the core digests without crashing: random messages of
 * every type into a leader and a follower (memory safety under ASan). */
static void test_core_survives_random_messages(void **state)
{
	(void)state;
	struct raft_conf conf = {.n_voters = 3, .voters = {1, 2, 3}};
	uint8_t data[64] = {0};
	for (uint64_t id = 1; id <= 2; id++) {
		struct raft_mem_storage *ms;
		assert_int_equal(raft_mem_storage_new(&ms), 0);
		struct raft_config cfg = {.id = id,
		                          .seed = id,
		                          .pre_vote = true,
		                          .check_quorum = true,
		                          .initial_conf = &conf};
		struct raft_storage st = raft_mem_storage_iface(ms);
		struct raft *r;
		assert_int_equal(raft_new(&cfg, &st, &r), 0);
		struct raft_update up;
		if (id == 1) {
			struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
			raft_step(r, &c, &up);
		}
		for (int k = 0; k < 20000; k++) {
			struct raft_msg m;
			struct raft_entry ents[8];
			fill(&m, ents, data, (uint8_t)(1 + rnd() % RAFT_MSG_TYPE_MAX));
			m.term %= 8;
			m.index %= 16;
			m.log_term %= 8;
			m.commit %= 24;
			m.to = id;
			for (uint32_t i = 0; i < m.n_entries; i++)
				ents[i].term = m.log_term + i / 2;
			struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
			raft_step(r, &ev, &up);
			assert_int_equal(raft_mem_storage_apply(ms, &up), 0);
			if (up.persist_seq && (rnd() & 1)) {
				struct raft_event p = {.type = RAFT_EVENT_PERSISTED,
				                       .persisted.seq = up.persist_seq};
				raft_step(r, &p, &up);
			}
			if (rnd() % 8 == 0) {
				struct raft_event t = {.type = RAFT_EVENT_TICK};
				raft_step(r, &t, &up);
			}
		}
		raft_free(r);
		raft_mem_storage_free(ms);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_every_type),
	    cmocka_unit_test(test_encode_rejects_bad_type),
	    cmocka_unit_test(test_decode_refuses_what_core_cannot_use),
	    cmocka_unit_test(test_garbage_never_crashes),
	    cmocka_unit_test(test_core_survives_random_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
