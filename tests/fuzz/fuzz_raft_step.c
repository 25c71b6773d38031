/*
 * fuzz_raft_step.c — libFuzzer target for what a hostile or broken peer can
 * send a member: bytes -> raft_msg_decode() (the peer transport's decoder,
 * server/cluster.c on_raft) -> raft_step() on a member of a small in-memory
 * 3-member cluster.
 *
 * Each input builds the cluster afresh (ids 1, 2, 3, synchronous storage on
 * raft_mem_storage, a perfect network) and drives it into a fixed state
 * chosen by the first byte, with member 1 as the target:
 *   bits 0-1  0/3 follower of leader 2, 1 candidate (its election lost in
 *             the network), 2 leader
 *   bit 2     the target's log is compacted (snapshot paths)
 *   bit 3     PreVote and CheckQuorum off
 * Entries 1..5 are committed everywhere first. The rest of the input is a
 * list of frames, each one opcode byte:
 *   0 (and 4..255 mod 4 == 0)  u16 length (LE) + that many bytes: a message
 *   1  a tick
 *   2  a proposal (leader only; an error otherwise)
 *   3  a read-index request
 * Decoded messages are stepped into member 1 whatever their `to`; what it
 * sends is dropped. Its storage completes every write at once (the member
 * reports PERSISTED, applies committed entries, reports APPLIED).
 *
 * After every step it checks what must hold whatever a peer sends:
 * raft_check() (the core's own invariants), no crash or sanitizer report,
 * the term and the commit index never decrease (in the core and in what it
 * asks to persist), committed entries are handed out in order, once, and
 * never change (an entry committed at index i keeps its term while it is in
 * the log, and an index handed out to apply is never handed out again
 * unless a snapshot replaced the state machine).
 *
 *   make fuzz-raft-step FUZZ_SECONDS=600
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"
#include "raft/raft_codec.h"
#include "tests/fuzz/fuzz_input.h"

#define N          3
#define MAX_COMMIT 4096 /* committed terms remembered (indexes beyond: unchecked) */

struct node {
	struct raft *r;
	struct raft_mem_storage *ms;
};

struct outq {
	struct raft_msg m;
	struct raft_entry *ents;
	void *snap_data;
};

static struct node nodes[N + 1];
static struct outq *q;
static size_t nq, capq;
static bool deliver_to_1; /* during setup: does the network reach member 1 */
static bool fuzzing;      /* setup is over: member 1's messages are dropped */

/* What the target member has done so far (checked invariants). */
static uint64_t last_term, last_commit, last_hs_term, last_hs_commit, emitted;
static uint64_t committed_term[MAX_COMMIT + 1];

#define FAIL(...) FUZZ_FAIL("fuzz_raft_step", __VA_ARGS__)

static void enqueue(const struct raft_update *up)
{
	for (size_t i = 0; i < up->n_msgs; i++) {
		if (nq == capq) {
			capq = capq ? 2 * capq : 64;
			q = realloc(q, capq * sizeof(*q));
			if (!q)
				abort();
		}
		struct outq *o = &q[nq++];
		o->m = up->msgs[i];
		o->ents = NULL;
		o->snap_data = NULL;
		if (o->m.n_entries) {
			/* Entries point into the sender's log: copy them. */
			o->ents = malloc(o->m.n_entries * sizeof(*o->ents));
			if (!o->ents)
				abort();
			for (uint32_t j = 0; j < o->m.n_entries; j++) {
				o->ents[j] = o->m.entries[j];
				void *d = NULL;
				if (o->ents[j].data.len) {
					d = malloc(o->ents[j].data.len);
					if (!d)
						abort();
					memcpy(d, o->ents[j].data.base, o->ents[j].data.len);
				}
				o->ents[j].data.base = d;
			}
			o->m.entries = o->ents;
		}
	}
}

static void free_out(struct outq *o)
{
	for (uint32_t j = 0; o->ents && j < o->m.n_entries; j++)
		free((void *)o->ents[j].data.base);
	free(o->ents);
	free(o->snap_data);
}

static int step(uint64_t id, const struct raft_event *ev);

