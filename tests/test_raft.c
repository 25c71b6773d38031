/* test_raft.c — one cmocka test per Raft rule of the core, each citing the
 * paper (§) or dissertation (D§) section it checks. Message-level rules
 * drive a single core by hand; cluster-level rules use the simulator with
 * a perfect network (tests/raft_sim.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
/* ASan serves malloc itself (glibc's counters stay still): ask it. */
size_t __sanitizer_get_current_allocated_bytes(void);
#define heap_in_use() __sanitizer_get_current_allocated_bytes()
#else
#include <malloc.h>
#define heap_in_use() mallinfo2().uordblks
#endif

#include "raft/raft.h"
#include "tests/raft_sim.h"

/* ------------------------------------------------------ single-core kit */

struct one {
	struct raft *r;
	struct raft_mem_storage *ms;
	struct raft_update up;
};

static const struct raft_conf conf3 = {.n_voters = 3, .voters = {1, 2, 3}};

/* Settings for the next one_open() (0 / NULL: defaults, conf3, seed 7). */
static unsigned kit_inflight;
static size_t kit_msg_bytes;
static size_t kit_inflight_bytes;
static const struct raft_conf *kit_conf;
static uint64_t kit_seed;

static void one_open(struct one *o, uint64_t id, bool pre_vote, bool check_quorum)
{
	struct raft_config cfg = {.id = id,
	                          .election_ticks = 10,
	                          .heartbeat_ticks = 1,
	                          .seed = kit_seed ? kit_seed : 7,
	                          .pre_vote = pre_vote,
	                          .check_quorum = check_quorum,
	                          .max_inflight = kit_inflight,
	                          .max_msg_bytes = kit_msg_bytes,
	                          .max_inflight_bytes = kit_inflight_bytes,
	                          .initial_conf = kit_conf ? kit_conf : &conf3};
	struct raft_storage st = raft_mem_storage_iface(o->ms);
	assert_int_equal(raft_new(&cfg, &st, &o->r), 0);
}

static void one_new(struct one *o, uint64_t id, bool pre_vote, bool check_quorum)
{
	memset(o, 0, sizeof(*o));
	assert_int_equal(raft_mem_storage_new(&o->ms), 0);
	one_open(o, id, pre_vote, check_quorum);
}

static void one_free(struct one *o)
{
	raft_free(o->r);
	raft_mem_storage_free(o->ms);
}

/* Steps, and writes the persist part to the in-memory disk at once (but
 * does not report it persisted: tests do that with one_persist()). */
static int one_step(struct one *o, const struct raft_event *ev)
{
	int rv = raft_step(o->r, ev, &o->up);
	assert_int_equal(raft_mem_storage_apply(o->ms, &o->up), 0);
	assert_int_equal(raft_check(o->r, NULL, 0), 0);
	return rv;
}

static void one_recv(struct one *o, const struct raft_msg *m)
{
	struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .receive.msg = m};
	assert_int_equal(one_step(o, &ev), 0);
}

static void one_persist(struct one *o, uint64_t seq)
{
	struct raft_event ev = {.type = RAFT_EVENT_PERSISTED, .persisted.seq = seq};
	assert_int_equal(one_step(o, &ev), 0);
}

/* An AppendEntries ack of the current term from a follower to leader 1. */
static void one_ack(struct one *o, uint64_t from, uint64_t index)
{
	struct raft_status st;
	raft_get_status(o->r, &st);
	struct raft_msg m = {
	    .type = RAFT_MSG_APPEND_RESP, .from = from, .to = 1, .term = st.term, .index = index};
	one_recv(o, &m);
}

static void one_tick(struct one *o, unsigned n)
{
	struct raft_event ev = {.type = RAFT_EVENT_TICK};
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(one_step(o, &ev), 0);
}

static const struct raft_msg *find_msg(const struct raft_update *up, uint8_t type, uint64_t to)
{
	for (size_t i = 0; i < up->n_msgs; i++)
		if (up->msgs[i].type == type && (to == 0 || up->msgs[i].to == to))
			return &up->msgs[i];
	return NULL;
}

static unsigned count_msgs(const struct raft_update *up, uint8_t type, uint64_t to)
{
	unsigned n = 0;
	for (size_t i = 0; i < up->n_msgs; i++)
		n += up->msgs[i].type == type && up->msgs[i].to == to;
	return n;
}

static void propose_one(struct one *o)
{
	struct raft_event p = {.type = RAFT_EVENT_PROPOSE};
	p.propose.data = (struct raft_buf){"12345678", 8};
	assert_int_equal(one_step(o, &p), 0);
}

static struct raft_status status(struct raft *r)
{
	struct raft_status st;
	raft_get_status(r, &st);
	return st;
}

/* Campaigns (skipping PreVote) and wins with member 2's vote. */
static void one_elect(struct one *o)
{
	struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
	assert_int_equal(one_step(o, &c), 0);
	one_persist(o, o->up.persist_seq);
	struct raft_msg g = {
	    .type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = status(o->r).term};
	one_recv(o, &g);
	assert_int_equal(status(o->r).role, RAFT_LEADER);
}

static void sim_elect(struct sim *s, uint64_t id)
{
	struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
	sim_step(s, id, &c);
	assert_int_equal(sim_stabilize(s), 0);
	assert_int_equal(sim_leader(s), id);
}

/* Appends entries of the given terms to a follower from leader 2. */
static void feed(struct one *o, uint64_t term, uint64_t prev, uint64_t prev_term,
                 const uint64_t *terms, unsigned n, uint64_t commit)
{
	struct raft_entry e[8];
	for (unsigned i = 0; i < n; i++)
		e[i] = (struct raft_entry){.term = terms[i], .index = prev + 1 + i};
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
	                     .from = 2,
	                     .to = o->r ? status(o->r).id : 1,
	                     .term = term,
	                     .index = prev,
	                     .log_term = prev_term,
	                     .commit = commit,
	                     .n_entries = n,
	                     .entries = e};
	one_recv(o, &m);
}

/* ------------------------------------------------------------ elections */

/* §5.2: "Each server will vote for at most one candidate in a given term,
 * on a first-come-first-served basis." Figure 2: the vote is persisted
 * before the reply leaves. */
static void test_vote_once_per_term_and_persisted_first(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 1, .term = 5};
	one_recv(&o, &v);
	assert_null(find_msg(&o.up, RAFT_MSG_VOTE_RESP, 2)); /* held: not durable yet */
	assert_true(o.up.hard_state_changed);
	assert_int_equal(o.up.hard_state.vote, 2);
	assert_int_equal(o.up.hard_state.term, 5);
	uint64_t seq = o.up.persist_seq;
	assert_true(seq > 0);
	one_persist(&o, seq);
	const struct raft_msg *r = find_msg(&o.up, RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(r);
	assert_false(r->reject);
	v.from = 3;
	one_recv(&o, &v);
	r = find_msg(&o.up, RAFT_MSG_VOTE_RESP, 3);
	assert_non_null(r);
	assert_true(r->reject);
	one_free(&o);
}

