/*
 * raft.c — the Raft core: elections (PreVote, CheckQuorum, leader lease),
 * log replication with pipelining and per-follower flow control, the commit
 * rule, ReadIndex, leader transfer, single-server membership changes and
 * snapshots. See raft.h for the contract with the member.
 *
 * Numbered invariants (checked by raft_check()):
 *   I1 (§5.3, Fig. 2)  log indexes are contiguous from snap_index + 1 and
 *                      terms never decrease along the log.
 *   I2 (§5.1)          no log entry has a term above current_term.
 *   I3 (Fig. 2)        snap_index <= applied <= emitted <= commit <= last.
 *   I4 (§5.2)          a leader or candidate voted for itself this term.
 *   I5 (D§10.2.1)      a leader's own match is its stable index.
 *   I6                 stable_index <= last_index, unsent_from <= last + 1.
 *
 * Role transitions (function making each):
 *
 *      tick: timeout             PRE_VOTE quorum            VOTE quorum
 *   FOLLOWER ──────────► PRE_CANDIDATE ──────────► CANDIDATE ─────────► LEADER
 *      ▲  become_pre_candidate()    become_candidate()   become_leader()  │
 *      └────────── become_follower(): higher term, AppendEntries of ──────┘
 *                  the current term, CheckQuorum failure, removal
 *
 * Persist-before-send: messages that depend on durable state are "held"
 * (hold()) with the persist seq of the update that makes them safe and move
 * to the outbox when RAFT_EVENT_PERSISTED reaches it. Outgoing AppendEntries
 * record entry ranges, not pointers, until the update is finalized, so the
 * log array may grow during a step.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "raft/raft.h"

enum { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

struct progress {
	uint64_t id;
	uint64_t match;
	uint64_t next;
	uint64_t pending_snapshot;
	uint64_t read_ack; /* highest heartbeat round acknowledged */
	unsigned snap_ticks;
	uint8_t state;
	bool learner;
	bool paused; /* probe: one message in flight */
	bool active; /* heard from since the last CheckQuorum round */
	/* in-flight AppendEntries (replicate state): ring of last indexes */
	uint64_t *infl;
	size_t *infl_bytes;
	unsigned infl_start, infl_count;
	size_t infl_total;
};

struct held {
	struct raft_msg m;
	uint64_t seq;
};

struct persist_rec {
	uint64_t seq;
	uint64_t index;
	uint64_t term;
};

struct pending_read {
	uint64_t ctx;
	uint64_t from;
	uint64_t index;
	uint64_t round; /* 0: waiting for a commit in this term */
};

#define VEC(T)                                                                                     \
	struct {                                                                                   \
		T *v;                                                                              \
		size_t n, cap;                                                                     \
	}

struct raft {
	struct raft_config cfg;
	struct raft_alloc al;
	uint64_t id;
	uint64_t rng;

	/* persistent (Figure 2) */
	uint64_t term;
	uint64_t vote;
	/* log */
	uint64_t snap_index;
	uint64_t snap_term;
	struct raft_conf snap_conf;
	VEC(struct raft_entry) log; /* entries snap_index+1 .. */
	uint64_t commit;
	uint64_t stable;      /* last index known durable */
	uint64_t unsent_from; /* first index not yet handed to storage */
	uint64_t emitted;     /* last index handed out to apply */
	uint64_t applied;

	/* configuration (applied) */
	struct raft_conf conf;
	uint64_t conf_index;
	struct raft_conf prev_conf;
	uint64_t prev_conf_index;
	uint64_t pending_conf_index;

	/* volatile */
	uint8_t role;
	uint64_t leader;
	unsigned election_elapsed;
	unsigned heartbeat_elapsed;
	unsigned rand_timeout;
	bool campaign_transfer;
	uint64_t granted[RAFT_MAX_MEMBERS];
	uint64_t refused[RAFT_MAX_MEMBERS];
	unsigned n_granted, n_refused;
	uint64_t transferee;

	/* leader */
	struct progress prs[2 * RAFT_MAX_MEMBERS];
	unsigned n_prs;
	uint64_t read_round;
	VEC(struct pending_read) reads;

	/* persistence tracking */
	uint64_t seq_issued;
	uint64_t seq_persisted;
	VEC(struct persist_rec) recs;
	VEC(struct held) held;

	/* the update being built */
	VEC(struct raft_msg) out;
	VEC(uint64_t) out_lo; /* first entry index of out[i] (0: none) */
	VEC(struct raft_read_state) ready;
	uint64_t truncate_from;
	bool snap_pending;
	struct raft_snapshot_meta up_snap;
	struct raft_buf up_snap_data;
	struct raft_hard_state last_hs;
	uint8_t last_role;
	uint64_t last_leader;
	int err; /* sticky allocation failure inside a step */
};

/* ------------------------------------------------------------ allocation */

static void *lib_malloc(void *ctx, size_t n)
{
	(void)ctx;
	return malloc(n);
}
static void *lib_realloc(void *ctx, void *p, size_t n)
{
	(void)ctx;
	return realloc(p, n);
}
static void lib_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

static void *r_alloc(struct raft *r, size_t n)
{
	return r->al.malloc_fn(r->al.ctx, n);
}
static void r_free(struct raft *r, void *p)
{
	if (p)
		r->al.free_fn(r->al.ctx, p);
}

/* Grows a VEC to hold one more element; false (and r->err) on failure. */
static bool vec_grow(struct raft *r, void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 8;
	void *nv = r->al.realloc_fn(r->al.ctx, *v, nc * elem);
	if (!nv) {
		r->err = CAIRN_ENOMEM;
		return false;
	}
	*v = nv;
	*cap = nc;
	return true;
}
#define VEC_PUSH(r, vec)                                                                           \
	(vec_grow((r), (void **)&(vec).v, &(vec).cap, (vec).n, sizeof(*(vec).v))                   \
	     ? &(vec).v[(vec).n++]                                                                 \
	     : NULL)

