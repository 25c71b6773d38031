/*
 * raft_sim.c — the deterministic simulator (see raft_sim.h).
 *
 * HOW A TICK RUNS: every member that is up gets RAFT_EVENT_TICK; then the
 * simulator repeatedly delivers the earliest message that is due and
 * completes storage writes that are due, until nothing due is left (a
 * message with delay 0 is delivered within the same tick). Each raft_step
 * result goes through handle_update(): the persist part is deep-copied to
 * the member's pending-write queue, messages are deep-copied into the
 * network, committed entries are applied to the member's state machine and
 * acknowledged with RAFT_EVENT_APPLIED, read states are checked.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft_codec.h"
#include "tests/raft_sim.h"

struct sim_pend {
	uint64_t due;
	uint64_t seq;
	bool has_snap;
	struct raft_snapshot_meta snap;
	uint64_t snap_applied, snap_hash;
	uint64_t trunc;
	struct raft_entry *ents;
	size_t n;
	bool hs_changed;
	struct raft_hard_state hs;
};

struct sim_net_msg {
	uint64_t due;
	uint64_t seq;
	struct raft_msg m;
	struct raft_entry *ents;
	uint8_t snapdata[16];
};

static int fail(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int k = snprintf(s->err, sizeof(s->err), "t=%llu: ", (unsigned long long)s->now);
	vsnprintf(s->err + k, sizeof(s->err) - (size_t)k, fmt, ap);
	va_end(ap);
	s->failed = true;
	if (s->o.trace)
		fprintf(s->o.trace, "INVARIANT VIOLATED: %s\n", s->err);
	return -1;
}

/* With trace_all, the cut links as one line ("net: 1->2,3 2->1 cut"),
 * printed before the first trace line after they changed. */
static void trace_net(struct sim *s)
{
	FILE *f = s->o.trace;
	s->net_changed = false;
	fprintf(f, "t=%llu net:", (unsigned long long)s->now);
	bool any = false;
	for (unsigned a = 1; a <= SIM_MAX_NODES; a++) {
		bool first = true;
		for (unsigned b = 1; b <= SIM_MAX_NODES; b++) {
			if (!s->cut[a][b] || a == b)
				continue;
			if (first)
				fprintf(f, " %u->", a);
			fprintf(f, first ? "%u" : ",%u", b);
			first = false;
			any = true;
		}
	}
	fprintf(f, "%s\n", any ? " cut" : " all links up");
}

static void vtrace(struct sim *s, const char *fmt, va_list ap)
{
	if (!s->o.trace)
		return;
	if (s->o.trace_all && s->net_changed)
		trace_net(s);
	fprintf(s->o.trace, "t=%llu ", (unsigned long long)s->now);
	vfprintf(s->o.trace, fmt, ap);
	fputc('\n', s->o.trace);
}

static void trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vtrace(s, fmt, ap);
	va_end(ap);
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vtrace(s, fmt, ap);
	va_end(ap);
}

uint64_t sim_rand(struct sim *s)
{
	/* splitmix64 */
	uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

double sim_frand(struct sim *s)
{
	return (double)(sim_rand(s) >> 11) / 9007199254740992.0;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		fprintf(stderr, "raft_sim: out of memory\n");
		abort();
	}
	return q;
}

#define GROW(arr, cap, need)                                                                       \
	do {                                                                                       \
		if ((need) > (cap)) {                                                              \
			size_t nc_ = (cap) ? (cap) : 16;                                           \
			while (nc_ < (need))                                                       \
				nc_ *= 2;                                                          \
			(arr) = xrealloc((arr), nc_ * sizeof(*(arr)));                             \
			memset((arr) + (cap), 0, (nc_ - (cap)) * sizeof(*(arr)));                  \
			(cap) = nc_;                                                               \
		}                                                                                  \
	} while (0)