/* §5.4.1: "the voter denies its vote if its own log is more up-to-date
 * than that of the candidate." */
static void test_vote_requires_up_to_date_log(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	uint64_t t[] = {1, 2};
	feed(&o, 2, 0, 0, t, 2, 0);
	/* Candidate with last entry (5, term 1): older last term. */
	struct raft_msg v = {
	    .type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 3, .index = 5, .log_term = 1};
	one_recv(&o, &v);
	const struct raft_msg *r = find_msg(&o.up, RAFT_MSG_VOTE_RESP, 3);
	assert_non_null(r);
	assert_true(r->reject);
	/* Same last term, shorter log: rejected too. */
	v.term = 4;
	v.index = 1;
	v.log_term = 2;
	one_recv(&o, &v);
	assert_true(find_msg(&o.up, RAFT_MSG_VOTE_RESP, 3)->reject);
	/* Same last term, as long: granted (after persisting). */
	v.term = 5;
	v.index = 2;
	one_recv(&o, &v);
	one_persist(&o, o.up.persist_seq);
	assert_false(find_msg(&o.up, RAFT_MSG_VOTE_RESP, 3)->reject);
	one_free(&o);
}

/* D§9.6: PreVote — "a candidate would first ask other servers whether its
 * log was up-to-date enough to get their vote"; it does not increment its
 * term, so an isolated member does not inflate terms. */
static void test_prevote_does_not_bump_term(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, true, false);
	uint64_t term0 = status(o.r).term;
	one_tick(&o, 100); /* isolated: nobody answers */
	assert_int_equal(status(o.r).term, term0);
	assert_int_equal(status(o.r).role, RAFT_PRE_CANDIDATE);
	/* The pre-vote requests carry term+1 but nothing was persisted. */
	one_tick(&o, 20);
	one_free(&o);
}

/* D§4.2.3: "if a server receives a RequestVote request within the minimum
 * election timeout of hearing from a current leader, it does not update
 * its term or grant its vote." */
static void test_leader_lease_ignores_votes(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, true, true);
	uint64_t t[] = {1};
	feed(&o, 1, 0, 0, t, 1, 0);
	struct raft_msg v = {
	    .type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 9, .index = 10, .log_term = 5};
	one_recv(&o, &v);
	assert_int_equal(status(o.r).term, 1);
	assert_null(find_msg(&o.up, RAFT_MSG_VOTE_RESP, 0));
	/* A transfer (TimeoutNow) campaign overrides the lease (D§3.10). */
	v.transfer = true;
	one_recv(&o, &v);
	assert_int_equal(status(o.r).term, 9);
	one_free(&o);
}

/* D§6.2: "a leader steps down if an election timeout elapses without a
 * successful round of heartbeats to a majority of its cluster." */
static void test_check_quorum_leader_steps_down(void **state)
{
	(void)state;
	struct sim s;
	struct sim_opts opt = {.n = 3, .seed = 1, .pre_vote = true, .check_quorum = true};
	assert_int_equal(sim_init(&s, &opt), 0);
	sim_elect(&s, 1);
	for (unsigned i = 2; i <= 3; i++) {
		sim_cut(&s, 1, i, true);
		sim_cut(&s, i, 1, true);
	}
	for (unsigned k = 0; k < 2 * 10 + 1; k++)
		assert_int_equal(sim_tick(&s), 0);
	assert_int_equal(status(s.nodes[1].r).role, RAFT_FOLLOWER);
	sim_fini(&s);
}

/* ---------------------------------------------------------- terms (§5.1) */

/* §5.1: "If a candidate or leader discovers that its term is out of date,
 * it immediately reverts to follower state. If a server receives a request
 * with a stale term number, it rejects the request." Figure 2, Rules for
 * Servers: a term T > currentTerm in any RPC request or response sets
 * currentTerm = T (with no vote in it) and converts to follower. */
static void test_higher_term_steps_down_stale_term_rejected(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o); /* leader of term 1 */
	one_persist(&o, o.up.persist_seq);
	struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP,
	                        .from = 3,
	                        .to = 1,
	                        .term = 4,
	                        .index = 1,
	                        .reject = true};
	one_recv(&o, &resp); /* a response of a later term */
	struct raft_status st = status(o.r);
	assert_int_equal(st.role, RAFT_FOLLOWER);
	assert_int_equal(st.term, 4);
	assert_int_equal(st.vote, RAFT_NONE);
	assert_int_equal(st.leader, RAFT_NONE);
	assert_true(o.up.hard_state_changed);
	assert_int_equal(o.up.hard_state.term, 4);
	/* Requests of term 2 < 4: no vote, no entries, no ack. */
	struct raft_msg v = {
	    .type = RAFT_MSG_VOTE, .from = 2, .to = 1, .term = 2, .index = 9, .log_term = 2};
	one_recv(&o, &v);
	const struct raft_msg *vr = find_msg(&o.up, RAFT_MSG_VOTE_RESP, 2);
	assert_true(vr == NULL || vr->reject);
	uint64_t t2[] = {2};
	feed(&o, 2, 1, 1, t2, 1, 1);
	assert_null(find_msg(&o.up, RAFT_MSG_APPEND_RESP, 2));
	st = status(o.r);
	assert_int_equal(st.term, 4);
	assert_int_equal(st.vote, RAFT_NONE);
	assert_int_equal(st.last_index, 1);
	assert_int_equal(st.leader, RAFT_NONE);
	one_free(&o);

	/* With CheckQuorum the refusal is an answer carrying the newer term,
	 * so a deposed leader learns it (it may never hear a vote request
	 * when PreVote fails everywhere: etcd's "stale leader" case). */
	one_new(&o, 1, false, true);
	struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 3, .to = 1, .term = 4};
	one_recv(&o, &hb);
	assert_int_equal(status(o.r).term, 4);
	assert_int_equal(status(o.r).leader, 3);
	feed(&o, 2, 0, 0, t2, 1, 0);
	const struct raft_msg *a = find_msg(&o.up, RAFT_MSG_APPEND_RESP, 2);
	assert_non_null(a);
	assert_int_equal(a->term, 4);
	assert_int_equal(status(o.r).last_index, 0);
	one_free(&o);

	/* §5.2: a candidate that hears AppendEntries from a leader of its own
	 * term "recognizes the leader as legitimate and returns to follower
	 * state". */
	one_new(&o, 1, false, false);
	struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
	assert_int_equal(one_step(&o, &c), 0);
	assert_int_equal(status(o.r).role, RAFT_CANDIDATE);
	hb = (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 1};
	one_recv(&o, &hb);
	assert_int_equal(status(o.r).role, RAFT_FOLLOWER);
	assert_int_equal(status(o.r).leader, 2);
	assert_int_equal(status(o.r).term, 1);
	one_free(&o);
}

/* §5.2: "Raft uses randomized election timeouts to ensure that split votes
 * are rare ... election timeouts are chosen randomly from a fixed interval
 * (e.g., 150-300ms)". Here [et, 2et) ticks, as in etcd, drawn afresh for
 * each election ("each candidate restarts its randomized election timeout
 * at the start of an election"). */