/* xorshift64*: the core's only randomness, from cfg.seed. */
static uint64_t rnd(struct raft *r)
{
	uint64_t x = r->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* ----------------------------------------------------------- conf helpers */

static bool id_in(const uint64_t *ids, uint32_t n, uint64_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static void id_del(uint64_t *ids, uint32_t *n, uint64_t id)
{
	for (uint32_t i = 0; i < *n; i++)
		if (ids[i] == id) {
			ids[i] = ids[--*n];
			return;
		}
}

bool raft_conf_is_voter(const struct raft_conf *c, uint64_t id)
{
	return id_in(c->voters, c->n_voters, id);
}

bool raft_conf_is_learner(const struct raft_conf *c, uint64_t id)
{
	return id_in(c->learners, c->n_learners, id);
}

int raft_conf_apply(struct raft_conf *c, const struct raft_conf_change *cc)
{
	bool v = raft_conf_is_voter(c, cc->id), l = raft_conf_is_learner(c, cc->id);
	if (cc->id == RAFT_NONE)
		return CAIRN_EINVAL;
	switch (cc->type) {
	case RAFT_CC_ADD_VOTER:
	case RAFT_CC_PROMOTE:
		if (v || (cc->type == RAFT_CC_PROMOTE && !l))
			return CAIRN_EINVAL;
		if (c->n_voters + c->n_learners - l >= RAFT_MAX_MEMBERS)
			return CAIRN_EINVAL;
		id_del(c->learners, &c->n_learners, cc->id);
		c->voters[c->n_voters++] = cc->id;
		return 0;
	case RAFT_CC_ADD_LEARNER:
		if (v || l || c->n_voters + c->n_learners >= RAFT_MAX_MEMBERS)
			return CAIRN_EINVAL;
		c->learners[c->n_learners++] = cc->id;
		return 0;
	case RAFT_CC_REMOVE:
		if (!v && !l)
			return CAIRN_EINVAL;
		if (v && c->n_voters == 1)
			return CAIRN_EINVAL; /* would leave nobody to decide */
		id_del(c->voters, &c->n_voters, cc->id);
		id_del(c->learners, &c->n_learners, cc->id);
		return 0;
	default:
		return CAIRN_EINVAL;
	}
}

void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t out[RAFT_CONF_CHANGE_SIZE])
{
	out[0] = cc->type;
	for (int i = 0; i < 8; i++)
		out[1 + i] = (uint8_t)(cc->id >> (56 - 8 * i));
}

int raft_conf_change_decode(const void *buf, size_t len, struct raft_conf_change *out)
{
	const uint8_t *b = buf;
	/* The member may carry its own details after the 9 bytes. */
	if (len < RAFT_CONF_CHANGE_SIZE || b[0] > RAFT_CC_REMOVE)
		return CAIRN_EINVAL;
	out->type = b[0];
	out->id = 0;
	for (int i = 0; i < 8; i++)
		out->id = (out->id << 8) | b[1 + i];
	return out->id ? 0 : CAIRN_EINVAL;
}

static unsigned quorum(const struct raft_conf *c)
{
	return c->n_voters / 2 + 1;
}

/* ------------------------------------------------------------------- log */

static uint64_t last_index(const struct raft *r)
{
	return r->snap_index + r->log.n;
}

static struct raft_entry *entry_at(const struct raft *r, uint64_t i)
{
	if (i <= r->snap_index || i > last_index(r))
		return NULL;
	return &r->log.v[i - r->snap_index - 1];
}

/* Term of entry i; 0 when unknown (compacted or beyond the log). */
static uint64_t term_at(const struct raft *r, uint64_t i)
{
	if (i == r->snap_index)
		return r->snap_term;
	const struct raft_entry *e = entry_at(r, i);
	return e ? e->term : 0;
}

static uint64_t last_term(const struct raft *r)
{
	return term_at(r, last_index(r));
}

static int log_append(struct raft *r, uint64_t term, uint8_t type, const void *data, size_t len)
{
	struct raft_entry *e = VEC_PUSH(r, r->log);
	if (!e)
		return CAIRN_ENOMEM;
	void *copy = NULL;
	if (len) {
		copy = r_alloc(r, len);
		if (!copy) {
			r->log.n--;
			return r->err = CAIRN_ENOMEM;
		}
		memcpy(copy, data, len);
	}
	*e = (struct raft_entry){
	    .term = term, .index = last_index(r), .type = type, .data = {.base = copy, .len = len}};
	return 0;
}

static void free_entries(struct raft *r, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		r_free(r, (void *)r->log.v[i].data.base);
}

/* Deletes entries >= i (a conflicting suffix, §5.3). */
static void log_truncate(struct raft *r, uint64_t i)
{
	size_t keep = (size_t)(i - r->snap_index - 1);
	free_entries(r, keep, r->log.n);
	r->log.n = keep;
	if (i < r->unsent_from) {
		r->unsent_from = i;
		if (!r->truncate_from || i < r->truncate_from)
			r->truncate_from = i;
	}
	if (r->stable >= i)
		r->stable = i - 1;
}

/* Largest index <= i whose term is <= t (etcd's findConflictByTerm): the
 * follower-side and leader-side halves of fast backtracking (§5.3, "the
 * follower can include the term of the conflicting entry"). */
static uint64_t find_conflict_by_term(const struct raft *r, uint64_t i, uint64_t t)
{
	if (i > last_index(r))
		i = last_index(r);
	while (i > r->snap_index && term_at(r, i) > t)
		i--;
	return i;
}

/* §5.4.1: is a log ending at (idx, t) at least as up-to-date as ours? */
static bool up_to_date(const struct raft *r, uint64_t idx, uint64_t t)
{
	uint64_t lt = last_term(r);
	return t > lt || (t == lt && idx >= last_index(r));
}

/* ------------------------------------------------------------- messages */

static struct raft_msg *out_msg(struct raft *r, uint8_t type, uint64_t to)
{
	struct raft_msg *m = VEC_PUSH(r, r->out);
	uint64_t *lo = VEC_PUSH(r, r->out_lo);
	if (!m || !lo) {
		if (m)
			r->out.n--;
		return NULL;
	}
	r->out_lo.n = r->out.n;
	*lo = 0;
	*m = (struct raft_msg){.type = type, .from = r->id, .to = to, .term = r->term};
	return m;
}

/* Queues a reply that may leave only once this step's persist set (and all
 * before it) is durable. */
static void hold(struct raft *r, const struct raft_msg *m)
{
	/* Acks are cumulative: of two acks to the same leader in one term
	 * waiting for the same seq, the higher index says all (within a term
	 * the leader's entries never conflict with what it already sent). */
	if (r->held.n) {
		struct held *h = &r->held.v[r->held.n - 1];
		if (h->seq == r->seq_issued + 1 && h->m.type == m->type && h->m.to == m->to &&
		    m->type == RAFT_MSG_APPEND_RESP && h->m.term == m->term && !m->reject &&
		    !h->m.reject) {
			if (m->index > h->m.index)
				h->m = *m;
			return;
		}
	}
	struct held *h = VEC_PUSH(r, r->held);
	if (h) {
		h->m = *m;
		h->seq = r->seq_issued + 1;
	}
}

static void release_held(struct raft *r)
{
	/* Held messages are in non-decreasing seq order: release a prefix. */
	size_t i = 0;
	while (i < r->held.n && r->held.v[i].seq <= r->seq_persisted) {
		struct raft_msg *m = out_msg(r, r->held.v[i].m.type, r->held.v[i].m.to);
		if (m)
			*m = r->held.v[i].m;
		i++;
	}
	if (i) {
		memmove(r->held.v, r->held.v + i, (r->held.n - i) * sizeof(*r->held.v));
		r->held.n -= i;
	}
}

static struct progress *progress(struct raft *r, uint64_t id)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

/* ------------------------------------------------------------- progress */

static void infl_reset(struct progress *pr)
{
	pr->infl_start = pr->infl_count = 0;
	pr->infl_total = 0;
}

static bool infl_full(const struct raft *r, const struct progress *pr)
{
	return pr->infl_count >= r->cfg.max_inflight ||
	       (r->cfg.max_inflight_bytes && pr->infl_total >= r->cfg.max_inflight_bytes);
}

static void infl_add(const struct raft *r, struct progress *pr, uint64_t last, size_t bytes)
{
	unsigned slot = (pr->infl_start + pr->infl_count) % r->cfg.max_inflight;
	pr->infl[slot] = last;
	pr->infl_bytes[slot] = bytes;
	pr->infl_count++;
	pr->infl_total += bytes;
}

/* Frees in-flight messages whose last index is <= idx. */
static void infl_free_to(const struct raft *r, struct progress *pr, uint64_t idx)
{
	while (pr->infl_count && pr->infl[pr->infl_start] <= idx) {
		pr->infl_total -= pr->infl_bytes[pr->infl_start];
		pr->infl_start = (pr->infl_start + 1) % r->cfg.max_inflight;
		pr->infl_count--;
	}
}

static void pr_become_probe(struct progress *pr)
{
	if (pr->state == PR_SNAPSHOT) {
		uint64_t ps = pr->pending_snapshot;
		pr->next = (pr->match > ps ? pr->match : ps) + 1;
	} else {
		pr->next = pr->match + 1;
	}
	pr->state = PR_PROBE;
	pr->paused = false;
	pr->pending_snapshot = 0;
	infl_reset(pr);
}

static void pr_become_replicate(struct progress *pr)
{
	pr->state = PR_REPLICATE;
	pr->next = pr->match + 1;
	pr->paused = false;
	pr->pending_snapshot = 0;
	infl_reset(pr);
}

static bool pr_paused(const struct raft *r, const struct progress *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->paused;
	case PR_REPLICATE:
		return infl_full(r, pr);
	default:
		return true;
	}
}