static uint64_t entry_hash(const struct raft_entry *e)
{
	uint64_t h = 1469598103934665603ULL;
	const uint8_t *p = e->data.base;
	for (size_t i = 0; i < e->data.len; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	h ^= e->term * 0x9E3779B97F4A7C15ULL ^ e->index * 0xC2B2AE3D27D4EB4FULL ^ e->type;
	return h ? h : 1;
}

static uint64_t chain(uint64_t prev, const struct raft_entry *e)
{
	uint64_t h = (prev ^ entry_hash(e)) * 0xFF51AFD7ED558CCDULL;
	h ^= h >> 33;
	return h ? h : 1;
}

static struct raft_entry *copy_entries(const struct raft_entry *src, size_t n)
{
	if (!n)
		return NULL;
	size_t bytes = n * sizeof(*src);
	for (size_t i = 0; i < n; i++)
		bytes += src[i].data.len;
	struct raft_entry *e = xrealloc(NULL, bytes);
	uint8_t *d = (uint8_t *)(e + n);
	for (size_t i = 0; i < n; i++) {
		e[i] = src[i];
		if (src[i].data.len) {
			memcpy(d, src[i].data.base, src[i].data.len);
			e[i].data.base = d;
			d += src[i].data.len;
		} else {
			e[i].data.base = NULL;
		}
	}
	return e;
}

static struct raft_conf initial_conf(const struct sim *s)
{
	struct raft_conf c = {0};
	for (unsigned i = 1; i <= s->o.n; i++)
		c.voters[c.n_voters++] = i;
	return c;
}

static int start_node(struct sim *s, struct sim_node *n)
{
	struct raft_conf ic = initial_conf(s);
	struct raft_config cfg = {.id = n->id,
	                          .election_ticks = s->o.election_ticks,
	                          .heartbeat_ticks = s->o.heartbeat_ticks,
	                          .seed = sim_rand(s),
	                          .pre_vote = s->o.pre_vote,
	                          .check_quorum = s->o.check_quorum,
	                          .max_msg_bytes = s->o.max_msg_bytes ? s->o.max_msg_bytes : 256,
	                          .max_inflight = 8,
	                          .max_inflight_bytes = s->o.max_inflight_bytes,
	                          .initial_conf = &ic};
	struct raft_storage st = raft_mem_storage_iface(n->disk);
	int rv = raft_new(&cfg, &st, &n->r);
	if (rv)
		return fail(s, "raft_new(%llu): %s", (unsigned long long)n->id, cairn_strerror(rv));
	n->state = SIM_UP;
	n->lead_term = 0;
	n->commit_seen = 0;
	struct raft_status st2;
	raft_get_status(n->r, &st2);
	n->commit_seen = st2.commit;
	return 0;
}

int sim_init(struct sim *s, const struct sim_opts *o)
{
	memset(s, 0, sizeof(*s));
	s->o = *o;
	if (!s->o.election_ticks)
		s->o.election_ticks = 10;
	if (!s->o.heartbeat_ticks)
		s->o.heartbeat_ticks = 2;
	s->rng = o->seed ^ 0x5DEECE66DULL;
	s->o.trace_all = o->trace && o->trace_all;
	if (s->o.trace_all)
		fprintf(
		    o->trace,
		    "sim: %u members, seed %llu, election %u heartbeat %u ticks, drop %.2f dup "
		    "%.2f, delay <= %u ticks, late %.3f, persist <= %u ticks, compact every %u, "
		    "%zu msg bytes, %zu in-flight bytes, prevote %d checkquorum %d codec %d\n",
		    o->n, (unsigned long long)o->seed, s->o.election_ticks, s->o.heartbeat_ticks,
		    o->drop, o->dup, o->max_delay, o->late, o->max_persist_delay,
		    o->compact_threshold, o->max_msg_bytes ? o->max_msg_bytes : 256,
		    o->max_inflight_bytes, o->pre_vote, o->check_quorum, o->codec);
	for (unsigned i = 1; i <= o->n; i++) {
		struct sim_node *n = &s->nodes[i];
		n->id = i;
		n->original = true;
		if (raft_mem_storage_new(&n->disk))
			return fail(s, "oom");
		if (start_node(s, n))
			return -1;
	}
	s->n_nodes = o->n;
	return 0;
}

static void free_pend(struct sim_node *n)
{
	for (size_t i = 0; i < n->npend; i++)
		free(n->pend[i].ents);
	n->npend = 0;
}

void sim_fini(struct sim *s)
{
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		raft_free(n->r);
		raft_mem_storage_free(n->disk);
		free_pend(n);
		free(n->pend);
		free(n->lead_terms);
	}
	for (size_t i = 0; i < s->nnet; i++)
		free(s->net[i].ents);
	free(s->net);
	free(s->leader_of_term);
	free(s->comm);
	free(s->sm_at);
	free(s->lm_head);
	free(s->lm);
	free(s->reads);
}

/* ------------------------------------------------------------ checking */

static uint64_t log_term(const struct sim_node *n, uint64_t i)
{
	uint64_t t;
	return raft_log_term(n->r, i, &t) == 0 ? t : 0;
}

/* §5.2 Election Safety: at most one leader per term. */
static int check_election(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	if (st->role != RAFT_LEADER)
		return 0;
	GROW(s->leader_of_term, s->cap_lot, st->term + 1);
	uint64_t *l = &s->leader_of_term[st->term];
	if (*l && *l != n->id)
		return fail(s, "election safety: %llu and %llu both lead term %llu",
		            (unsigned long long)*l, (unsigned long long)n->id,
		            (unsigned long long)st->term);
	*l = n->id;
	return 0;
}

/* Commit bookkeeping, run when a member's commit index grows:
 *  - every committed entry is the same everywhere (the basis of §5.4.3);
 *  - a leader commits only what is durable on a quorum of its voters
 *    (§5.4.2 with persistence, D§10.2.1 and Figure 2 "stable storage"). */