/* The member's side of an update: persist at once, report it, apply. */
static void handle(uint64_t id, struct raft_update *up)
{
	struct node *n = &nodes[id];
	if (id == 1) {
		struct raft_status st;
		raft_get_status(n->r, &st);
		char buf[256];
		if (raft_check(n->r, buf, sizeof(buf)))
			FAIL("raft_check: %s", buf);
		if (st.term < last_term)
			FAIL("term went back from %llu to %llu", (unsigned long long)last_term,
			     (unsigned long long)st.term);
		if (st.commit < last_commit)
			FAIL("commit went back from %llu to %llu", (unsigned long long)last_commit,
			     (unsigned long long)st.commit);
		last_term = st.term;
		last_commit = st.commit;
		if (up->hard_state_changed) {
			if (up->hard_state.term < last_hs_term ||
			    up->hard_state.commit < last_hs_commit)
				FAIL("persisted hard state went back: term %llu commit %llu",
				     (unsigned long long)up->hard_state.term,
				     (unsigned long long)up->hard_state.commit);
			last_hs_term = up->hard_state.term;
			last_hs_commit = up->hard_state.commit;
		}
		if (up->snapshot) {
			if (up->snapshot->index < emitted)
				FAIL("snapshot at %llu below applied %llu",
				     (unsigned long long)up->snapshot->index,
				     (unsigned long long)emitted);
			emitted = up->snapshot->index;
		}
		for (size_t i = 0; i < up->n_committed; i++) {
			const struct raft_entry *e = &up->committed[i];
			if (e->index != emitted + 1)
				FAIL("committed entry %llu handed out after %llu",
				     (unsigned long long)e->index, (unsigned long long)emitted);
			emitted = e->index;
			if (e->index <= MAX_COMMIT) {
				if (committed_term[e->index] && committed_term[e->index] != e->term)
					FAIL("committed entry %llu changed term %llu -> %llu",
					     (unsigned long long)e->index,
					     (unsigned long long)committed_term[e->index],
					     (unsigned long long)e->term);
				committed_term[e->index] = e->term;
			}
		}
		/* Committed entries still in the log keep their term. */
		uint64_t hi = st.commit < MAX_COMMIT ? st.commit : MAX_COMMIT;
		for (uint64_t i = st.snap_index + 1; i <= hi; i++) {
			const struct raft_entry *e = raft_log_entry(n->r, i);
			if (e && committed_term[i] && e->term != committed_term[i])
				FAIL("committed entry %llu now has term %llu, was %llu",
				     (unsigned long long)i, (unsigned long long)e->term,
				     (unsigned long long)committed_term[i]);
		}
	}
	if (!fuzzing)
		enqueue(up);
	uint64_t seq = up->persist_seq;
	uint64_t applied = 0, snap = 0;
	if (up->snapshot)
		snap = up->snapshot->index;
	if (up->n_committed)
		applied = up->committed[up->n_committed - 1].index;
	if (seq && raft_mem_storage_apply(n->ms, up))
		FAIL("storage apply failed");
	/* *up dies with the next step: everything needed is copied above. */
	if (seq) {
		struct raft_event ev = {.type = RAFT_EVENT_PERSISTED};
		ev.persisted.seq = seq;
		step(id, &ev);
	}
	if (snap) {
		struct raft_event ev = {.type = RAFT_EVENT_SNAPSHOT_INSTALLED};
		ev.snapshot_installed.index = snap;
		step(id, &ev);
	}
	if (applied) {
		struct raft_event ev = {.type = RAFT_EVENT_APPLIED};
		ev.applied.index = applied;
		step(id, &ev);
	}
}

static int step(uint64_t id, const struct raft_event *ev)
{
	struct raft_update up;
	int rv = raft_step(nodes[id].r, ev, &up);
	handle(id, &up);
	return rv;
}

/* Delivers queued messages until the network is quiet (setup only). */
static void settle(void)
{
	for (int round = 0; round < 64 && nq; round++) {
		struct outq *batch = q;
		size_t nb = nq;
		q = NULL;
		nq = capq = 0;
		for (size_t i = 0; i < nb; i++) {
			struct outq *o = &batch[i];
			uint64_t to = o->m.to;
			if (to >= 1 && to <= N && (to != 1 || deliver_to_1)) {
				struct raft_event ev = {.type = RAFT_EVENT_RECEIVE};
				ev.receive.msg = &o->m;
				step(to, &ev);
			}
			free_out(o);
		}
		free(batch);
	}
}

static void tick_all(unsigned n)
{
	for (unsigned t = 0; t < n; t++)
		for (uint64_t id = 1; id <= N; id++) {
			struct raft_event ev = {.type = RAFT_EVENT_TICK};
			step(id, &ev);
		}
}