static int pr_add(struct raft *r, uint64_t id, bool learner)
{
	struct progress *pr = progress(r, id);
	if (!pr) {
		if (r->n_prs >= 2 * RAFT_MAX_MEMBERS)
			return CAIRN_EINVAL;
		pr = &r->prs[r->n_prs++];
		uint64_t *infl = pr->infl;
		size_t *ib = pr->infl_bytes;
		*pr = (struct progress){.id = id, .infl = infl, .infl_bytes = ib};
		if (!pr->infl) {
			pr->infl = r_alloc(r, r->cfg.max_inflight * sizeof(*pr->infl));
			pr->infl_bytes = r_alloc(r, r->cfg.max_inflight * sizeof(*pr->infl_bytes));
			if (!pr->infl || !pr->infl_bytes)
				return r->err = CAIRN_ENOMEM;
		}
		pr->next = last_index(r) + 1;
		pr->state = PR_PROBE;
		pr->active = true;
	}
	pr->learner = learner;
	return 0;
}

/* Rebuilds the progress set from r->conf, keeping existing entries. */
static void sync_progress(struct raft *r)
{
	unsigned k = 0;
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];
		if (raft_conf_is_voter(&r->conf, pr->id) ||
		    raft_conf_is_learner(&r->conf, pr->id)) {
			struct progress tmp = r->prs[k];
			r->prs[k++] = *pr;
			*pr = tmp;
		}
	}
	for (unsigned i = k; i < r->n_prs; i++) {
		r_free(r, r->prs[i].infl);
		r_free(r, r->prs[i].infl_bytes);
		r->prs[i].infl = NULL;
		r->prs[i].infl_bytes = NULL;
	}
	r->n_prs = k;
	for (uint32_t i = 0; i < r->conf.n_voters; i++)
		pr_add(r, r->conf.voters[i], false);
	for (uint32_t i = 0; i < r->conf.n_learners; i++)
		pr_add(r, r->conf.learners[i], true);
}

/* ------------------------------------------------------------ elections */

static void reset_timers(struct raft *r)
{
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->rand_timeout = r->cfg.election_ticks + (unsigned)(rnd(r) % r->cfg.election_ticks);
}

/* Answers a read: locally as a read state, remotely as READ_INDEX_RESP.
 * status != 0 fails it (the leader is stepping down). */
static void answer_read(struct raft *r, const struct pending_read *p, int status)
{
	if (p->from == r->id) {
		struct raft_read_state *rs = VEC_PUSH(r, r->ready);
		if (rs)
			*rs = (struct raft_read_state){
			    .ctx = p->ctx, .index = status ? 0 : p->index, .status = status};
		return;
	}
	struct raft_msg *m = out_msg(r, RAFT_MSG_READ_INDEX_RESP, p->from);
	if (m) {
		m->ctx = p->ctx;
		m->index = p->index;
		m->reject = status != 0;
	}
}

static void fail_reads(struct raft *r, int status)
{
	for (size_t i = 0; i < r->reads.n; i++)
		answer_read(r, &r->reads.v[i], status);
	r->reads.n = 0;
}

static void become_follower(struct raft *r, uint64_t term, uint64_t leader)
{
	bool was_leader = r->role == RAFT_LEADER;
	if (term > r->term) {
		r->term = term;
		r->vote = RAFT_NONE;
	}
	if (was_leader)
		fail_reads(r, CAIRN_ELEADERCHANGED);
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->transferee = RAFT_NONE;
	r->campaign_transfer = false;
	reset_timers(r);
}

/* A member may campaign when it is a voter and no committed configuration
 * change awaits application (etcd's hasUnappliedConfChanges): otherwise it
 * could count votes in a configuration the cluster has left. */
static bool promotable(const struct raft *r)
{
	if (!raft_conf_is_voter(&r->conf, r->id))
		return false;
	for (uint64_t i = r->applied + 1; i <= r->commit; i++) {
		const struct raft_entry *e = entry_at(r, i);
		if (e && e->type == RAFT_ENTRY_CONF)
			return false;
	}
	return true;
}

static void become_leader(struct raft *r);

/* Records a (pre-)vote answer; returns +1 won, -1 lost, 0 undecided. */
static int tally(struct raft *r, uint64_t from, bool granted)
{
	if (!raft_conf_is_voter(&r->conf, from))
		return 0;
	if (id_in(r->granted, r->n_granted, from) || id_in(r->refused, r->n_refused, from))
		return 0;
	if (granted)
		r->granted[r->n_granted++] = from;
	else
		r->refused[r->n_refused++] = from;
	unsigned q = quorum(&r->conf);
	if (r->n_granted >= q)
		return 1;
	if (r->n_refused >= r->conf.n_voters - q + 1)
		return -1;
	return 0;
}

static void request_votes(struct raft *r, uint8_t type, uint64_t term)
{
	for (uint32_t i = 0; i < r->conf.n_voters; i++) {
		uint64_t id = r->conf.voters[i];
		if (id == r->id)
			continue;
		struct raft_msg m = {.type = type,
		                     .from = r->id,
		                     .to = id,
		                     .term = term,
		                     .index = last_index(r),
		                     .log_term = last_term(r),
		                     .transfer = r->campaign_transfer};
		if (type == RAFT_MSG_VOTE) {
			/* §5.2 + Figure 2: the candidate's own vote and term must be
			 * durable before it asks (a restart must not vote twice). */
			hold(r, &m);
		} else {
			struct raft_msg *o = out_msg(r, type, id);
			if (o)
				*o = m;
		}
	}
}

static void become_candidate(struct raft *r, bool transfer)
{
	/* §5.2: increment currentTerm, vote for self, reset election timer. */
	r->term++;
	r->vote = r->id;
	r->role = RAFT_CANDIDATE;
	r->leader = RAFT_NONE;
	r->campaign_transfer = transfer;
	r->n_granted = r->n_refused = 0;
	reset_timers(r);
	if (tally(r, r->id, true) > 0) {
		become_leader(r);
		return;
	}
	request_votes(r, RAFT_MSG_VOTE, r->term);
}

/* D§9.6 PreVote: ask whether an election at term+1 could be won, without
 * touching our term, so a partitioned member rejoining does not disrupt. */
static void become_pre_candidate(struct raft *r)
{
	r->role = RAFT_PRE_CANDIDATE;
	r->leader = RAFT_NONE;
	r->campaign_transfer = false;
	r->n_granted = r->n_refused = 0;
	reset_timers(r);
	if (tally(r, r->id, true) > 0) {
		become_candidate(r, false);
		return;
	}
	request_votes(r, RAFT_MSG_PRE_VOTE, r->term + 1);
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
	if (!promotable(r) || r->role == RAFT_LEADER)
		return;
	if (pre)
		become_pre_candidate(r);
	else
		become_candidate(r, transfer);
}

/* ---------------------------------------------------------- replication */

static void send_snapshot(struct raft *r, struct progress *pr)
{
	struct raft_msg *m = out_msg(r, RAFT_MSG_SNAPSHOT, pr->id);
	if (!m)
		return;
	m->snapshot.index = r->snap_index;
	m->snapshot.term = r->snap_term;
	m->snapshot.conf = r->snap_conf;
	pr->state = PR_SNAPSHOT;
	pr->pending_snapshot = r->snap_index;
	pr->snap_ticks = 0;
	infl_reset(pr);
}

/* Sends the next AppendEntries to pr if flow control allows; returns true
 * if a message went out. */
static bool send_append(struct raft *r, struct progress *pr, bool if_empty)
{
	if (pr->id == r->id || pr_paused(r, pr))
		return false;
	uint64_t prev = pr->next - 1;
	if (prev < r->snap_index) {
		/* §7: the entries the follower needs are compacted. */
		send_snapshot(r, pr);
		return true;
	}
	uint64_t last = last_index(r);
	uint64_t hi = prev;
	size_t bytes = 0;
	while (hi < last) {
		size_t l = entry_at(r, hi + 1)->data.len;
		if (hi > prev && bytes + l > r->cfg.max_msg_bytes)
			break;
		bytes += l;
		hi++;
	}
	if (hi == prev && !if_empty && pr->state == PR_REPLICATE)
		return false;
	struct raft_msg *m = out_msg(r, RAFT_MSG_APPEND, pr->id);
	if (!m)
		return false;
	m->index = prev;
	m->log_term = term_at(r, prev);
	m->commit = r->commit;
	m->n_entries = (uint32_t)(hi - prev);
	r->out_lo.v[r->out.n - 1] = hi > prev ? prev + 1 : 0;
	if (pr->state == PR_REPLICATE) {
		if (hi > prev) {
			pr->next = hi + 1;
			infl_add(r, pr, hi, bytes);
		}
	} else {
		pr->paused = true;
	}
	return true;
}