static int check_commit(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	if (st->commit <= n->commit_seen) {
		n->commit_seen = st->commit;
		return 0;
	}
	GROW(s->comm, s->cap_comm, st->commit + 1);
	for (uint64_t i = n->commit_seen + 1; i <= st->commit; i++) {
		const struct raft_entry *e = raft_log_entry(n->r, i);
		if (!e)
			continue; /* covered by a snapshot */
		struct sim_commit *c = &s->comm[i];
		uint64_t h = entry_hash(e);
		if (c->term == 0) {
			*c = (struct sim_commit){.term = e->term, .hash = h, .seen_term = st->term};
			s->n_commits++;
		} else if (c->term != e->term || c->hash != h) {
			return fail(
			    s,
			    "state machine safety: member %llu commits index %llu term %llu, "
			    "already committed with term %llu",
			    (unsigned long long)n->id, (unsigned long long)i,
			    (unsigned long long)e->term, (unsigned long long)c->term);
		}
		if (st->role == RAFT_LEADER) {
			unsigned have = 0;
			for (uint32_t v = 0; v < st->conf.n_voters; v++) {
				uint64_t id = st->conf.voters[v];
				if (id > s->n_nodes)
					continue;
				struct raft_mem_storage *d = s->nodes[id].disk;
				if (raft_mem_storage_snap_index(d) >= i ||
				    raft_mem_storage_term(d, i) == e->term)
					have++;
			}
			if (have < st->conf.n_voters / 2 + 1)
				return fail(s,
				            "committed but not durable on a quorum: leader %llu "
				            "index %llu term %llu on %u of %u voters",
				            (unsigned long long)n->id, (unsigned long long)i,
				            (unsigned long long)e->term, have, st->conf.n_voters);
		}
	}
	if (st->commit > s->max_commit)
		s->max_commit = st->commit;
	n->commit_seen = st->commit;
	return 0;
}

/* §5.3 Leader Append-Only: a leader never overwrites or deletes entries. */
static int check_append_only(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	if (st->role != RAFT_LEADER) {
		n->lead_term = 0;
		return 0;
	}
	if (n->lead_term == st->term) {
		if (st->last_index < n->lead_from + n->lead_n - 1)
			return fail(s, "leader append-only: leader %llu log shrank to %llu",
			            (unsigned long long)n->id, (unsigned long long)st->last_index);
		for (size_t k = 0; k < n->lead_n; k++) {
			uint64_t i = n->lead_from + k;
			if (i <= st->snap_index)
				continue;
			if (log_term(n, i) != n->lead_terms[k])
				return fail(s, "leader append-only: leader %llu rewrote index %llu",
				            (unsigned long long)n->id, (unsigned long long)i);
		}
	}
	n->lead_term = st->term;
	n->lead_from = st->first_index;
	n->lead_n = (size_t)(st->last_index - st->snap_index);
	GROW(n->lead_terms, n->lead_cap, n->lead_n + 1);
	for (size_t k = 0; k < n->lead_n; k++)
		n->lead_terms[k] = log_term(n, st->first_index + k);
	return 0;
}

/* §5.4 Leader Completeness: a leader of term T holds every entry committed
 * in a term before T. */
static int check_completeness(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
	if (st->role != RAFT_LEADER)
		return 0;
	for (uint64_t i = st->snap_index + 1; i <= s->max_commit && i < s->cap_comm; i++) {
		const struct sim_commit *c = &s->comm[i];
		if (c->term == 0 || c->seen_term >= st->term)
			continue;
		if (log_term(n, i) != c->term)
			return fail(
			    s,
			    "leader completeness: leader %llu of term %llu lacks index %llu "
			    "(term %llu) committed in term %llu",
			    (unsigned long long)n->id, (unsigned long long)st->term,
			    (unsigned long long)i, (unsigned long long)c->term,
			    (unsigned long long)c->seen_term);
	}
	return 0;
}

/* §5.3 Log Matching: same index and term => identical up to there. */
static int check_log_matching(struct sim *s)
{
	struct raft_status st[SIM_MAX_NODES + 1];
	for (unsigned a = 1; a <= s->n_nodes; a++)
		if (s->nodes[a].state == SIM_UP)
			raft_get_status(s->nodes[a].r, &st[a]);
	for (unsigned a = 1; a <= s->n_nodes; a++) {
		struct sim_node *na = &s->nodes[a];
		if (na->state != SIM_UP)
			continue;
		for (unsigned b = a + 1; b <= s->n_nodes; b++) {
			struct sim_node *nb = &s->nodes[b];
			if (nb->state != SIM_UP)
				continue;
			const struct raft_status *sa = &st[a], *sb = &st[b];
			uint64_t lo =
			    (sa->snap_index > sb->snap_index ? sa->snap_index : sb->snap_index) + 1;
			uint64_t hi =
			    sa->last_index < sb->last_index ? sa->last_index : sb->last_index;
			bool matched = false;
			for (uint64_t i = hi; i >= lo && i > 0; i--) {
				const struct raft_entry *ea = raft_log_entry(na->r, i);
				const struct raft_entry *eb = raft_log_entry(nb->r, i);
				if (!matched && ea->term == eb->term)
					matched = true;
				if (matched &&
				    (ea->term != eb->term || ea->data.len != eb->data.len ||
				     (ea->data.len &&
				      memcmp(ea->data.base, eb->data.base, ea->data.len) != 0)))
					return fail(
					    s,
					    "log matching: members %u and %u agree at a later "
					    "index but differ at %llu",
					    a, b, (unsigned long long)i);
			}
		}
	}
	return 0;
}

/* One entry of n's log (with the term before it; 0 when compacted away)
 * against every entry any log ever held at its index. */