static void propose(uint64_t id, const char *data)
{
	struct raft_event ev = {.type = RAFT_EVENT_PROPOSE};
	ev.propose.type = RAFT_ENTRY_NORMAL;
	ev.propose.data.base = data;
	ev.propose.data.len = strlen(data);
	step(id, &ev);
}

static void campaign(uint64_t id)
{
	struct raft_event ev = {.type = RAFT_EVENT_CAMPAIGN};
	step(id, &ev);
}

static void setup(uint8_t mode)
{
	struct raft_conf conf = {.n_voters = N, .voters = {1, 2, 3}};
	bool safe = !(mode & 8);
	memset(committed_term, 0, sizeof(committed_term));
	last_term = last_commit = last_hs_term = last_hs_commit = emitted = 0;
	deliver_to_1 = true;
	fuzzing = false;
	for (uint64_t id = 1; id <= N; id++) {
		struct raft_config cfg = {.id = id,
		                          .election_ticks = 10,
		                          .heartbeat_ticks = 1,
		                          .seed = 42,
		                          .pre_vote = safe,
		                          .check_quorum = safe,
		                          .max_inflight = 16,
		                          .initial_conf = &conf};
		if (raft_mem_storage_new(&nodes[id].ms))
			abort();
		struct raft_storage st = raft_mem_storage_iface(nodes[id].ms);
		if (raft_new(&cfg, &st, &nodes[id].r))
			abort();
	}
	int role = mode & 3;
	uint64_t lead = role == 2 ? 1 : 2;
	campaign(lead);
	settle();
	for (int i = 0; i < 4; i++) {
		propose(lead, i % 2 ? "put a" : "put bb");
		settle();
	}
	tick_all(2); /* heartbeats carry the commit index to the followers */
	settle();
	if (mode & 4) {
		struct raft_status st;
		raft_get_status(nodes[1].r, &st);
		struct raft_snapshot_meta meta;
		if (st.applied > 2 &&
		    raft_snapshot_meta_at(nodes[1].r, st.applied - 1, &meta) == 0 &&
		    raft_compact(nodes[1].r, meta.index) == 0)
			raft_mem_storage_compact(nodes[1].ms, &meta);
	}
	if (role == 1) {
		/* Member 1 campaigns; nobody hears it. */
		deliver_to_1 = false;
		campaign(1);
		for (size_t i = 0; i < nq; i++)
			free_out(&q[i]);
		nq = 0;
	}
	settle();
	for (size_t i = 0; i < nq; i++)
		free_out(&q[i]);
	nq = 0;
	struct raft_status st;
	raft_get_status(nodes[1].r, &st);
	uint8_t want = role == 2 ? RAFT_LEADER : role == 1 ? RAFT_CANDIDATE : RAFT_FOLLOWER;
	if (st.role != want || st.commit < 5 || st.applied < 5)
		FAIL("setup: member 1 is %s with commit %llu applied %llu", raft_role_name(st.role),
		     (unsigned long long)st.commit, (unsigned long long)st.applied);
}

static void teardown(void)
{
	for (uint64_t id = 1; id <= N; id++) {
		raft_free(nodes[id].r);
		raft_mem_storage_free(nodes[id].ms);
		nodes[id].r = NULL;
		nodes[id].ms = NULL;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup(data[0]);
	fuzzing = true;
	size_t p = 1;
	uint64_t ctx = 0;
	while (p < size) {
		uint8_t op = data[p++] & 3;
		struct raft_event ev = {0};
		if (op == 0) {
			if (size - p < 2)
				break;
			size_t len = (size_t)data[p] | (size_t)data[p + 1] << 8;
			p += 2;
			if (len > size - p)
				len = size - p;
			struct raft_msg_decoded *d;
			if (raft_msg_decode(data + p, len, &d) == 0) {
				ev.type = RAFT_EVENT_RECEIVE;
				ev.receive.msg = &d->msg;
				step(1, &ev);
				raft_msg_decoded_free(d);
			}
			p += len;
		} else if (op == 1) {
			ev.type = RAFT_EVENT_TICK;
			step(1, &ev);
		} else if (op == 2) {
			ev.type = RAFT_EVENT_PROPOSE;
			ev.propose.type = RAFT_ENTRY_NORMAL;
			ev.propose.data.base = "fuzz";
			ev.propose.data.len = 4;
			step(1, &ev);
		} else {
			ev.type = RAFT_EVENT_READ_INDEX;
			ev.read_index.ctx = ++ctx;
			step(1, &ev);
		}
	}
	teardown();
	return 0;
}