static void test_election_timeout_randomized(void **state)
{
	(void)state;
	unsigned lo = ~0u, hi = 0, counts[20] = {0};
	for (uint64_t seed = 1; seed <= 200; seed++) {
		struct one o;
		kit_seed = seed;
		one_new(&o, 1, false, false);
		kit_seed = 0;
		for (unsigned round = 0; round < 2; round++) {
			uint64_t term = status(o.r).term;
			unsigned n = 0;
			while (status(o.r).term == term && n < 40) {
				one_tick(&o, 1);
				n++;
			}
			assert_int_equal(status(o.r).role, RAFT_CANDIDATE);
			assert_true(n >= 10 && n < 20);
			counts[n]++;
			lo = n < lo ? n : lo;
			hi = n > hi ? n : hi;
		}
		one_free(&o);
	}
	/* 400 draws from 10 values: every one of them turns up. */
	assert_int_equal(lo, 10);
	assert_int_equal(hi, 19);
	for (unsigned n = 10; n < 20; n++)
		assert_true(counts[n] > 0);
}

/* §5.2 with Figure 2's "Persistent state ... updated on stable storage
 * before responding to RPCs": a candidate asks for votes only once its new
 * term and its vote for itself are durable. One that asked, crashed and
 * came back without them could vote for another candidate in the same
 * term, and that term could have two leaders. (PreVote requests change no
 * state and go at once.) */
static void test_vote_request_leaves_after_term_persisted(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	while (status(o.r).role != RAFT_CANDIDATE)
		one_tick(&o, 1);
	assert_true(o.up.hard_state_changed);
	assert_int_equal(o.up.hard_state.term, 1);
	assert_int_equal(o.up.hard_state.vote, 1);
	uint64_t seq = o.up.persist_seq;
	assert_true(seq > 0);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_VOTE, 2) + count_msgs(&o.up, RAFT_MSG_VOTE, 3),
	                 0);
	one_tick(&o, 1);
	assert_null(find_msg(&o.up, RAFT_MSG_VOTE, 0));
	one_persist(&o, seq);
	const struct raft_msg *v = find_msg(&o.up, RAFT_MSG_VOTE, 2);
	assert_non_null(v);
	assert_int_equal(v->term, 1);
	assert_non_null(find_msg(&o.up, RAFT_MSG_VOTE, 3));
	one_free(&o);

	one_new(&o, 1, true, false);
	while (status(o.r).role != RAFT_PRE_CANDIDATE)
		one_tick(&o, 1);
	assert_int_equal(o.up.persist_seq, 0);
	assert_non_null(find_msg(&o.up, RAFT_MSG_PRE_VOTE, 2));
	assert_non_null(find_msg(&o.up, RAFT_MSG_PRE_VOTE, 3));
	one_free(&o);
}

/* -------------------------------------------------------- replication */

/* §5.3 / Figure 2 AppendEntries rules 2-4: reject on mismatch (with a
 * conflict hint), delete a conflicting suffix, append new entries; the ack
 * leaves only once the entries are durable (persist-before-send). */
static void test_append_truncates_conflict_and_acks_after_persist(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	uint64_t t1[] = {1, 1, 1};
	feed(&o, 1, 0, 0, t1, 3, 0);
	assert_null(find_msg(&o.up, RAFT_MSG_APPEND_RESP, 2)); /* not yet durable */
	assert_int_equal(o.up.n_entries, 3);
	one_persist(&o, o.up.persist_seq);
	const struct raft_msg *a = find_msg(&o.up, RAFT_MSG_APPEND_RESP, 2);
	assert_non_null(a);
	assert_false(a->reject);
	assert_int_equal(a->index, 3);
	/* Leader of term 3 has (2, t1) (3, t3): entry 3 conflicts. */
	uint64_t t3[] = {3};
	feed(&o, 3, 2, 1, t3, 1, 0);
	assert_int_equal(o.up.truncate_from, 3);
	assert_int_equal(o.up.n_entries, 1);
	assert_int_equal(o.up.entries[0].term, 3);
	uint64_t tt;
	assert_int_equal(raft_log_term(o.r, 3, &tt), 0);
	assert_int_equal(tt, 3);
	/* Mismatch at (5, t3): reject with hint = our last index. */
	feed(&o, 3, 5, 3, NULL, 0, 0);
	a = find_msg(&o.up, RAFT_MSG_APPEND_RESP, 2);
	assert_non_null(a);
	assert_true(a->reject);
	assert_int_equal(a->reject_hint, 3);
	assert_int_equal(a->log_term, 3);
	one_free(&o);
}

/* §5.4.2 / Figure 8: "Raft never commits log entries from previous terms by
 * counting replicas. Only log entries from the leader's current term are
 * committed by counting replicas." */
static void test_commit_only_current_term_figure8(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	/* Our log: (1, t1) (2, t2) from earlier leaders; now term 2. */
	uint64_t t[] = {1, 2};
	feed(&o, 2, 0, 0, t, 2, 1);
	one_persist(&o, o.up.persist_seq);
	/* Win an election for term 3 (§5.2), then 4 after losing it. */
	one_elect(&o);
	assert_int_equal(status(o.r).role, RAFT_LEADER);
	uint64_t noop = status(o.r).last_index; /* index 3, term 3 */
	assert_int_equal(noop, 3);

	one_persist(&o, o.up.persist_seq);
	/* Follower 2 acknowledges only index 2 (a term-2 entry): with us that
	 * is a majority of replicas, but it must not be committed. */
	struct raft_msg ack = {
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 3, .index = 2};
	one_recv(&o, &ack);
	assert_int_equal(status(o.r).commit, 1);
	/* Once the term-3 entry is on a majority, everything up to it is. */
	ack.index = 3;
	one_recv(&o, &ack);
	assert_int_equal(status(o.r).commit, 3);
	one_free(&o);
}

/* D§10.2.1: "the leader may write to its disk in parallel" with sending
 * AppendEntries, but counts itself only once its own write is durable. */
static void test_leader_counts_itself_only_when_persisted(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o);
	assert_int_equal(status(o.r).role, RAFT_LEADER);
	uint64_t seq = o.up.persist_seq;
	/* AppendEntries left before the local write completed. */
	assert_non_null(find_msg(&o.up, RAFT_MSG_APPEND, 2));
	/* Follower 3 alone acks: 1 of 3 durable copies, no commit. */
	struct raft_msg ack = {
	    .type = RAFT_MSG_APPEND_RESP, .from = 3, .to = 1, .term = 1, .index = 1};
	one_recv(&o, &ack);
	assert_int_equal(status(o.r).commit, 0);
	one_persist(&o, seq);
	assert_int_equal(status(o.r).commit, 1);
	one_free(&o);
}

/* Figure 2 "persistent state ... updated on stable storage before
 * responding": a member restarted from its storage keeps term, vote and
 * log. */