static void bcast_append(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++)
		send_append(r, &r->prs[i], true);
}

static void bcast_heartbeat(struct raft *r)
{
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id == r->id)
			continue;
		struct raft_msg *m = out_msg(r, RAFT_MSG_HEARTBEAT, pr->id);
		if (!m)
			return;
		/* The follower may not have our log beyond match: never let a
		 * heartbeat commit what it cannot check (etcd does the same). */
		m->commit = pr->match < r->commit ? pr->match : r->commit;
		m->ctx = r->read_round;
	}
}

static void release_reads(struct raft *r);

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The quorum-th largest of a per-voter value (self given separately). */
static uint64_t quorum_value(struct raft *r, uint64_t self,
                             uint64_t (*get)(const struct progress *))
{
	uint64_t v[RAFT_MAX_MEMBERS];
	unsigned n = 0;
	for (uint32_t i = 0; i < r->conf.n_voters; i++) {
		uint64_t id = r->conf.voters[i];
		const struct progress *pr = progress(r, id);
		v[n++] = id == r->id ? self : pr ? get(pr) : 0;
	}
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(v[0]), cmp_desc);
	return v[quorum(&r->conf) - 1];
}

static uint64_t get_match(const struct progress *pr)
{
	return pr->match;
}

static uint64_t get_read_ack(const struct progress *pr)
{
	return pr->read_ack;
}

/* §5.3/§5.4.2: commit the highest index replicated (durably) on a quorum,
 * but only by counting replicas of an entry of the current term (Figure 8:
 * an older-term entry is committed indirectly). Returns true if advanced. */
static bool maybe_commit(struct raft *r)
{
	uint64_t mci = quorum_value(r, r->stable, get_match);
	if (mci <= r->commit || term_at(r, mci) != r->term)
		return false;
	r->commit = mci;
	release_reads(r);
	return true;
}

static void become_leader(struct raft *r)
{
	r->role = RAFT_LEADER;
	r->leader = r->id;
	r->transferee = RAFT_NONE;
	r->read_round = 0;
	reset_timers(r);
	r->n_prs = 0;
	sync_progress(r);
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];
		*pr = (struct progress){.id = pr->id,
		                        .learner = pr->learner,
		                        .infl = pr->infl,
		                        .infl_bytes = pr->infl_bytes,
		                        .next = last_index(r) + 1,
		                        .active = true};
		if (pr->id == r->id)
			pr->match = r->stable;
	}
	/* Any configuration entry in our log may be uncommitted: wait until it
	 * is applied before accepting another change. */
	r->pending_conf_index = last_index(r);
	/* D§6.4 / §8: a leader commits a blank entry of its term at the start
	 * of its term (needed for the commit rule and ReadIndex). */
	if (log_append(r, r->term, RAFT_ENTRY_NORMAL, NULL, 0) == 0) {
		bcast_append(r);
		maybe_commit(r);
	}
}

/* ------------------------------------------------------------- ReadIndex */

static bool committed_in_term(const struct raft *r)
{
	return term_at(r, r->commit) == r->term;
}

/* D§6.4: a read is served at the commit index recorded when it arrived,
 * once (1) the leader has committed an entry of its term and (2) a quorum
 * acknowledged a heartbeat sent after the read arrived. */
static void release_reads(struct raft *r)
{
	if (r->role != RAFT_LEADER || !committed_in_term(r))
		return;
	bool need_round = false;
	for (size_t i = 0; i < r->reads.n; i++) {
		struct pending_read *p = &r->reads.v[i];
		if (p->round == 0) {
			p->index = r->commit;
			p->round = ++r->read_round;
			need_round = true;
		}
	}
	uint64_t acked = quorum_value(r, r->read_round, get_read_ack);
	size_t k = 0;
	for (size_t i = 0; i < r->reads.n; i++) {
		struct pending_read *p = &r->reads.v[i];
		if (p->round <= acked)
			answer_read(r, p, 0);
		else
			r->reads.v[k++] = *p;
	}
	r->reads.n = k;
	if (need_round && k)
		bcast_heartbeat(r);
}

static int handle_read(struct raft *r, uint64_t from, uint64_t ctx)
{
	if (r->reads.n >= r->cfg.max_pending_reads)
		return CAIRN_EBUSY;
	struct pending_read *p = VEC_PUSH(r, r->reads);
	if (!p)
		return CAIRN_ENOMEM;
	*p = (struct pending_read){.ctx = ctx, .from = from};
	release_reads(r);
	return 0;
}

/* ------------------------------------------------------ follower side */

static void commit_to(struct raft *r, uint64_t c)
{
	if (c > r->commit)
		r->commit = c;
}

static void ack(struct raft *r, uint64_t to, uint64_t index)
{
	struct raft_msg m = {
	    .type = RAFT_MSG_APPEND_RESP, .from = r->id, .to = to, .term = r->term, .index = index};
	hold(r, &m);
}

/* §5.3 AppendEntries receiver, Figure 2 rules 2-5. */
static void handle_append(struct raft *r, const struct raft_msg *m)
{
	if (m->index < r->commit) {
		ack(r, m->from, r->commit);
		return;
	}
	if (m->index > last_index(r) || term_at(r, m->index) != m->log_term) {
		/* Rule 2: reply false, with a hint to skip a whole term. */
		uint64_t hint = find_conflict_by_term(r, m->index, m->log_term);
		struct raft_msg *o = out_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		if (o) {
			o->index = m->index;
			o->reject = true;
			o->reject_hint = hint;
			o->log_term = term_at(r, hint);
		}
		return;
	}
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (e->index <= last_index(r)) {
			if (term_at(r, e->index) == e->term)
				continue;
			/* Rule 3: a conflict deletes the entry and all that follow.
			 * Committed entries never conflict (Log Matching +
			 * Leader Completeness); refuse rather than corrupt. */
			if (e->index <= r->commit)
				return;
			log_truncate(r, e->index);
		}
		/* Rule 4: append new entries. */
		if (log_append(r, e->term, e->type, e->data.base, e->data.len))
			return;
	}
	uint64_t last_new = m->index + m->n_entries;
	/* Rule 5: commitIndex = min(leaderCommit, index of last new entry). */
	commit_to(r, m->commit < last_new ? m->commit : last_new);
	ack(r, m->from, last_new);
}

/* §7 InstallSnapshot receiver. */
static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
	const struct raft_snapshot_meta *s = &m->snapshot;
	if (s->index <= r->commit) {
		ack(r, m->from, r->commit);
		return;
	}
	if (term_at(r, s->index) == s->term && s->index > r->snap_index) {
		/* §7: "if existing log entry has same index and term as
		 * snapshot's last included entry, retain log entries following
		 * it": the snapshot only tells us what is committed. */
		commit_to(r, s->index);
		ack(r, m->from, r->commit);
		return;
	}
	/* Discard the entire log; the state machine restarts from the snapshot. */
	free_entries(r, 0, r->log.n);
	r->log.n = 0;
	r->snap_index = s->index;
	r->snap_term = s->term;
	r->snap_conf = s->conf;
	r->conf = r->prev_conf = s->conf;
	r->conf_index = r->prev_conf_index = s->index;
	r->commit = r->applied = r->emitted = s->index;
	r->stable = r->stable < s->index ? r->stable : s->index;
	r->unsent_from = s->index + 1;
	r->truncate_from = 0;
	r->snap_pending = true;
	r->up_snap = *s;
	r->up_snap_data = m->snapshot_data;
	struct persist_rec *rec = VEC_PUSH(r, r->recs);
	if (rec)
		*rec = (struct persist_rec){
		    .seq = r->seq_issued + 1, .index = s->index, .term = s->term};
	ack(r, m->from, s->index);
}