static int lm_entry(struct sim *s, struct sim_node *n, const struct raft_entry *e, uint64_t prev)
{
	GROW(s->lm_head, s->cap_lmh, e->index + 1);
	uint64_t h = entry_hash(e);
	for (uint32_t k = s->lm_head[e->index]; k; k = s->lm[k - 1].next) {
		struct sim_lm *r = &s->lm[k - 1];
		if (r->term != e->term)
			continue;
		if (r->hash != h || (prev && r->prev_term && r->prev_term != prev))
			return fail(s,
			            "log matching: member %llu holds index %llu term %llu with %s "
			            "than another log had at the same index and term",
			            (unsigned long long)n->id, (unsigned long long)e->index,
			            (unsigned long long)e->term,
			            r->hash != h ? "other content" : "another term before it");
		if (!r->prev_term)
			r->prev_term = prev;
		return 0;
	}
	GROW(s->lm, s->cap_lm, s->nlm + 1);
	s->lm[s->nlm++] = (struct sim_lm){
	    .term = e->term, .hash = h, .prev_term = prev, .next = s->lm_head[e->index]};
	s->lm_head[e->index] = (uint32_t)s->nlm;
	return 0;
}

/*
 * §5.3 Log Matching after every step of member n, in the form its proof
 * uses: "a leader creates at most one entry with a given log index in a
 * given term" and AppendEntries' consistency check makes an entry's
 * predecessor part of its identity. So every (index, term) any log ever
 * held must have one content and one term before it, across members and
 * time. If that holds for every entry when it enters a log, two logs with
 * the same (index, term) agree on the entry and on the term before it,
 * hence (by induction down to the higher snapshot index) on the whole
 * prefix: Log Matching against every other member's current log, and
 * against logs of members that are down.
 *
 * Entries enter a log only in a step's update (up->entries: appends after
 * a truncation, proposals, a leader's no-op) or at a restart, so only
 * those are checked: O(new entries) per step. A log that changed with no
 * entries reported (n->lm_last/lm_last_term moved; up NULL after a
 * restart) is checked whole. check_log_matching() still compares every
 * pair of logs entry by entry at the end of every tick, which catches a
 * log changed behind the update's back.
 */
static int check_log_step(struct sim *s, struct sim_node *n, const struct raft_update *up)
{
	struct raft_status st;
	raft_get_status(n->r, &st);
	uint64_t lo = st.last_index + 1;
	if (up && up->n_entries)
		lo = up->entries[0].index;
	else if (!up || st.last_index != n->lm_last ||
	         log_term(n, st.last_index) != n->lm_last_term)
		lo = st.first_index;
	if (lo < st.first_index)
		return fail(s, "member %llu reports entry %llu below its first index %llu",
		            (unsigned long long)n->id, (unsigned long long)lo,
		            (unsigned long long)st.first_index);
	for (uint64_t i = lo; i <= st.last_index; i++) {
		const struct raft_entry *e = raft_log_entry(n->r, i);
		if (!e || e->index != i)
			return fail(s, "member %llu: no entry %llu in its log",
			            (unsigned long long)n->id, (unsigned long long)i);
		if (lm_entry(s, n, e, log_term(n, i - 1)))
			return -1;
	}
	n->lm_last = st.last_index;
	n->lm_last_term = log_term(n, st.last_index);
	return 0;
}

static int check_node(struct sim *s, struct sim_node *n)
{
	char buf[256];
	if (raft_check(n->r, buf, sizeof(buf)))
		return fail(s, "raft_check(%llu): %s", (unsigned long long)n->id, buf);
	struct raft_status st;
	raft_get_status(n->r, &st);
	if (check_election(s, n, &st) || check_commit(s, n, &st) || check_append_only(s, n, &st) ||
	    check_completeness(s, n, &st))
		return -1;
	return 0;
}

int sim_check(struct sim *s)
{
	if (s->failed)
		return -1;
	for (unsigned i = 1; i <= s->n_nodes; i++)
		if (s->nodes[i].state == SIM_UP && check_node(s, &s->nodes[i]))
			return -1;
	return check_log_matching(s);
}

/* ------------------------------------------------------- state machine */

/* §5.4.3 State Machine Safety: no two members apply different entries at
 * an index (checked through the hash chain of applied entries). */
static int sm_record(struct sim *s, struct sim_node *n, uint64_t index, uint64_t hash)
{
	GROW(s->sm_at, s->cap_sm, index + 1);
	if (s->sm_at[index] == 0)
		s->sm_at[index] = hash;
	else if (s->sm_at[index] != hash)
		return fail(s, "state machine safety: member %llu state at %llu differs",
		            (unsigned long long)n->id, (unsigned long long)index);
	return 0;
}

static int sm_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
	if (e->index <= n->sm_applied)
		return 0; /* already in the state machine (restart, snapshot) */
	if (e->index != n->sm_applied + 1)
		return fail(s, "member %llu applies %llu after %llu", (unsigned long long)n->id,
		            (unsigned long long)e->index, (unsigned long long)n->sm_applied);
	n->sm_hash = chain(n->sm_hash, e);
	n->sm_applied = e->index;
	return sm_record(s, n, e->index, n->sm_hash);
}

/* ------------------------------------------------------------- network */