static void test_restart_recovers_persistent_state(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	uint64_t t[] = {1, 1};
	feed(&o, 1, 0, 0, t, 2, 2);
	struct raft_msg v = {
	    .type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 4, .index = 9, .log_term = 9};
	one_recv(&o, &v);
	raft_free(o.r);
	one_open(&o, 1, false, false);
	struct raft_status st = status(o.r);
	assert_int_equal(st.term, 4);
	assert_int_equal(st.vote, 3);
	assert_int_equal(st.last_index, 2);
	assert_int_equal(st.commit, 2);
	one_free(&o);
}

/* Flow control (etcd's progress tracker; D§10.2.2 pipelining): a follower
 * in probe state gets one AppendEntries at a time; once it acknowledges,
 * the leader pipelines up to max_inflight messages and sends more only as
 * acknowledgements free the window. */
static void test_flow_control_probe_then_pipeline(void **state)
{
	(void)state;
	struct one o;
	kit_inflight = 2;
	kit_msg_bytes = 8; /* one 8-byte entry per message */
	one_new(&o, 1, false, false);
	kit_inflight = 0;
	kit_msg_bytes = 0;
	one_elect(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1); /* the no-op, probing */
	propose_one(&o);
	propose_one(&o);
	propose_one(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 0); /* probe: paused */
	struct raft_msg ack = {
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 1, .index = 1};
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 2); /* window of 2 */
	assert_int_equal(o.up.msgs[0].n_entries, 1);
	ack.index = 2;
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1); /* one slot freed */
	ack.index = 4;
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 0); /* up to date */
	one_free(&o);
}

/* Flow control by bytes (etcd-raft's Config.MaxInflightBytes, which bounds
 * the bandwidth-delay product of the pipeline of D§10.2.2): a leader
 * replicating to a follower stops sending entries once the entry bytes in
 * flight reach max_inflight_bytes, though the message window
 * (max_inflight) has room, and sends again as acknowledgements free bytes.
 * A message may cross the bound: an entry larger than it still goes out
 * alone when nothing is in flight. */
static void test_flow_control_inflight_bytes(void **state)
{
	(void)state;
	struct one o;
	kit_msg_bytes = 8;       /* one 8-byte entry per message */
	kit_inflight_bytes = 16; /* two of them */
	one_new(&o, 1, false, false);
	kit_msg_bytes = 0;
	kit_inflight_bytes = 0;
	one_elect(&o);
	struct raft_msg ack = {
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 1, .index = 1};
	one_recv(&o, &ack); /* the no-op: 2 moves to replicate state */
	propose_one(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1); /* 8 bytes in flight */
	propose_one(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1); /* 16: at the bound */
	propose_one(&o);
	propose_one(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 0); /* paused by bytes */
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 3), 0); /* 3 still probing */
	ack.index = 2; /* frees entry 2's 8 bytes: entry 4 goes, then full again */
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1);
	const struct raft_msg *a = find_msg(&o.up, RAFT_MSG_APPEND, 2);
	assert_int_equal(a->index, 3);
	assert_int_equal(a->n_entries, 1);
	ack.index = 4; /* frees 16 bytes: entry 5 */
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1);
	assert_int_equal(find_msg(&o.up, RAFT_MSG_APPEND, 2)->index, 4);
	ack.index = 5; /* nothing in flight */
	one_recv(&o, &ack);
	/* An entry of 32 bytes, twice the bound, still leaves, alone. */
	struct raft_event p = {.type = RAFT_EVENT_PROPOSE};
	p.propose.data = (struct raft_buf){"0123456789abcdef0123456789abcdef", 32};
	assert_int_equal(one_step(&o, &p), 0);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1);
	propose_one(&o);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 0);
	ack.index = 6;
	one_recv(&o, &ack);
	assert_int_equal(count_msgs(&o.up, RAFT_MSG_APPEND, 2), 1);
	assert_int_equal(find_msg(&o.up, RAFT_MSG_APPEND, 2)->index, 6);
	one_free(&o);
}

/* §5.3 optimization: "the follower can include the term of the conflicting
 * entry and the first index it stores for that term"; the leader then
 * skips all conflicting entries of that term in one round trip. */
static void test_leader_fast_backtracking(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	uint64_t t[] = {1, 1, 1, 4, 4};
	feed(&o, 4, 0, 0, t, 5, 0);
	one_persist(&o, o.up.persist_seq);
	one_elect(&o); /* term 5, no-op at 6 */
	const struct raft_msg *a = find_msg(&o.up, RAFT_MSG_APPEND, 2);
	assert_non_null(a);
	assert_int_equal(a->index, 5);
	/* Follower 2 holds 1..3 of term 1 then entries of terms 2-3: its
	 * hint is index 3, term 1. */
	struct raft_msg rej = {.type = RAFT_MSG_APPEND_RESP,
	                       .from = 2,
	                       .to = 1,
	                       .term = 5,
	                       .index = 5,
	                       .reject = true,
	                       .reject_hint = 3,
	                       .log_term = 1};
	one_recv(&o, &rej);
	a = find_msg(&o.up, RAFT_MSG_APPEND, 2);
	assert_non_null(a);
	assert_int_equal(a->index, 3);
	assert_int_equal(a->log_term, 1);
	assert_int_equal(a->n_entries, 3);
	/* A stale rejection (for a probe no longer outstanding) is ignored. */
	one_recv(&o, &rej);
	assert_null(find_msg(&o.up, RAFT_MSG_APPEND, 2));
	one_free(&o);
}

/* Figure 2, AppendEntries receiver rule 5: "If leaderCommit > commitIndex,
 * set commitIndex = min(leaderCommit, index of last new entry)". The last
 * new entry is the last one this message vouches for, not the end of the
 * log: entries after it may be another leader's. */
static void test_append_commit_min_of_leader_commit_and_last_new(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	uint64_t t1[] = {1, 1, 1};
	feed(&o, 1, 0, 0, t1, 3, 1);
	assert_int_equal(status(o.r).commit, 1); /* leaderCommit is the min */
	/* A leader of term 2 vouches for entry 1 only: commit stays 1 though
	 * our log holds 3 entries and it says 3 are committed. */
	feed(&o, 2, 1, 1, NULL, 0, 3);
	assert_int_equal(status(o.r).commit, 1);
	/* Its entry 2 replaces ours: now 2 is the last new entry. */
	uint64_t t2[] = {2};
	feed(&o, 2, 1, 1, t2, 1, 3);
	assert_int_equal(status(o.r).last_index, 2);
	assert_int_equal(status(o.r).commit, 2);
	one_free(&o);
}

/* A heartbeat carries no entries, so nothing in it vouches for the
 * follower's log: the leader sends each follower min(commit, its match
 * index) (etcd does the same), and a follower ignores a commit beyond its
 * log. Otherwise a follower still holding another leader's entry at a
 * committed index (its log may differ from the leader's after match,
 * §5.3) would commit that entry. */