/* --------------------------------------------------------- leader side */

static void maybe_send_timeout_now(struct raft *r, const struct progress *pr)
{
	if (r->transferee == pr->id && pr->match == last_index(r)) {
		out_msg(r, RAFT_MSG_TIMEOUT_NOW, pr->id);
		/* TimeoutNow is sent once; the transfer window stays open until
		 * the target wins or the election timeout aborts it. */
	}
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
	struct progress *pr = progress(r, m->from);
	/* Within a term a follower only holds our entries: an ack beyond our
	 * log is corrupt input; ignore it rather than trust it. */
	if (!pr || (!m->reject && m->index > last_index(r)))
		return;
	pr->active = true;
	if (m->reject) {
		uint64_t next_probe = m->reject_hint;
		if (m->log_term > 0)
			next_probe = find_conflict_by_term(r, m->reject_hint, m->log_term);
		bool changed = false;
		if (pr->state == PR_REPLICATE) {
			if (m->index > pr->match) {
				pr_become_probe(pr);
				changed = true;
			}
		} else if (pr->next - 1 == m->index) {
			uint64_t n = m->index < next_probe + 1 ? m->index : next_probe + 1;
			pr->next = n > pr->match + 1 ? n : pr->match + 1;
			pr->paused = false;
			changed = true;
		}
		if (changed)
			send_append(r, pr, true);
		return;
	}
	bool updated = false;
	if (m->index > pr->match) {
		pr->match = m->index;
		updated = true;
	}
	if (pr->next < m->index + 1)
		pr->next = m->index + 1;
	if (pr->state == PR_PROBE) {
		pr_become_replicate(pr);
	} else if (pr->state == PR_SNAPSHOT) {
		if (pr->match >= pr->pending_snapshot)
			pr_become_replicate(pr);
	} else {
		infl_free_to(r, pr, m->index);
	}
	if (updated && maybe_commit(r))
		bcast_append(r);
	while (send_append(r, pr, false))
		;
	maybe_send_timeout_now(r, pr);
}

static void handle_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
	struct progress *pr = progress(r, m->from);
	if (!pr)
		return;
	pr->active = true;
	pr->paused = false;
	if (m->ctx > pr->read_ack)
		pr->read_ack = m->ctx;
	/* The follower is alive; AppendEntries filling the window may have
	 * been lost: free one slot so the pipeline probes again (etcd does the
	 * same, Inflights.FreeFirstOne). */
	if (pr->state == PR_REPLICATE && infl_full(r, pr) && pr->infl_count) {
		pr->infl_total -= pr->infl_bytes[pr->infl_start];
		pr->infl_start = (pr->infl_start + 1) % r->cfg.max_inflight;
		pr->infl_count--;
	}
	/* Send even when there is nothing new (etcd's sendAppend here): the
	 * AppendEntries that moved pr->next past pr->match may all have been
	 * lost, and with no proposal to follow nothing else would ever reach
	 * the follower. An empty one at next - 1 costs little; a follower that
	 * lacks that index rejects it and we probe back (§5.3). */
	if (pr->match < last_index(r) || pr->state == PR_PROBE)
		send_append(r, pr, true);
	release_reads(r);
}

/* ------------------------------------------------------------------ step */

static bool conf_valid(const struct raft_conf *c)
{
	if (c->n_voters == 0 || c->n_voters > RAFT_MAX_MEMBERS ||
	    c->n_learners > RAFT_MAX_MEMBERS - c->n_voters)
		return false;
	for (uint32_t i = 0; i < c->n_voters; i++)
		if (c->voters[i] == RAFT_NONE || id_in(c->voters, i, c->voters[i]))
			return false;
	for (uint32_t i = 0; i < c->n_learners; i++)
		if (c->learners[i] == RAFT_NONE || id_in(c->learners, i, c->learners[i]) ||
		    raft_conf_is_voter(c, c->learners[i]))
			return false;
	return true;
}

/* A peer may be broken or hostile: nothing it sends may crash the core,
 * overflow its arithmetic or break an invariant raft_check() checks. What
 * a legitimate leader of msg.term could never send is refused here. */
int raft_msg_check(const struct raft_msg *m)
{
	if (m->type == 0 || m->type > RAFT_MSG_TYPE_MAX || m->from == RAFT_NONE)
		return CAIRN_EINVAL;
	if (m->term > RAFT_MAX_INDEX || m->index > RAFT_MAX_INDEX || m->log_term > RAFT_MAX_INDEX ||
	    m->commit > RAFT_MAX_INDEX || m->reject_hint > RAFT_MAX_INDEX)
		return CAIRN_EINVAL;
	if (m->n_entries &&
	    (m->type != RAFT_MSG_APPEND || !m->entries || m->n_entries > RAFT_MAX_INDEX - m->index))
		return CAIRN_EINVAL;
	/* §5.3: entries follow msg.index; a log's terms never decrease and no
	 * entry is newer than the leader sending it. */
	uint64_t t = m->log_term;
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (e->index != m->index + 1 + i || e->term < t || e->term > m->term ||
		    e->type > RAFT_ENTRY_CONF || (e->data.len && !e->data.base))
			return CAIRN_EINVAL;
		t = e->term;
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		const struct raft_snapshot_meta *s = &m->snapshot;
		if (s->index == 0 || s->index > RAFT_MAX_INDEX || s->term == 0 ||
		    s->term > m->term || !conf_valid(&s->conf) ||
		    (m->snapshot_data.len && !m->snapshot_data.base))
			return CAIRN_EINVAL;
	}
	return 0;
}