static void net_send(struct sim *s, struct sim_node *from, const struct raft_msg *m)
{
	s->n_msgs++;
	if (m->to == 0 || m->to > SIM_MAX_NODES)
		return;
	if (s->cut[m->from][m->to] || sim_frand(s) < s->o.drop) {
		trace(s, "%llu->%llu %s DROPPED", (unsigned long long)m->from,
		      (unsigned long long)m->to, raft_msg_type_name(m->type));
		return;
	}
	struct raft_msg mm = *m;
	uint8_t snapdata[16];
	if (m->type == RAFT_MSG_SNAPSHOT) {
		/* The member fills the snapshot data: its state machine. */
		memcpy(snapdata, &from->sm_applied, 8);
		memcpy(snapdata + 8, &from->sm_hash, 8);
		mm.snapshot_data = (struct raft_buf){snapdata, 16};
	}
	struct raft_msg_decoded *d = NULL;
	if (s->o.codec) {
		/* Over the wire format: what arrives is what decoding gives. */
		uint8_t *buf;
		size_t len;
		int rv = raft_msg_encode(&mm, &buf, &len);
		if (rv == 0) {
			rv = raft_msg_decode(buf, len, &d);
			free(buf);
		}
		if (rv) {
			fail(s, "codec: %s for %s", cairn_strerror(rv),
			     raft_msg_type_name(m->type));
			return;
		}
		mm = d->msg;
	}
	int copies = sim_frand(s) < s->o.dup ? 2 : 1;
	uint64_t seq0 = s->net_seq;
	uint64_t late = 0; /* delay of a late copy, for the trace */
	for (int c = 0; c < copies; c++) {
		GROW(s->net, s->capnet, s->nnet + 1);
		struct sim_net_msg *nm = &s->net[s->nnet++];
		nm->due = s->now + (s->o.max_delay ? sim_rand(s) % (s->o.max_delay + 1) : 0);
		if (s->o.late > 0 && sim_frand(s) < s->o.late) {
			/* Stuck in a queue or a slow retransmission: it arrives
			 * after elections have moved the terms on. */
			unsigned et = s->o.election_ticks;
			nm->due = s->now + 2 * et + sim_rand(s) % (3 * et + 1);
			late = nm->due - s->now;
			s->n_late++;
		}
		nm->seq = s->net_seq++;
		nm->m = mm;
		nm->ents = copy_entries(mm.entries, mm.n_entries);
		nm->m.entries = nm->ents;
		if (mm.type == RAFT_MSG_SNAPSHOT) {
			if (mm.snapshot_data.len != 16) {
				fail(s, "snapshot data lost in transit");
				break;
			}
			memcpy(nm->snapdata, mm.snapshot_data.base, 16);
			nm->m.snapshot_data = (struct raft_buf){nm->snapdata, 16};
		}
	}
	raft_msg_decoded_free(d);
	/* A snapshot's (index, term) is the snapshot's: msg.index/log_term
	 * are unused. With trace_all each copy is numbered for its delivery
	 * line. */
	bool snap = m->type == RAFT_MSG_SNAPSHOT;
	char ids[64] = "";
	if (s->o.trace_all) {
		int k = snprintf(ids, sizeof(ids), copies > 1 ? " #%llu,#%llu" : " #%llu",
		                 (unsigned long long)seq0, (unsigned long long)seq0 + 1);
		if (late)
			snprintf(ids + k, sizeof(ids) - (size_t)k, " LATE %llu ticks",
			         (unsigned long long)late);
	}
	trace(s, "%llu->%llu %s term=%llu idx=%llu lt=%llu n=%u commit=%llu%s%s%s",
	      (unsigned long long)m->from, (unsigned long long)m->to, raft_msg_type_name(m->type),
	      (unsigned long long)m->term,
	      (unsigned long long)(snap ? m->snapshot.index : m->index),
	      (unsigned long long)(snap ? m->snapshot.term : m->log_term), m->n_entries,
	      (unsigned long long)m->commit, m->reject ? " reject" : "", copies > 1 ? " DUP" : "",
	      ids);
}

/* ------------------------------------------------------------- updates */

static int handle_update(struct sim *s, struct sim_node *n, const struct raft_update *up);

/* trace_all: a line for each client event stepped (ticks are the t=
 * prefix; deliveries and persist completions have their own lines), with
 * its outcome, before the lines of what it caused. */
static void trace_event(struct sim *s, struct sim_node *n, const struct raft_event *ev,
                        const struct raft_update *up, int rv)
{
	unsigned long long id = n->id;
	const char *res = rv ? cairn_errname(rv) : "ok";
	switch (ev->type) {
	case RAFT_EVENT_PROPOSE:
		if (rv == 0)
			trace(s, "%llu propose %s -> index %llu term %llu", id,
			      ev->propose.type == RAFT_ENTRY_CONF ? "conf" : "entry",
			      (unsigned long long)up->proposed_index,
			      (unsigned long long)up->proposed_term);
		else
			trace(s, "%llu propose -> %s", id, res);
		break;
	case RAFT_EVENT_READ_INDEX:
		trace(s, "%llu read ctx=%llu -> %s", id, (unsigned long long)ev->read_index.ctx,
		      res);
		break;
	case RAFT_EVENT_TRANSFER:
		trace(s, "%llu transfer to %llu -> %s", id, (unsigned long long)ev->transfer.to,
		      res);
		break;
	case RAFT_EVENT_CAMPAIGN:
		trace(s, "%llu campaign -> %s", id, res);
		break;
	default:
		break;
	}
	for (size_t i = 0; i < up->n_reads; i++)
		trace(s, "%llu read ctx=%llu ready: index %llu%s%s", id,
		      (unsigned long long)up->reads[i].ctx, (unsigned long long)up->reads[i].index,
		      up->reads[i].status ? ", failed " : "",
		      up->reads[i].status ? cairn_errname(up->reads[i].status) : "");
}