static void test_heartbeat_commit_clamped_to_match(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o);
	propose_one(&o);
	propose_one(&o);
	one_persist(&o, o.up.persist_seq);
	one_ack(&o, 3, 3);
	assert_int_equal(status(o.r).commit, 3);
	one_ack(&o, 2, 1);
	one_tick(&o, 1); /* heartbeat_ticks = 1 */
	const struct raft_msg *h2 = find_msg(&o.up, RAFT_MSG_HEARTBEAT, 2);
	const struct raft_msg *h3 = find_msg(&o.up, RAFT_MSG_HEARTBEAT, 3);
	assert_non_null(h2);
	assert_non_null(h3);
	assert_int_equal(h2->commit, 1);
	assert_int_equal(h3->commit, 3);
	one_free(&o);

	one_new(&o, 1, false, false);
	uint64_t t1[] = {1, 1};
	feed(&o, 1, 0, 0, t1, 2, 0);
	struct raft_msg hb = {
	    .type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 1, .commit = 5};
	one_recv(&o, &hb);
	assert_int_equal(status(o.r).commit, 0);
	hb.commit = 2;
	one_recv(&o, &hb);
	assert_int_equal(status(o.r).commit, 2);
	one_free(&o);
}

/* ------------------------------------------------------------ ReadIndex */

/* D§6.4: the leader serves a read only after (1) it committed an entry of
 * its term and (2) a quorum answered a heartbeat sent after the request. */
static void test_read_index_rules(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o);
	one_persist(&o, o.up.persist_seq);
	struct raft_event rd = {.type = RAFT_EVENT_READ_INDEX, .read_index.ctx = 42};
	assert_int_equal(one_step(&o, &rd), 0);
	assert_int_equal(o.up.n_reads, 0); /* no entry of term 1 committed yet */
	struct raft_msg ack = {
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 1, .index = 1};
	one_recv(&o, &ack);
	assert_int_equal(status(o.r).commit, 1);
	assert_int_equal(o.up.n_reads, 0); /* leadership not confirmed yet */
	const struct raft_msg *hb = find_msg(&o.up, RAFT_MSG_HEARTBEAT, 3);
	assert_non_null(hb);
	struct raft_msg hr = {
	    .type = RAFT_MSG_HEARTBEAT_RESP, .from = 3, .to = 1, .term = 1, .ctx = hb->ctx};
	one_recv(&o, &hr);
	assert_int_equal(o.up.n_reads, 1);
	assert_int_equal(o.up.reads[0].ctx, 42);
	assert_int_equal(o.up.reads[0].index, 1);
	assert_int_equal(o.up.reads[0].status, 0);
	/* Followers with no leader refuse; with a leader they forward. */
	struct one f;
	one_new(&f, 2, false, false);
	assert_int_equal(one_step(&f, &rd), CAIRN_ENOLEADER);
	one_free(&f);
	one_free(&o);
}

/* D§6.4: an isolated (stale) leader cannot confirm leadership: no read. */
static void test_read_index_isolated_leader_never_answers(void **state)
{
	(void)state;
	struct sim s;
	struct sim_opts opt = {.n = 3, .seed = 3, .pre_vote = true, .check_quorum = true};
	assert_int_equal(sim_init(&s, &opt), 0);
	sim_elect(&s, 1);
	for (unsigned i = 2; i <= 3; i++) {
		sim_cut(&s, 1, i, true);
		sim_cut(&s, i, 1, true);
	}
	uint64_t before = s.n_reads_ok;
	assert_int_equal(sim_read(&s, 1), 0);
	for (unsigned k = 0; k < 50; k++)
		assert_int_equal(sim_tick(&s), 0);
	assert_int_equal(s.n_reads_ok, before);
	sim_fini(&s);
}

/* D§6.4: a leader serves a read only while it is sure it still leads. One
 * that steps down with reads pending fails them at once, a local one with
 * CAIRN_ELEADERCHANGED and a forwarded one with a refusing ReadIndex
 * answer, which the follower reports the same way, rather than leave
 * clients waiting for a confirmation that cannot come (etcd does the
 * same). */
static void test_read_index_pending_fail_on_step_down(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o);
	one_persist(&o, o.up.persist_seq);
	one_ack(&o, 2, 1); /* an entry of its term is committed */
	struct raft_event rd = {.type = RAFT_EVENT_READ_INDEX, .read_index.ctx = 42};
	assert_int_equal(one_step(&o, &rd), 0);
	assert_int_equal(o.up.n_reads, 0); /* waits for a heartbeat round */
	struct raft_msg fwd = {
	    .type = RAFT_MSG_READ_INDEX, .from = 3, .to = 1, .term = 1, .ctx = 77};
	one_recv(&o, &fwd);
	assert_null(find_msg(&o.up, RAFT_MSG_READ_INDEX_RESP, 3));
	struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 5};
	one_recv(&o, &hb); /* a leader of term 5: we step down */
	assert_int_equal(status(o.r).role, RAFT_FOLLOWER);
	assert_int_equal(o.up.n_reads, 1);
	assert_int_equal(o.up.reads[0].ctx, 42);
	assert_int_equal(o.up.reads[0].status, CAIRN_ELEADERCHANGED);
	const struct raft_msg *r = find_msg(&o.up, RAFT_MSG_READ_INDEX_RESP, 3);
	assert_non_null(r);
	assert_int_equal(r->ctx, 77);
	assert_true(r->reject);
	one_free(&o);

	struct one f;
	one_new(&f, 3, false, false);
	struct raft_msg refused = {.type = RAFT_MSG_READ_INDEX_RESP,
	                           .from = 1,
	                           .to = 3,
	                           .term = 1,
	                           .ctx = 77,
	                           .reject = true};
	one_recv(&f, &refused);
	assert_int_equal(f.up.n_reads, 1);
	assert_int_equal(f.up.reads[0].ctx, 77);
	assert_int_equal(f.up.reads[0].status, CAIRN_ELEADERCHANGED);
	one_free(&f);
}

/* ------------------------------------------------ transfer, membership */

static bool is_voter(struct sim *s, uint64_t at, uint64_t id)
{
	struct raft_status st = status(s->nodes[at].r);
	return raft_conf_is_voter(&st.conf, id);
}

static bool is_learner(struct sim *s, uint64_t at, uint64_t id)
{
	struct raft_status st = status(s->nodes[at].r);
	return raft_conf_is_learner(&st.conf, id);
}

/* D§3.10: the leader brings the target up to date, sends TimeoutNow, the
 * target campaigns at once and wins; proposals are refused meanwhile. */
static void test_leader_transfer(void **state)
{
	(void)state;
	struct sim s;
	struct sim_opts opt = {.n = 3, .seed = 5, .pre_vote = true, .check_quorum = true};
	assert_int_equal(sim_init(&s, &opt), 0);
	sim_elect(&s, 1);
	assert_int_equal(sim_propose(&s, 1, NULL, 0), 0);
	struct raft_event t = {.type = RAFT_EVENT_TRANSFER, .transfer.to = 3};
	/* Hold the network so the transfer is observably in progress. */
	assert_int_equal(sim_step(&s, 1, &t), 0);
	assert_int_equal(sim_propose(&s, 1, NULL, 0), CAIRN_EPROPOSALDROPPED);
	assert_int_equal(sim_stabilize(&s), 0);
	assert_int_equal(sim_leader(&s), 3);
	assert_int_equal(status(s.nodes[1].r).role, RAFT_FOLLOWER);
	sim_fini(&s);
}