static void step_message(struct raft *r, const struct raft_msg *m)
{
	uint8_t t = m->type;
	if (m->from == r->id || raft_msg_check(m) != 0)
		return;
	if (m->term > r->term) {
		if (t == RAFT_MSG_VOTE || t == RAFT_MSG_PRE_VOTE) {
			/* D§4.2.3: a member that heard from a leader within the
			 * minimum election timeout ignores (pre)votes, unless the
			 * leader itself asked for the election (transfer). */
			bool lease = r->cfg.check_quorum && r->leader != RAFT_NONE &&
			             r->election_elapsed < r->cfg.election_ticks;
			if (lease && !m->transfer)
				return;
		}
		if (t == RAFT_MSG_PRE_VOTE || (t == RAFT_MSG_PRE_VOTE_RESP && !m->reject)) {
			/* D§9.6: PreVote traffic never changes a term. */
		} else if (t == RAFT_MSG_APPEND || t == RAFT_MSG_HEARTBEAT ||
		           t == RAFT_MSG_SNAPSHOT) {
			become_follower(r, m->term, m->from);
		} else {
			/* §5.1: adopt the term. Figure 2 restarts the election timer
			 * only on hearing from the leader or granting a vote: a
			 * member whose (pre)vote requests keep failing must not
			 * keep a better candidate from timing out. */
			unsigned elapsed = r->election_elapsed, timeout = r->rand_timeout;
			become_follower(r, m->term, RAFT_NONE);
			r->election_elapsed = elapsed;
			r->rand_timeout = timeout;
		}
	} else if (m->term < r->term) {
		if ((r->cfg.check_quorum || r->cfg.pre_vote) &&
		    (t == RAFT_MSG_APPEND || t == RAFT_MSG_HEARTBEAT)) {
			/* A stale leader whose followers moved on (possibly via
			 * PreVote without it noticing) learns our term and steps
			 * down (etcd raft.go "stale leader" case). */
			out_msg(r, RAFT_MSG_APPEND_RESP, m->from);
		} else if (t == RAFT_MSG_PRE_VOTE) {
			struct raft_msg *o = out_msg(r, RAFT_MSG_PRE_VOTE_RESP, m->from);
			if (o)
				o->reject = true;
		}
		return; /* §5.1: stale term, ignore */
	}

	switch (t) {
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PRE_VOTE: {
		/* §5.2: one vote per term, first come first served;
		 * §5.4.1: only for a log at least as up-to-date as ours. */
		bool can = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
		           (t == RAFT_MSG_PRE_VOTE && m->term > r->term);
		bool grant = can && up_to_date(r, m->index, m->log_term);
		uint8_t rt = t == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
		struct raft_msg o = {
		    .type = rt, .from = r->id, .to = m->from, .term = m->term, .reject = !grant};
		if (!grant)
			o.term = r->term;
		if (grant && t == RAFT_MSG_VOTE) {
			r->vote = m->from;
			r->election_elapsed = 0;
			hold(r, &o); /* the vote must be durable first (Figure 2) */
		} else {
			struct raft_msg *p = out_msg(r, rt, m->from);
			if (p)
				*p = o;
		}
		break;
	}
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PRE_VOTE_RESP: {
		bool pre = t == RAFT_MSG_PRE_VOTE_RESP;
		if (r->role != (pre ? RAFT_PRE_CANDIDATE : RAFT_CANDIDATE))
			break;
		if (pre && m->term != r->term + 1 && !m->reject)
			break;
		int res = tally(r, m->from, !m->reject);
		if (res > 0) {
			if (pre)
				become_candidate(r, false);
			else
				become_leader(r);
		} else if (res < 0) {
			become_follower(r, r->term, RAFT_NONE);
		}
		break;
	}
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		if (r->role == RAFT_LEADER)
			break; /* cannot happen: one leader per term (§5.2) */
		if (r->role != RAFT_FOLLOWER || r->leader != m->from)
			become_follower(r, m->term, m->from);
		r->election_elapsed = 0;
		if (t == RAFT_MSG_APPEND) {
			handle_append(r, m);
		} else if (t == RAFT_MSG_SNAPSHOT) {
			handle_snapshot(r, m);
		} else {
			if (m->commit <= last_index(r))
				commit_to(r, m->commit);
			struct raft_msg *o = out_msg(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
			if (o)
				o->ctx = m->ctx;
		}
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			handle_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER)
			handle_heartbeat_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		/* D§3.10: the transfer target starts an election at once,
		 * without PreVote and overriding its peers' leader lease. */
		if (r->role != RAFT_LEADER)
			campaign(r, false, true);
		break;
	case RAFT_MSG_READ_INDEX:
		if (r->role != RAFT_LEADER || handle_read(r, m->from, m->ctx) != 0) {
			struct raft_msg *o = out_msg(r, RAFT_MSG_READ_INDEX_RESP, m->from);
			if (o) {
				o->ctx = m->ctx;
				o->reject = true;
			}
		}
		break;
	case RAFT_MSG_READ_INDEX_RESP: {
		struct raft_read_state *rs = VEC_PUSH(r, r->ready);
		if (rs)
			*rs = (struct raft_read_state){.ctx = m->ctx,
			                               .index = m->index,
			                               .status =
			                                   m->reject ? CAIRN_ELEADERCHANGED : 0};
		break;
	}
	default:
		break;
	}
}

static void tick(struct raft *r)
{
	r->election_elapsed++;
	if (r->role != RAFT_LEADER) {
		if (r->election_elapsed >= r->rand_timeout)
			campaign(r, r->cfg.pre_vote, false);
		return;
	}
	for (unsigned i = 0; i < r->n_prs; i++) {
		struct progress *pr = &r->prs[i];
		/* A snapshot that got no answer (lost, or refused by the
		 * member) is retried through probing. */
		if (pr->state == PR_SNAPSHOT && ++pr->snap_ticks >= 2 * r->cfg.election_ticks)
			pr_become_probe(pr);
	}
	if (r->election_elapsed >= r->cfg.election_ticks) {
		r->election_elapsed = 0;
		if (r->cfg.check_quorum) {
			/* D§6.2: a leader that did not hear from a quorum in an
			 * election timeout steps down. */
			unsigned n = 0;
			for (uint32_t i = 0; i < r->conf.n_voters; i++) {
				uint64_t id = r->conf.voters[i];
				struct progress *pr = progress(r, id);
				if (id == r->id || (pr && pr->active))
					n++;
			}
			for (unsigned i = 0; i < r->n_prs; i++)
				r->prs[i].active = false;
			if (n < quorum(&r->conf)) {
				become_follower(r, r->term, RAFT_NONE);
				return;
			}
		}
		r->transferee = RAFT_NONE; /* D§3.10: abort a transfer that took too long */
	}
	if (++r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		bcast_heartbeat(r);
	}
}

static int propose(struct raft *r, const struct raft_event *ev, struct raft_update *up)
{
	if (r->role != RAFT_LEADER)
		return CAIRN_ENOTLEADER;
	if (r->transferee != RAFT_NONE)
		return CAIRN_EPROPOSALDROPPED; /* D§3.10: stop accepting clients */
	uint8_t type = ev->propose.type;
	if (type == RAFT_ENTRY_CONF) {
		struct raft_conf_change cc;
		struct raft_conf tmp = r->conf;
		if (raft_conf_change_decode(ev->propose.data.base, ev->propose.data.len, &cc) ||
		    raft_conf_apply(&tmp, &cc))
			return CAIRN_EINVAL;
		/* D§4.1: one change at a time; and only once an entry of this
		 * term is committed (raft-dev 2015 single-server change fix). */
		if (r->pending_conf_index > r->applied || !committed_in_term(r))
			return CAIRN_ECONFCHANGE;
	} else if (type != RAFT_ENTRY_NORMAL) {
		return CAIRN_EINVAL;
	}
	int rv = log_append(r, r->term, type, ev->propose.data.base, ev->propose.data.len);
	if (rv)
		return rv;
	if (type == RAFT_ENTRY_CONF)
		r->pending_conf_index = last_index(r);
	up->proposed_index = last_index(r);
	up->proposed_term = r->term;
	for (unsigned i = 0; i < r->n_prs; i++)
		send_append(r, &r->prs[i], false);
	maybe_commit(r); /* a single voter commits on persist */
	return 0;
}

/* Applies configuration changes in (applied, index]: they take effect on
 * application (see raft.h). */
static int apply_to(struct raft *r, uint64_t index)
{
	if (index > r->emitted)
		return CAIRN_EINVAL;
	for (uint64_t i = r->applied + 1; i <= index; i++) {
		const struct raft_entry *e = entry_at(r, i);
		struct raft_conf_change cc;
		if (!e || e->type != RAFT_ENTRY_CONF ||
		    raft_conf_change_decode(e->data.base, e->data.len, &cc))
			continue;
		struct raft_conf c = r->conf;
		/* A member started without the bootstrap configuration cannot
		 * rebuild it from changes: it waits for a snapshot rather than
		 * invent a cluster (see raft_config.initial_conf). */
		if (r->conf.n_voters == 0 || raft_conf_apply(&c, &cc))
			continue; /* deterministic no-op on every member */
		r->prev_conf = r->conf;
		r->prev_conf_index = r->conf_index;
		r->conf = c;
		r->conf_index = i;
		if (r->role == RAFT_LEADER) {
			sync_progress(r);
			bcast_append(r); /* new members learn of us now */
			if (r->transferee && !raft_conf_is_voter(&r->conf, r->transferee))
				r->transferee = RAFT_NONE;
		}
	}
	if (index > r->applied)
		r->applied = index;
	if (r->role == RAFT_LEADER) {
		if (!raft_conf_is_voter(&r->conf, r->id)) {
			/* D§4.2.2: a leader removed from the configuration steps
			 * down once the removal is committed (here: applied). */
			become_follower(r, r->term, RAFT_NONE);
		} else if (maybe_commit(r)) {
			bcast_append(r);
		}
	}
	return 0;
}