int sim_step(struct sim *s, uint64_t id, const struct raft_event *ev)
{
	if (s->failed)
		return -1;
	struct sim_node *n = &s->nodes[id];
	if (n->state != SIM_UP)
		return CAIRN_ESTOPPED;
	struct raft_update up;
	int rv = raft_step(n->r, ev, &up);
	s->n_steps++;
	if (s->o.trace_all)
		trace_event(s, n, ev, &up, rv);
	if (handle_update(s, n, &up))
		return -1;
	return rv;
}

static int handle_update(struct sim *s, struct sim_node *n, const struct raft_update *up)
{
	if (up->role_changed)
		trace(s, "%llu is %s term=%llu leader=%llu", (unsigned long long)n->id,
		      raft_role_name(up->role), (unsigned long long)up->term,
		      (unsigned long long)up->leader);
	if (up->persist_seq) {
		GROW(n->pend, n->cappend, n->npend + 1);
		struct sim_pend *p = &n->pend[n->npend];
		uint64_t due =
		    s->now +
		    (s->o.max_persist_delay ? sim_rand(s) % (s->o.max_persist_delay + 1) : 0);
		if (n->npend && n->pend[n->npend - 1].due > due)
			due = n->pend[n->npend - 1].due; /* writes complete in order */
		*p = (struct sim_pend){.due = due,
		                       .seq = up->persist_seq,
		                       .trunc = up->truncate_from,
		                       .n = up->n_entries,
		                       .ents = copy_entries(up->entries, up->n_entries),
		                       .hs_changed = up->hard_state_changed,
		                       .hs = up->hard_state};
		if (up->snapshot) {
			p->has_snap = true;
			p->snap = *up->snapshot;
			if (up->snapshot_data.len != 16)
				return fail(s, "snapshot without data");
			memcpy(&p->snap_applied, up->snapshot_data.base, 8);
			memcpy(&p->snap_hash, (const uint8_t *)up->snapshot_data.base + 8, 8);
		}
		n->npend++;
	}
	for (size_t i = 0; i < up->n_msgs; i++)
		net_send(s, n, &up->msgs[i]);
	for (size_t i = 0; i < up->n_reads; i++) {
		const struct raft_read_state *rs = &up->reads[i];
		for (size_t k = 0; k < s->nreads; k++) {
			struct sim_read *r = &s->reads[k];
			if (r->ctx != rs->ctx)
				continue;
			if (rs->status == 0) {
				/* D§6.4: linearizable read index. */
				if (rs->index < r->min_index)
					return fail(
					    s,
					    "read index %llu on member %llu below commit %llu "
					    "known when the read was issued",
					    (unsigned long long)rs->index,
					    (unsigned long long)n->id,
					    (unsigned long long)r->min_index);
				s->n_reads_ok++;
			}
			s->reads[k] = s->reads[--s->nreads];
			break;
		}
	}
	uint64_t last_applied = 0;
	for (size_t i = 0; i < up->n_committed; i++) {
		if (sm_apply(s, n, &up->committed[i]))
			return -1;
		last_applied = up->committed[i].index;
	}
	if (check_log_step(s, n, up) || check_node(s, n))
		return -1;
	if (last_applied) {
		struct raft_event ev = {.type = RAFT_EVENT_APPLIED, .applied.index = last_applied};
		struct raft_update up2;
		int rv = raft_step(n->r, &ev, &up2);
		if (rv)
			return fail(s, "applied event: %s", cairn_strerror(rv));
		return handle_update(s, n, &up2);
	}
	return 0;
}

/* Completes the oldest pending write of n: the "disk" gets it, then the
 * core hears RAFT_EVENT_PERSISTED. */
static int complete_pend(struct sim *s, struct sim_node *n)
{
	struct sim_pend p = n->pend[0];
	memmove(n->pend, n->pend + 1, (n->npend - 1) * sizeof(*n->pend));
	n->npend--;
	struct raft_update fake = {.snapshot = p.has_snap ? &p.snap : NULL,
	                           .truncate_from = p.trunc,
	                           .n_entries = p.n,
	                           .entries = p.ents,
	                           .hard_state_changed = p.hs_changed,
	                           .hard_state = p.hs};
	int rv = raft_mem_storage_apply(n->disk, &fake);
	if (s->o.trace_all) {
		char what[160] = "";
		size_t k = 0;
		if (p.has_snap)
			k += (size_t)snprintf(what + k, sizeof(what) - k, " snapshot %llu/%llu",
			                      (unsigned long long)p.snap.index,
			                      (unsigned long long)p.snap.term);
		if (p.trunc)
			k += (size_t)snprintf(what + k, sizeof(what) - k, " truncate from %llu",
			                      (unsigned long long)p.trunc);
		if (p.n)
			k += (size_t)snprintf(what + k, sizeof(what) - k, " entries %llu-%llu",
			                      (unsigned long long)p.ents[0].index,
			                      (unsigned long long)p.ents[p.n - 1].index);
		if (p.hs_changed)
			snprintf(what + k, sizeof(what) - k, " term %llu vote %llu commit %llu",
			         (unsigned long long)p.hs.term, (unsigned long long)p.hs.vote,
			         (unsigned long long)p.hs.commit);
		trace(s, "%llu persisted seq %llu:%s", (unsigned long long)n->id,
		      (unsigned long long)p.seq, what);
	}
	free(p.ents);
	if (rv)
		return fail(s, "disk apply on %llu: %s", (unsigned long long)n->id,
		            cairn_strerror(rv));
	if (p.has_snap) {
		s->n_snapshots++;
		/* The member's store is replaced by the snapshot's. */
		n->sm_applied = p.snap_applied;
		n->sm_hash = p.snap_hash;
		if (p.snap_applied < p.snap.index)
			return fail(s, "snapshot data older than its metadata");
		if (sm_record(s, n, p.snap_applied, p.snap_hash))
			return -1;
		trace(s, "%llu installed snapshot %llu (state at %llu)", (unsigned long long)n->id,
		      (unsigned long long)p.snap.index, (unsigned long long)p.snap_applied);
	}
	struct raft_event ev = {.type = RAFT_EVENT_PERSISTED, .persisted.seq = p.seq};
	rv = sim_step(s, n->id, &ev);
	if (rv && !s->failed)
		return fail(s, "persisted event: %s", cairn_strerror(rv));
	return s->failed ? -1 : 0;
}