/* D§4.1: single-server changes, one at a time; a leader proposes one only
 * after committing an entry of its term (the fix to D§4.1 posted to
 * raft-dev in 2015; see test_conf_change_waits_for_commit_in_term); learners do not
 * count in quorums (D§4.2.1) and are promoted later. Configurations take
 * effect when applied. */
static void test_membership_one_at_a_time(void **state)
{
	(void)state;
	struct sim s;
	struct sim_opts opt = {.n = 3, .seed = 9, .pre_vote = true, .check_quorum = true};
	assert_int_equal(sim_init(&s, &opt), 0);
	sim_elect(&s, 1);
	uint64_t id = sim_add_node(&s);
	assert_int_equal(id, 4);
	assert_int_equal(sim_conf_change(&s, 1, RAFT_CC_ADD_LEARNER, 4), 0);
	/* A second change while the first is not applied: refused. */
	assert_int_equal(sim_conf_change(&s, 1, RAFT_CC_REMOVE, 3), CAIRN_ECONFCHANGE);
	assert_true(is_voter(&s, 1, 3));
	assert_false(is_learner(&s, 1, 4)); /* not applied */
	assert_int_equal(sim_stabilize(&s), 0);
	assert_true(is_learner(&s, 1, 4));
	assert_true(is_learner(&s, 4, 4));
	assert_int_equal(status(s.nodes[4].r).commit, status(s.nodes[1].r).commit);
	assert_int_equal(sim_conf_change(&s, 1, RAFT_CC_PROMOTE, 4), 0);
	assert_int_equal(sim_stabilize(&s), 0);
	assert_true(is_voter(&s, 2, 4));
	/* Remove the leader itself: it steps down once the removal applies. */
	assert_int_equal(sim_conf_change(&s, 1, RAFT_CC_REMOVE, 1), 0);
	assert_int_equal(sim_stabilize(&s), 0);
	assert_int_equal(status(s.nodes[1].r).role, RAFT_FOLLOWER);
	assert_false(is_voter(&s, 2, 1));
	sim_crash(&s, 1);
	s.nodes[1].state = SIM_GONE;
	for (unsigned k = 0; k < 60 && !sim_has_stable_leader(&s); k++)
		assert_int_equal(sim_tick(&s), 0);
	assert_true(sim_has_stable_leader(&s));
	assert_int_not_equal(sim_leader(&s), 1);
	sim_fini(&s);
}

/* D§4.2.1: a new server joins "as a non-voting member": a learner receives
 * the log but never campaigns, and neither its vote nor its copy of an
 * entry counts toward a quorum (etcd's learners). */
static void test_learner_never_campaigns_nor_counts(void **state)
{
	(void)state;
	static const struct raft_conf conf3l = {
	    .n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {4}};
	struct one o;
	kit_conf = &conf3l;
	one_new(&o, 4, true, true);
	kit_conf = NULL;
	one_tick(&o, 100);
	assert_int_equal(status(o.r).role, RAFT_FOLLOWER);
	assert_int_equal(status(o.r).term, 0);
	assert_int_equal(o.up.n_msgs, 0);
	struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
	assert_int_equal(one_step(&o, &c), CAIRN_EINVAL);
	struct raft_msg tn = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 4};
	one_recv(&o, &tn);
	assert_int_equal(status(o.r).role, RAFT_FOLLOWER);
	assert_int_equal(status(o.r).term, 0);
	one_free(&o);

	kit_conf = &conf3l;
	one_new(&o, 1, false, false);
	kit_conf = NULL;
	assert_int_equal(one_step(&o, &c), 0);
	one_persist(&o, o.up.persist_seq);
	assert_non_null(find_msg(&o.up, RAFT_MSG_VOTE, 2));
	assert_null(find_msg(&o.up, RAFT_MSG_VOTE, 4)); /* nobody asks a learner */
	struct raft_msg g = {.type = RAFT_MSG_VOTE_RESP, .from = 4, .to = 1, .term = 1};
	one_recv(&o, &g);
	assert_int_equal(status(o.r).role, RAFT_CANDIDATE); /* 4's vote is no vote */
	g.from = 2;
	one_recv(&o, &g);
	assert_int_equal(status(o.r).role, RAFT_LEADER);
	one_persist(&o, o.up.persist_seq);
	one_ack(&o, 4, 1);
	uint64_t m = 0;
	assert_int_equal(raft_progress_match(o.r, 4, &m), 0);
	assert_int_equal(m, 1);
	assert_int_equal(status(o.r).commit, 0); /* leader + learner: no quorum */
	one_ack(&o, 3, 1);
	assert_int_equal(status(o.r).commit, 1);
	one_free(&o);
}

static int propose_conf(struct one *o, uint8_t type, uint64_t id)
{
	uint8_t b[RAFT_CONF_CHANGE_SIZE];
	raft_conf_change_encode(&(struct raft_conf_change){type, id}, b);
	struct raft_event p = {.type = RAFT_EVENT_PROPOSE};
	p.propose.type = RAFT_ENTRY_CONF;
	p.propose.data = (struct raft_buf){b, sizeof(b)};
	return one_step(o, &p);
}

/* The fix to D§4.1's single-server changes (Ongaro, raft-dev, 2015: a
 * change could be lost to a concurrent one across a leader change): "a
 * leader may not append a new configuration entry until it has committed
 * an entry from its current term". Until its term-start no-op commits, a
 * new leader refuses a change with CAIRN_ECONFCHANGE; then one at a time
 * (D§4.1). */
static void test_conf_change_waits_for_commit_in_term(void **state)
{
	(void)state;
	struct one o;
	one_new(&o, 1, false, false);
	one_elect(&o);
	one_persist(&o, o.up.persist_seq);
	assert_int_equal(propose_conf(&o, RAFT_CC_ADD_LEARNER, 4), CAIRN_ECONFCHANGE);
	assert_int_equal(status(o.r).last_index, 1);
	one_ack(&o, 2, 1);
	assert_int_equal(status(o.r).commit, 1);
	assert_int_equal(propose_conf(&o, RAFT_CC_ADD_LEARNER, 4), 0);
	assert_int_equal(o.up.proposed_index, 2);
	/* The first is not applied yet: a second waits. */
	assert_int_equal(propose_conf(&o, RAFT_CC_REMOVE, 3), CAIRN_ECONFCHANGE);
	one_free(&o);
}

/* §7: a follower that needs compacted entries gets InstallSnapshot with
 * the metadata (last included index/term, configuration), installs it and
 * continues from there. */