static void on_persisted(struct raft *r, uint64_t seq)
{
	size_t k = 0;
	for (size_t i = 0; i < r->recs.n; i++) {
		struct persist_rec *rec = &r->recs.v[i];
		if (rec->seq > seq) {
			r->recs.v[k++] = *rec;
			continue;
		}
		if (rec->index <= last_index(r) && rec->index > r->stable &&
		    term_at(r, rec->index) == rec->term)
			r->stable = rec->index;
	}
	r->recs.n = k;
	if (seq > r->seq_persisted)
		r->seq_persisted = seq;
	if (r->role == RAFT_LEADER) {
		struct progress *self = progress(r, r->id);
		if (self && r->stable > self->match)
			self->match = r->stable;
		if (maybe_commit(r))
			bcast_append(r);
	}
}

/* Assembles *up from the step's work. */
static void finalize(struct raft *r, struct raft_update *up)
{
	uint64_t last = last_index(r);
	bool hs_changed = r->term != r->last_hs.term || r->vote != r->last_hs.vote ||
	                  r->commit != r->last_hs.commit;
	bool ents = r->unsent_from <= last;
	if (r->snap_pending || r->truncate_from || ents || hs_changed) {
		up->persist_seq = ++r->seq_issued;
		if (r->snap_pending) {
			up->snapshot = &r->up_snap;
			up->snapshot_data = r->up_snap_data;
		}
		up->truncate_from = r->truncate_from;
		if (ents) {
			up->entries = entry_at(r, r->unsent_from);
			up->n_entries = (size_t)(last - r->unsent_from + 1);
			struct persist_rec *rec = VEC_PUSH(r, r->recs);
			if (rec)
				*rec = (struct persist_rec){
				    .seq = up->persist_seq, .index = last, .term = last_term(r)};
			r->unsent_from = last + 1;
		}
		if (hs_changed) {
			up->hard_state_changed = true;
			up->hard_state = (struct raft_hard_state){r->term, r->vote, r->commit};
			r->last_hs = up->hard_state;
		}
	} else {
		/* Nothing new to persist: what was held for "this" update only
		 * needs the previous ones. */
		for (size_t i = r->held.n; i > 0 && r->held.v[i - 1].seq > r->seq_issued; i--)
			r->held.v[i - 1].seq = r->seq_issued;
	}
	r->snap_pending = false;
	r->truncate_from = 0;
	release_held(r);
	for (size_t i = 0; i < r->out.n; i++) {
		struct raft_msg *m = &r->out.v[i];
		if (m->n_entries) {
			m->entries = entry_at(r, r->out_lo.v[i]);
			if (!m->entries || r->out_lo.v[i] + m->n_entries - 1 > last)
				m->n_entries = 0, m->entries = NULL;
		}
	}
	up->msgs = r->out.v;
	up->n_msgs = r->out.n;
	/* Only locally durable entries are applied: a restart then never finds
	 * applied state ahead of its log. */
	uint64_t c = r->commit < r->stable ? r->commit : r->stable;
	if (c > r->emitted) {
		up->committed = entry_at(r, r->emitted + 1);
		up->n_committed = (size_t)(c - r->emitted);
		r->emitted = c;
	}
	up->reads = r->ready.v;
	up->n_reads = r->ready.n;
	up->role = r->role;
	up->leader = r->leader;
	up->term = r->term;
	up->role_changed = r->role != r->last_role || r->leader != r->last_leader;
	r->last_role = r->role;
	r->last_leader = r->leader;
}

int raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *up)
{
	int rv = 0;
	memset(up, 0, sizeof(*up));
	r->out.n = r->out_lo.n = 0;
	r->ready.n = 0;
	r->err = 0;
	switch (ev->type) {
	case RAFT_EVENT_TICK:
		tick(r);
		break;
	case RAFT_EVENT_RECEIVE:
		if (!ev->receive.msg)
			rv = CAIRN_EINVAL;
		else
			step_message(r, ev->receive.msg);
		break;
	case RAFT_EVENT_PROPOSE:
		rv = propose(r, ev, up);
		break;
	case RAFT_EVENT_PERSISTED:
		if (ev->persisted.seq > r->seq_issued)
			rv = CAIRN_EINVAL;
		else
			on_persisted(r, ev->persisted.seq);
		break;
	case RAFT_EVENT_SNAPSHOT_INSTALLED:
		rv = apply_to(r, ev->snapshot_installed.index);
		break;
	case RAFT_EVENT_APPLIED:
		rv = apply_to(r, ev->applied.index);
		break;
	case RAFT_EVENT_READ_INDEX:
		if (r->role == RAFT_LEADER) {
			rv = handle_read(r, r->id, ev->read_index.ctx);
		} else if (r->leader != RAFT_NONE) {
			struct raft_msg *m = out_msg(r, RAFT_MSG_READ_INDEX, r->leader);
			if (m)
				m->ctx = ev->read_index.ctx;
		} else {
			rv = CAIRN_ENOLEADER;
		}
		break;
	case RAFT_EVENT_TRANSFER: {
		uint64_t to = ev->transfer.to;
		if (r->role != RAFT_LEADER) {
			rv = CAIRN_ENOTLEADER;
		} else if (!raft_conf_is_voter(&r->conf, to)) {
			rv = CAIRN_EINVAL;
		} else if (to != r->id && r->transferee != to) {
			/* D§3.10: bring the target up to date, then TimeoutNow. */
			r->transferee = to;
			r->election_elapsed = 0;
			struct progress *pr = progress(r, to);
			if (pr) {
				send_append(r, pr, false);
				maybe_send_timeout_now(r, pr);
			}
		}
		break;
	}
	case RAFT_EVENT_CAMPAIGN:
		if (!promotable(r))
			rv = CAIRN_EINVAL;
		else
			campaign(r, false, false);
		break;
	default:
		rv = CAIRN_EINVAL;
	}
	finalize(r, up);
	if (rv == 0 && r->err)
		rv = r->err;
	return rv;
}

/* -------------------------------------------------------------- snapshots */

int raft_snapshot_meta_at(const struct raft *r, uint64_t index, struct raft_snapshot_meta *out)
{
	if (index <= r->snap_index)
		return CAIRN_ESNAPOUTOFDATE;
	if (index > r->applied)
		return CAIRN_EINVAL;
	out->index = index;
	out->term = term_at(r, index);
	if (index >= r->conf_index)
		out->conf = r->conf;
	else if (index >= r->prev_conf_index)
		out->conf = r->prev_conf;
	else
		return CAIRN_EINVAL;
	return 0;
}

int raft_compact(struct raft *r, uint64_t index)
{
	struct raft_snapshot_meta meta;
	int rv = raft_snapshot_meta_at(r, index, &meta);
	if (rv)
		return rv;
	size_t drop = (size_t)(index - r->snap_index);
	free_entries(r, 0, drop);
	memmove(r->log.v, r->log.v + drop, (r->log.n - drop) * sizeof(*r->log.v));
	r->log.n -= drop;
	r->snap_index = meta.index;
	r->snap_term = meta.term;
	r->snap_conf = meta.conf;
	return 0;
}

/* --------------------------------------------------------------- lifecycle */

struct load_ctx {
	struct raft *r;
	uint64_t expect;
};

static int load_cb(void *arg, const struct raft_entry *e)
{
	struct load_ctx *lc = arg;
	if (e->index != lc->expect || e->term < last_term(lc->r))
		return CAIRN_ECORRUPT;
	lc->expect++;
	return log_append(lc->r, e->term, e->type, e->data.base, e->data.len);
}