static int deliver(struct sim *s, size_t k)
{
	struct sim_net_msg nm = s->net[k];
	s->net[k] = s->net[--s->nnet];
	struct sim_node *to = &s->nodes[nm.m.to];
	int rv = 0;
	if (nm.m.type == RAFT_MSG_SNAPSHOT)
		nm.m.snapshot_data.base = nm.snapdata; /* the array moved it */
	bool up = nm.m.to <= s->n_nodes && to->state == SIM_UP;
	bool cut = s->cut[nm.m.from][nm.m.to];
	if (s->o.trace_all)
		trace(s, "%llu->%llu %s #%llu %s", (unsigned long long)nm.m.from,
		      (unsigned long long)nm.m.to, raft_msg_type_name(nm.m.type),
		      (unsigned long long)nm.seq,
		      cut  ? "lost (link cut)"
		      : up ? "delivered"
		           : "lost (member down)");
	if (up && !cut) {
		struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .receive.msg = &nm.m};
		rv = sim_step(s, nm.m.to, &ev) < 0 && s->failed ? -1 : 0;
	}
	free(nm.ents);
	return rv;
}

/* Delivers due messages and completes due writes until none is left. */
static int run_due(struct sim *s, bool all)
{
	for (unsigned guard = 0; guard < 200000; guard++) {
		if (s->failed)
			return -1;
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < s->nnet; i++) {
			const struct sim_net_msg *m = &s->net[i];
			if ((all || m->due <= s->now) &&
			    (best == SIZE_MAX || m->due < s->net[best].due ||
			     (m->due == s->net[best].due && m->seq < s->net[best].seq)))
				best = i;
		}
		if (best != SIZE_MAX) {
			if (deliver(s, best))
				return -1;
			continue;
		}
		bool any = false;
		for (unsigned i = 1; i <= s->n_nodes; i++) {
			struct sim_node *n = &s->nodes[i];
			if (n->state == SIM_UP && n->npend && (all || n->pend[0].due <= s->now)) {
				if (complete_pend(s, n))
					return -1;
				any = true;
			}
		}
		if (!any)
			return 0;
	}
	return fail(s, "livelock: messages keep flowing within one tick");
}

int sim_tick(struct sim *s)
{
	if (s->failed)
		return -1;
	s->now++;
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		if (s->nodes[i].state != SIM_UP)
			continue;
		struct raft_event ev = {.type = RAFT_EVENT_TICK};
		if (sim_step(s, i, &ev) < 0 && s->failed)
			return -1;
	}
	if (run_due(s, false))
		return -1;
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->state != SIM_UP || !s->o.compact_threshold)
			continue;
		struct raft_status st;
		raft_get_status(n->r, &st);
		if (st.applied >= st.snap_index + s->o.compact_threshold && sim_compact(s, i))
			return -1;
	}
	return check_log_matching(s);
}

int sim_stabilize(struct sim *s)
{
	if (run_due(s, true))
		return -1;
	return sim_check(s);
}

/* ------------------------------------------------------------- actions */

int sim_propose(struct sim *s, uint64_t id, const void *data, size_t len)
{
	struct raft_event ev = {.type = RAFT_EVENT_PROPOSE};
	uint8_t buf[8];
	if (!data) {
		uint64_t v = ++s->data_counter;
		memcpy(buf, &v, 8);
		data = buf;
		len = 8;
	}
	ev.propose.type = RAFT_ENTRY_NORMAL;
	ev.propose.data = (struct raft_buf){data, len};
	return sim_step(s, id, &ev);
}

int sim_conf_change(struct sim *s, uint64_t id, uint8_t type, uint64_t target)
{
	uint8_t buf[RAFT_CONF_CHANGE_SIZE];
	struct raft_conf_change cc = {.type = type, .id = target};
	raft_conf_change_encode(&cc, buf);
	struct raft_event ev = {.type = RAFT_EVENT_PROPOSE};
	ev.propose.type = RAFT_ENTRY_CONF;
	ev.propose.data = (struct raft_buf){buf, sizeof(buf)};
	int rv = sim_step(s, id, &ev);
	if (rv == 0) {
		s->n_conf++;
		trace(s, "%llu proposes conf change %u on %llu", (unsigned long long)id, type,
		      (unsigned long long)target);
	}
	return rv;
}