static void test_snapshot_catch_up(void **state)
{
	(void)state;
	struct sim s;
	struct sim_opts opt = {.n = 3, .seed = 11, .pre_vote = true, .check_quorum = true};
	assert_int_equal(sim_init(&s, &opt), 0);
	sim_elect(&s, 1);
	sim_crash(&s, 3);
	for (unsigned i = 0; i < 20; i++)
		assert_int_equal(sim_propose(&s, 1, NULL, 0), 0);
	assert_int_equal(sim_stabilize(&s), 0);
	assert_int_equal(sim_compact(&s, 1), 0);
	assert_int_equal(sim_compact(&s, 2), 0);
	assert_true(status(s.nodes[1].r).snap_index >= 20);
	assert_int_equal(sim_restart(&s, 3), 0);
	uint64_t before = s.n_snapshots;
	for (unsigned k = 0; k < 10; k++)
		assert_int_equal(sim_tick(&s), 0);
	assert_int_equal(s.n_snapshots, before + 1);
	assert_int_equal(status(s.nodes[3].r).commit, status(s.nodes[1].r).commit);
	assert_int_equal(s.nodes[3].sm_hash, s.nodes[1].sm_hash);
	sim_fini(&s);
}

/* A member started without the bootstrap configuration applies no
 * membership change (it cannot know what they change) and never
 * campaigns, until a snapshot (§7, which carries the configuration)
 * configures it. */
static void test_unconfigured_member_waits_for_snapshot(void **state)
{
	(void)state;
	struct one o;
	memset(&o, 0, sizeof(o));
	assert_int_equal(raft_mem_storage_new(&o.ms), 0);
	struct raft_config cfg = {.id = 4, .seed = 1};
	struct raft_storage st = raft_mem_storage_iface(o.ms);
	assert_int_equal(raft_new(&cfg, &st, &o.r), 0);
	uint8_t cc[RAFT_CONF_CHANGE_SIZE];
	raft_conf_change_encode(&(struct raft_conf_change){RAFT_CC_ADD_VOTER, 4}, cc);
	struct raft_entry e = {
	    .term = 1, .index = 1, .type = RAFT_ENTRY_CONF, .data = {cc, sizeof(cc)}};
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
	                     .from = 2,
	                     .to = 4,
	                     .term = 1,
	                     .commit = 1,
	                     .n_entries = 1,
	                     .entries = &e};
	one_recv(&o, &m);
	one_persist(&o, o.up.persist_seq);
	assert_int_equal(o.up.n_committed, 1);
	struct raft_event ap = {.type = RAFT_EVENT_APPLIED, .applied.index = 1};
	assert_int_equal(one_step(&o, &ap), 0);
	assert_int_equal(status(o.r).conf.n_voters, 0);
	one_tick(&o, 50);
	assert_int_equal(status(o.r).role, RAFT_FOLLOWER);
	assert_int_equal(status(o.r).term, 1);
	struct raft_msg sn = {.type = RAFT_MSG_SNAPSHOT, .from = 2, .to = 4, .term = 1};
	sn.snapshot = (struct raft_snapshot_meta){.index = 5, .term = 1, .conf = conf3};
	sn.snapshot.conf.voters[sn.snapshot.conf.n_voters++] = 4;
	one_recv(&o, &sn);
	assert_non_null(o.up.snapshot);
	assert_int_equal(status(o.r).conf.n_voters, 4);
	one_free(&o);
}

/* Membership change payloads round-trip and reject nonsense. */
static void test_conf_change_encoding(void **state)
{
	(void)state;
	uint8_t b[RAFT_CONF_CHANGE_SIZE];
	struct raft_conf_change cc = {.type = RAFT_CC_PROMOTE, .id = 0x0102030405060708ULL}, out;
	raft_conf_change_encode(&cc, b);
	assert_int_equal(raft_conf_change_decode(b, sizeof(b), &out), 0);
	assert_int_equal(out.type, cc.type);
	assert_true(out.id == cc.id);
	b[0] = 9;
	assert_int_equal(raft_conf_change_decode(b, sizeof(b), &out), CAIRN_EINVAL);
	assert_int_equal(raft_conf_change_decode(b, 3, &out), CAIRN_EINVAL);
	struct raft_conf c = conf3;
	struct raft_conf_change rm = {.type = RAFT_CC_REMOVE, .id = 7};
	assert_int_equal(raft_conf_apply(&c, &rm), CAIRN_EINVAL);
	struct raft_conf_change add = {.type = RAFT_CC_ADD_VOTER, .id = 2};
	assert_int_equal(raft_conf_apply(&c, &add), CAIRN_EINVAL);
}

/* ------------------------------------------------------------ allocation */

/* A bump allocator over a static arena that counts: everything the core
 * allocates is here, and libc's heap does not move while cores live. */
struct count_alloc {
	size_t used;
	size_t live_bytes;
	long live;
	unsigned long calls;
	bool foreign; /* a pointer not from the arena was freed */
};

#define ARENA_SIZE ((size_t)4 << 20)
#define ARENA_HDR  16 /* keeps blocks aligned as malloc's */
static _Alignas(16) unsigned char arena[ARENA_SIZE];

static void *ca_malloc(void *ctx, size_t n)
{
	struct count_alloc *ca = ctx;
	size_t need = ARENA_HDR + ((n + 15) & ~(size_t)15);
	if (ARENA_SIZE - ca->used < need)
		return NULL;
	unsigned char *p = arena + ca->used;
	ca->used += need;
	memcpy(p, &n, sizeof(n));
	ca->live++;
	ca->live_bytes += n;
	ca->calls++;
	return p + ARENA_HDR;
}

static size_t ca_size(struct count_alloc *ca, void *p)
{
	unsigned char *b = p;
	if (b < arena + ARENA_HDR || b >= arena + ARENA_SIZE) {
		ca->foreign = true;
		return 0;
	}
	size_t n;
	memcpy(&n, b - ARENA_HDR, sizeof(n));
	return n;
}

static void ca_free(void *ctx, void *p)
{
	struct count_alloc *ca = ctx;
	if (!p)
		return;
	size_t n = ca_size(ca, p);
	if (ca->foreign)
		return;
	ca->live--;
	ca->live_bytes -= n;
	ca->calls++;
}

static void *ca_realloc(void *ctx, void *p, size_t n)
{
	struct count_alloc *ca = ctx;
	void *q = ca_malloc(ctx, n);
	if (q && p) {
		size_t old = ca_size(ca, p);
		memcpy(q, p, old < n ? old : n);
		ca_free(ctx, p);
	}
	return q;
}

static int empty_state(void *ctx, struct raft_hard_state *hs, struct raft_snapshot_meta *snap)
{
	(void)ctx;
	memset(hs, 0, sizeof(*hs));
	memset(snap, 0, sizeof(*snap));
	return 0;
}

static int empty_last(void *ctx, uint64_t *out)
{
	(void)ctx;
	*out = 0;
	return 0;
}

static int ca_step(struct raft *r, const struct raft_event *ev, struct raft_update *up)
{
	int rv = raft_step(r, ev, up);
	assert_int_equal(raft_check(r, NULL, 0), 0);
	return rv;
}