int raft_new(const struct raft_config *cfg, const struct raft_storage *st, struct raft **out)
{
	if (!cfg || cfg->id == RAFT_NONE || !st)
		return CAIRN_EINVAL;
	struct raft_alloc al = {NULL, lib_malloc, lib_realloc, lib_free};
	if (cfg->alloc)
		al = *cfg->alloc;
	struct raft *r = al.malloc_fn(al.ctx, sizeof(*r));
	if (!r)
		return CAIRN_ENOMEM;
	memset(r, 0, sizeof(*r));
	r->al = al;
	r->cfg = *cfg;
	if (!r->cfg.election_ticks)
		r->cfg.election_ticks = 10;
	if (!r->cfg.heartbeat_ticks)
		r->cfg.heartbeat_ticks = 1;
	if (!r->cfg.max_msg_bytes)
		r->cfg.max_msg_bytes = 1 << 20;
	if (!r->cfg.max_inflight)
		r->cfg.max_inflight = 256;
	if (!r->cfg.max_pending_reads)
		r->cfg.max_pending_reads = 4096;
	r->cfg.initial_conf = NULL;
	r->cfg.alloc = NULL;
	r->id = cfg->id;
	r->rng = cfg->seed * 0x9E3779B97F4A7C15ULL + cfg->id;
	if (!r->rng)
		r->rng = 1;

	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	uint64_t last;
	int rv = st->initial_state(st->ctx, &hs, &snap);
	if (rv == 0)
		rv = st->last_index(st->ctx, &last);
	if (rv) {
		raft_free(r);
		return rv;
	}
	r->snap_index = snap.index;
	r->snap_term = snap.term;
	r->snap_conf = snap.conf;
	if (snap.conf.n_voters == 0 && snap.index == 0 && cfg->initial_conf)
		r->snap_conf = *cfg->initial_conf;
	r->conf = r->prev_conf = r->snap_conf;
	r->conf_index = r->prev_conf_index = snap.index;
	if (last > snap.index) {
		struct load_ctx lc = {r, snap.index + 1};
		rv = st->entries(st->ctx, snap.index + 1, last, 0, load_cb, &lc);
		if (rv == 0 && lc.expect != last + 1)
			rv = CAIRN_ECORRUPT;
		if (rv) {
			raft_free(r);
			return rv;
		}
	}
	/* A term is persisted before or with any entry of it (§5.1, I2): a log
	 * or snapshot of a later term than the hard state is corrupt (a lost
	 * or rolled back hard state; running on would forget a vote). */
	if (last_term(r) > hs.term) {
		raft_free(r);
		return CAIRN_ECORRUPT;
	}
	r->term = hs.term;
	r->vote = hs.vote;
	r->commit = hs.commit < snap.index ? snap.index : hs.commit;
	if (r->commit > last_index(r))
		r->commit = last_index(r);
	r->stable = last_index(r);
	r->unsent_from = r->stable + 1;
	r->applied = r->emitted = snap.index;
	r->last_hs = (struct raft_hard_state){r->term, r->vote, r->commit};
	r->role = r->last_role = RAFT_FOLLOWER;
	reset_timers(r);
	*out = r;
	return 0;
}

void raft_free(struct raft *r)
{
	if (!r)
		return;
	free_entries(r, 0, r->log.n);
	for (unsigned i = 0; i < 2 * RAFT_MAX_MEMBERS; i++) {
		r_free(r, r->prs[i].infl);
		r_free(r, r->prs[i].infl_bytes);
	}
	r_free(r, r->log.v);
	r_free(r, r->reads.v);
	r_free(r, r->recs.v);
	r_free(r, r->held.v);
	r_free(r, r->out.v);
	r_free(r, r->out_lo.v);
	r_free(r, r->ready.v);
	r_free(r, r);
}

/* ----------------------------------------------------------------- queries */

void raft_get_status(const struct raft *r, struct raft_status *s)
{
	*s = (struct raft_status){.id = r->id,
	                          .role = r->role,
	                          .leader = r->leader,
	                          .term = r->term,
	                          .vote = r->vote,
	                          .commit = r->commit,
	                          .applied = r->applied,
	                          .first_index = r->snap_index + 1,
	                          .last_index = last_index(r),
	                          .stable_index = r->stable,
	                          .snap_index = r->snap_index,
	                          .snap_term = r->snap_term,
	                          .transferee = r->transferee,
	                          .conf = r->conf};
}

int raft_progress_match(const struct raft *r, uint64_t id, uint64_t *match)
{
	if (r->role != RAFT_LEADER)
		return CAIRN_ENOTLEADER;
	struct progress *pr = progress((struct raft *)r, id);
	if (!pr)
		return CAIRN_ENOTFOUND;
	*match = pr->match;
	return 0;
}

int raft_log_term(const struct raft *r, uint64_t index, uint64_t *term)
{
	*term = 0;
	if (index < r->snap_index)
		return CAIRN_ELOGCOMPACTED;
	if (index > last_index(r))
		return CAIRN_ELOGUNAVAILABLE;
	*term = term_at(r, index);
	return 0;
}

const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index)
{
	return entry_at(r, index);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			if (buf)                                                                   \
				snprintf(buf, len, __VA_ARGS__);                                   \
			return CAIRN_ECORRUPT;                                                     \
		}                                                                                  \
	} while (0)

int raft_check(const struct raft *r, char *buf, size_t len)
{
	uint64_t prev = r->snap_term;
	for (size_t i = 0; i < r->log.n; i++) {
		const struct raft_entry *e = &r->log.v[i];
		/* I1 (§5.3): contiguous, terms non-decreasing. */
		CHECK(e->index == r->snap_index + 1 + i, "I1: entry %zu has index %llu", i,
		      (unsigned long long)e->index);
		CHECK(e->term >= prev, "I1: term decreases at %llu", (unsigned long long)e->index);
		/* I2 (§5.1): terms only grow, and entries come from leaders of
		 * terms we have seen. */
		CHECK(e->term <= r->term, "I2: entry %llu term %llu > current %llu",
		      (unsigned long long)e->index, (unsigned long long)e->term,
		      (unsigned long long)r->term);
		prev = e->term;
	}
	/* I3 (Figure 2): lastApplied <= commitIndex <= last log index. */
	CHECK(r->snap_index <= r->applied && r->applied <= r->emitted && r->emitted <= r->commit &&
	          r->commit <= last_index(r),
	      "I3: snap %llu applied %llu emitted %llu commit %llu last %llu",
	      (unsigned long long)r->snap_index, (unsigned long long)r->applied,
	      (unsigned long long)r->emitted, (unsigned long long)r->commit,
	      (unsigned long long)last_index(r));
	/* I4 (§5.2): candidates and leaders voted for themselves. */
	CHECK(r->role == RAFT_FOLLOWER || r->role == RAFT_PRE_CANDIDATE || r->vote == r->id,
	      "I4: role %s but vote %llu", raft_role_name(r->role), (unsigned long long)r->vote);
	CHECK(r->role != RAFT_LEADER || r->leader == r->id, "I4: leader field");
	/* I6: durability bookkeeping. */
	CHECK(r->stable <= last_index(r) && r->unsent_from <= last_index(r) + 1,
	      "I6: stable %llu unsent %llu last %llu", (unsigned long long)r->stable,
	      (unsigned long long)r->unsent_from, (unsigned long long)last_index(r));
	if (r->role == RAFT_LEADER) {
		const struct progress *self = NULL;
		for (unsigned i = 0; i < r->n_prs; i++)
			if (r->prs[i].id == r->id)
				self = &r->prs[i];
		/* I5 (D§10.2.1): own match only from durable entries. */
		CHECK(!self || self->match <= r->stable, "I5: self match %llu > stable %llu",
		      (unsigned long long)self->match, (unsigned long long)r->stable);
		for (unsigned i = 0; i < r->n_prs; i++) {
			const struct progress *pr = &r->prs[i];
			CHECK(pr->match < pr->next || pr->id == r->id,
			      "progress %llu: match %llu next %llu", (unsigned long long)pr->id,
			      (unsigned long long)pr->match, (unsigned long long)pr->next);
			CHECK(pr->match <= last_index(r) || pr->id == r->id,
			      "progress %llu: match beyond log", (unsigned long long)pr->id);
		}
	}
	return 0;
}

const char *raft_role_name(uint8_t role)
{
	static const char *const names[] = {"follower", "pre-candidate", "candidate", "leader"};
	return role <= RAFT_LEADER ? names[role] : "?";
}

const char *raft_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
	    "?",           "append",        "append-resp",    "vote",           "vote-resp",
	    "pre-vote",    "pre-vote-resp", "heartbeat",      "heartbeat-resp", "snapshot",
	    "timeout-now", "read-index",    "read-index-resp"};
	return type <= RAFT_MSG_TYPE_MAX ? names[type] : "?";
}