int sim_read(struct sim *s, uint64_t id)
{
	struct raft_event ev = {.type = RAFT_EVENT_READ_INDEX, .read_index.ctx = ++s->next_ctx};
	GROW(s->reads, s->capreads, s->nreads + 1);
	s->reads[s->nreads++] =
	    (struct sim_read){.ctx = ev.read_index.ctx, .node = id, .min_index = s->max_commit};
	int rv = sim_step(s, id, &ev);
	if (rv && s->nreads && s->reads[s->nreads - 1].ctx == ev.read_index.ctx)
		s->nreads--;
	return rv;
}

int sim_compact(struct sim *s, uint64_t id)
{
	struct sim_node *n = &s->nodes[id];
	struct raft_status st;
	raft_get_status(n->r, &st);
	struct raft_snapshot_meta meta;
	if (raft_snapshot_meta_at(n->r, st.applied, &meta))
		return 0; /* e.g. before an applied configuration change: later */
	if (raft_compact(n->r, st.applied))
		return fail(s, "compact failed");
	raft_mem_storage_compact(n->disk, &meta);
	trace(s, "%llu compacts to %llu", (unsigned long long)id, (unsigned long long)meta.index);
	return check_node(s, n);
}

void sim_crash(struct sim *s, uint64_t id)
{
	struct sim_node *n = &s->nodes[id];
	if (n->state != SIM_UP)
		return;
	trace(s, "%llu CRASHES (%zu writes lost)", (unsigned long long)id, n->npend);
	raft_free(n->r);
	n->r = NULL;
	free_pend(n);
	n->state = SIM_DOWN;
	n->lead_term = 0;
}

int sim_restart(struct sim *s, uint64_t id)
{
	struct sim_node *n = &s->nodes[id];
	if (n->state != SIM_DOWN)
		return 0;
	trace(s, "%llu RESTARTS", (unsigned long long)id);
	if (start_node(s, n))
		return -1;
	return check_log_step(s, n, NULL) || check_node(s, n) ? -1 : 0;
}

uint64_t sim_add_node(struct sim *s)
{
	if (s->n_nodes >= SIM_MAX_NODES)
		return 0;
	uint64_t id = ++s->n_nodes;
	struct sim_node *n = &s->nodes[id];
	memset(n, 0, sizeof(*n));
	n->id = id;
	if (raft_mem_storage_new(&n->disk) || start_node(s, n))
		return 0;
	trace(s, "%llu STARTS (new member)", (unsigned long long)id);
	return id;
}

void sim_cut(struct sim *s, uint64_t from, uint64_t to, bool cut)
{
	if (s->cut[from][to] != cut)
		s->net_changed = true;
	s->cut[from][to] = cut;
}

void sim_heal(struct sim *s)
{
	for (unsigned a = 1; a <= SIM_MAX_NODES; a++)
		for (unsigned b = 1; b <= SIM_MAX_NODES; b++)
			if (s->cut[a][b])
				s->net_changed = true;
	memset(s->cut, 0, sizeof(s->cut));
}

void sim_print_status(const struct sim *s, FILE *out)
{
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		const struct sim_node *n = &s->nodes[i];
		if (n->state != SIM_UP) {
			fprintf(out, "  %u: %s\n", i, n->state == SIM_DOWN ? "down" : "gone");
			continue;
		}
		struct raft_status st;
		raft_get_status(n->r, &st);
		fprintf(out,
		        "  %u: %-13s term=%llu leader=%llu commit=%llu applied=%llu last=%llu "
		        "snap=%llu voters=",
		        i, raft_role_name(st.role), (unsigned long long)st.term,
		        (unsigned long long)st.leader, (unsigned long long)st.commit,
		        (unsigned long long)st.applied, (unsigned long long)st.last_index,
		        (unsigned long long)st.snap_index);
		for (uint32_t v = 0; v < st.conf.n_voters; v++)
			fprintf(out, "%s%llu", v ? "," : "", (unsigned long long)st.conf.voters[v]);
		if (st.conf.n_learners) {
			fprintf(out, " learners=");
			for (uint32_t v = 0; v < st.conf.n_learners; v++)
				fprintf(out, "%s%llu", v ? "," : "",
				        (unsigned long long)st.conf.learners[v]);
		}
		fputc('\n', out);
	}
}

uint64_t sim_leader(const struct sim *s)
{
	uint64_t best = 0, bt = 0;
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		const struct sim_node *n = &s->nodes[i];
		if (n->state != SIM_UP)
			continue;
		struct raft_status st;
		raft_get_status(n->r, &st);
		if (st.role == RAFT_LEADER && st.term >= bt) {
			best = i;
			bt = st.term;
		}
	}
	return best;
}

bool sim_has_stable_leader(const struct sim *s)
{
	uint64_t l = sim_leader(s);
	if (!l)
		return false;
	struct raft_status ls;
	raft_get_status(s->nodes[l].r, &ls);
	unsigned follow = 0;
	for (uint32_t v = 0; v < ls.conf.n_voters; v++) {
		uint64_t id = ls.conf.voters[v];
		if (id > s->n_nodes || s->nodes[id].state != SIM_UP)
			continue;
		struct raft_status st;
		raft_get_status(s->nodes[id].r, &st);
		if (st.leader == l && st.term == ls.term)
			follow++;
	}
	return follow >= ls.conf.n_voters / 2 + 1;
}