/* raft.h: the core "allocates only through raft_config.alloc". Two cores
 * on a counting allocator run elections, replication with truncation, a
 * snapshot, compaction, reads, a membership change and a step-down: the
 * allocator sees every allocation (libc's heap in use is the same before
 * raft_new and after all that, with the cores' state still alive) and
 * raft_free returns every byte. */
static void test_alloc_all_through_config_and_freed(void **state)
{
	(void)state;
	struct count_alloc ca = {0};
	struct raft_alloc al = {&ca, ca_malloc, ca_realloc, ca_free};
	struct raft_storage st = {.initial_state = empty_state, .last_index = empty_last};
	struct raft_config cfg = {.id = 1, .seed = 3, .initial_conf = &conf3, .alloc = &al};
	struct raft *l, *f;
	struct raft_update up;
	size_t heap0 = heap_in_use();
	assert_int_equal(raft_new(&cfg, &st, &l), 0);
	cfg.id = 2;
	assert_int_equal(raft_new(&cfg, &st, &f), 0);

	/* Leader 1: elected, 100 entries proposed, persisted, replicated. */
	struct raft_event ev = {.type = RAFT_EVENT_CAMPAIGN};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	ev = (struct raft_event){.type = RAFT_EVENT_PERSISTED, .persisted.seq = up.persist_seq};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	struct raft_msg m = {.type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = 1};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	for (int i = 0; i < 100; i++) {
		ev = (struct raft_event){.type = RAFT_EVENT_PROPOSE};
		ev.propose.data = (struct raft_buf){"0123456789abcdef", 16};
		assert_int_equal(ca_step(l, &ev, &up), 0);
	}
	ev = (struct raft_event){.type = RAFT_EVENT_PERSISTED, .persisted.seq = up.persist_seq};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	m = (struct raft_msg){
	    .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = 1, .index = 101};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	assert_int_equal(status(l).commit, 101);
	ev = (struct raft_event){.type = RAFT_EVENT_APPLIED, .applied.index = 101};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	assert_int_equal(raft_compact(l, 50), 0);
	ev = (struct raft_event){.type = RAFT_EVENT_READ_INDEX, .read_index.ctx = 1};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	m = (struct raft_msg){.type = RAFT_MSG_READ_INDEX, .from = 3, .to = 1, .term = 1, .ctx = 2};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	uint8_t cc[RAFT_CONF_CHANGE_SIZE];
	raft_conf_change_encode(&(struct raft_conf_change){RAFT_CC_ADD_LEARNER, 4}, cc);
	ev = (struct raft_event){.type = RAFT_EVENT_PROPOSE};
	ev.propose.type = RAFT_ENTRY_CONF;
	ev.propose.data = (struct raft_buf){cc, sizeof(cc)};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	ev = (struct raft_event){.type = RAFT_EVENT_TICK};
	for (int i = 0; i < 5; i++)
		assert_int_equal(ca_step(l, &ev, &up), 0);

	/* Follower 2: entries of term 1, then a term-2 leader's conflicting
	 * suffix, then a snapshot beyond its log. */
	struct raft_entry e[40];
	for (int i = 0; i < 40; i++)
		e[i] = (struct raft_entry){.term = 1 + (i >= 20),
		                           .index = (uint64_t)(i % 20) + 1,
		                           .data = {"0123456789abcdef", 16}};
	m = (struct raft_msg){
	    .type = RAFT_MSG_APPEND, .from = 3, .to = 2, .term = 1, .n_entries = 20, .entries = e};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(f, &ev, &up), 0);
	m = (struct raft_msg){.type = RAFT_MSG_APPEND,
	                      .from = 3,
	                      .to = 2,
	                      .term = 2,
	                      .index = 10,
	                      .log_term = 1,
	                      .n_entries = 10,
	                      .entries = e + 30};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(f, &ev, &up), 0);
	assert_int_equal(up.truncate_from, 11);
	ev = (struct raft_event){.type = RAFT_EVENT_PERSISTED, .persisted.seq = up.persist_seq};
	assert_int_equal(ca_step(f, &ev, &up), 0);
	m = (struct raft_msg){.type = RAFT_MSG_SNAPSHOT, .from = 3, .to = 2, .term = 2};
	m.snapshot = (struct raft_snapshot_meta){.index = 60, .term = 2, .conf = conf3};
	m.snapshot_data = (struct raft_buf){"state", 5};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(f, &ev, &up), 0);
	assert_non_null(up.snapshot);

	/* The leader steps down, failing its reads. */
	m = (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 3, .to = 1, .term = 9};
	ev = (struct raft_event){.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
	assert_int_equal(ca_step(l, &ev, &up), 0);
	assert_int_equal(up.n_reads, 1);

	assert_true(heap_in_use() == heap0);
	assert_false(ca.foreign);
	assert_true(ca.live > 0);
	raft_free(l);
	raft_free(f);
	assert_false(ca.foreign);
	assert_int_equal(ca.live, 0);
	assert_int_equal(ca.live_bytes, 0);
	assert_true(ca.calls > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vote_once_per_term_and_persisted_first),
	    cmocka_unit_test(test_vote_requires_up_to_date_log),
	    cmocka_unit_test(test_prevote_does_not_bump_term),
	    cmocka_unit_test(test_leader_lease_ignores_votes),
	    cmocka_unit_test(test_check_quorum_leader_steps_down),
	    cmocka_unit_test(test_higher_term_steps_down_stale_term_rejected),
	    cmocka_unit_test(test_election_timeout_randomized),
	    cmocka_unit_test(test_vote_request_leaves_after_term_persisted),
	    cmocka_unit_test(test_append_truncates_conflict_and_acks_after_persist),
	    cmocka_unit_test(test_commit_only_current_term_figure8),
	    cmocka_unit_test(test_leader_counts_itself_only_when_persisted),
	    cmocka_unit_test(test_restart_recovers_persistent_state),
	    cmocka_unit_test(test_flow_control_probe_then_pipeline),
	    cmocka_unit_test(test_flow_control_inflight_bytes),
	    cmocka_unit_test(test_leader_fast_backtracking),
	    cmocka_unit_test(test_append_commit_min_of_leader_commit_and_last_new),
	    cmocka_unit_test(test_heartbeat_commit_clamped_to_match),
	    cmocka_unit_test(test_read_index_rules),
	    cmocka_unit_test(test_read_index_isolated_leader_never_answers),
	    cmocka_unit_test(test_read_index_pending_fail_on_step_down),
	    cmocka_unit_test(test_leader_transfer),
	    cmocka_unit_test(test_membership_one_at_a_time),
	    cmocka_unit_test(test_learner_never_campaigns_nor_counts),
	    cmocka_unit_test(test_conf_change_waits_for_commit_in_term),
	    cmocka_unit_test(test_snapshot_catch_up),
	    cmocka_unit_test(test_unconfigured_member_waits_for_snapshot),
	    cmocka_unit_test(test_conf_change_encoding),
	    cmocka_unit_test(test_alloc_all_through_config_and_freed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
