/*
 * test_raft_sim.c — randomized runs of the raft simulator (tests/raft_sim.h).
 *
 * Each seed builds a 3- or 5-member cluster with its own network weather
 * (drop, duplicate, delay, storage latency) and runs RAFT_STEPS ticks of
 * chaos: proposals, linearizable reads, crashes and restarts (losing
 * unpersisted writes), partitions (isolation, splits, one-way and partial
 * cuts), membership changes (add learner, promote, remove), leader
 * transfers and log compaction. A quarter of the seeds run "leader killer"
 * weather (leaders crash soon after taking proposals, one entry per
 * AppendEntries: the Figure 8 hunting ground), half send every message
 * through the wire codec, half deliver 1-4% of messages 2-5 election
 * timeouts late (stale terms arriving), and a quarter bound the entry
 * bytes in flight to a follower (raft_config.max_inflight_bytes) to a few
 * entries. Every step is checked against the safety invariants.
 *
 * Then the network heals (half the seeds keep one pair of voters cut, one
 * way or both) and every member restarts: a leader must be elected within
 * 10 election timeouts (liveness; the ratio over all seeds must be >=
 * 99.9%), every member it reaches must catch up with its commit index
 * without any new proposal (lost AppendEntries are resent on heartbeats
 * alone), and a proposal must then commit.
 *
 * Environment:
 *   RAFT_SEED=s      run only seed s with RAFT_NODES members (default 3),
 *                    printing the trace when RAFT_TRACE=1
 *   RAFT_SEEDS=n     seeds per cluster size (default 1000, under SAN=1 too)
 *   RAFT_STEPS=n     ticks per seed (default 2000)
 *   RAFT_SECONDS=n   soak: keep running new seeds for n seconds
 *   RAFT_SEED_BASE=b first seed (default 1)
 * A failing seed, or one that elects no leader after the heal, prints the
 * command that replays it with the whole trace (this binary, from argv[0]
 * or RAFT_BIN): the seed's settings, every send, delivery and loss, client
 * request, persist completion, crash, restart and network change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/raft_sim.h"

/* How to run this binary again, for the replay line: RAFT_BIN, else argv[0]
 * (so an ASan build names its own binary). */
static const char *self_bin = "build/tests/bin/test_raft_sim";

struct totals {
	unsigned long seeds, steps, live_ok, live_fail, max_live_ticks, partial, oneway;
	unsigned long long raft_steps, msgs, late, commits, reads, snapshots, confs;
};

static uint64_t pick_up(struct sim *s)
{
	uint64_t c[SIM_MAX_NODES];
	unsigned n = 0;
	for (unsigned i = 1; i <= s->n_nodes; i++)
		if (s->nodes[i].state == SIM_UP)
			c[n++] = i;
	return n ? c[sim_rand(s) % n] : 0;
}

/* Liveness without writes: once no more proposals come, every member the
 * leader can reach (both ways) applies the leader's commit index within a
 * few election timeouts, driven by heartbeats alone. A follower serving a
 * ReadIndex waits for exactly this; lost AppendEntries must not leave it
 * behind until the next write. Returns 0 or -1 with s->err set. */
static int check_catch_up(struct sim *s)
{
	unsigned limit = 5 * s->o.election_ticks;
	for (unsigned k = 0; k <= limit; k++) {
		uint64_t l = sim_leader(s);
		struct raft_status ls;
		if (l == 0)
			return 0; /* the leadership moved on: nothing to check */
		raft_get_status(s->nodes[l].r, &ls);
		uint64_t behind = 0;
		for (unsigned i = 1; i <= s->n_nodes && !behind; i++) {
			struct raft_status st;
			if (i == l || s->nodes[i].state != SIM_UP || s->cut[l][i] || s->cut[i][l])
				continue;
			if (!raft_conf_is_voter(&ls.conf, i) && !raft_conf_is_learner(&ls.conf, i))
				continue;
			raft_get_status(s->nodes[i].r, &st);
			if (st.applied < ls.commit)
				behind = i;
		}
		if (!behind)
			return 0;
		if (k == limit) {
			snprintf(s->err, sizeof(s->err),
			         "member %llu still behind leader %llu's commit %llu after %u idle "
			         "ticks",
			         (unsigned long long)behind, (unsigned long long)l,
			         (unsigned long long)ls.commit, limit);
			return -1;
		}
		if (sim_tick(s))
			return -1;
	}
	return 0;
}

static void partition(struct sim *s)
{
	unsigned nn = s->n_nodes;
	uint64_t a = 1 + sim_rand(s) % nn, b = 1 + sim_rand(s) % nn;
	switch (sim_rand(s) % 4) {
	case 0: /* isolate one member */
		sim_trace(s, "partition: isolate %llu", (unsigned long long)a);
		for (unsigned i = 1; i <= nn; i++) {
			sim_cut(s, a, i, true);
			sim_cut(s, i, a, true);
		}
		break;
	case 1: { /* split in two groups */
		uint64_t mask = sim_rand(s);
		char g[2][64] = {"", ""};
		for (unsigned i = 1; i <= nn; i++) {
			char *p = g[(mask >> i) & 1];
			size_t l = strlen(p);
			snprintf(p + l, sizeof(g[0]) - l, "%s%u", l ? "," : "", i);
		}
		sim_trace(s, "partition: split {%s} {%s}", g[0], g[1]);
		for (unsigned i = 1; i <= nn; i++)
			for (unsigned j = 1; j <= nn; j++)
				if (((mask >> i) & 1) != ((mask >> j) & 1))
					sim_cut(s, i, j, true);
		break;
	}
	case 2: /* one-way cut */
		sim_trace(s, "partition: one-way %llu->%llu", (unsigned long long)a,
		          (unsigned long long)b);
		if (a != b)
			sim_cut(s, a, b, true);
		break;
	default: /* partial: a and b cannot talk, both reach the others */
		sim_trace(s, "partition: pair %llu<->%llu", (unsigned long long)a,
		          (unsigned long long)b);
		if (a != b) {
			sim_cut(s, a, b, true);
			sim_cut(s, b, a, true);
		}
	}
}

/* Index of the entry proposing each member's removal (0: none). */
static uint64_t rm_index[SIM_MAX_NODES + 1];

static void conf_change(struct sim *s, uint64_t leader)
{
	struct raft_status st;
	raft_get_status(s->nodes[leader].r, &st);
	unsigned n0 = s->o.n;
	unsigned r = (unsigned)(sim_rand(s) % 3);
	if (r == 0 && st.conf.n_learners) {
		sim_conf_change(s, leader, RAFT_CC_PROMOTE, st.conf.learners[0]);
	} else if (r == 1 && st.conf.n_voters + st.conf.n_learners < n0 + 2 &&
	           s->n_nodes < SIM_MAX_NODES) {
		uint64_t id = sim_add_node(s);
		if (id)
			sim_conf_change(s, leader, RAFT_CC_ADD_LEARNER, id);
	} else if (st.conf.n_voters > n0 - 1 || st.conf.n_learners) {
		uint64_t victim;
		if (st.conf.n_learners && (sim_rand(s) & 1))
			victim = st.conf.learners[0];
		else if (st.conf.n_voters > n0 - 1)
			victim = st.conf.voters[sim_rand(s) % st.conf.n_voters];
		else
			return;
		if (sim_conf_change(s, leader, RAFT_CC_REMOVE, victim) == 0) {
			raft_get_status(s->nodes[leader].r, &st);
			rm_index[victim] = st.last_index;
		}
	}
}

/* Members whose removal the leader has applied stop for good (etcd stops a
 * removed member the same way). */
static void reap_removed(struct sim *s)
{
	uint64_t l = sim_leader(s);
	if (!l)
		return;
	struct raft_status st;
	raft_get_status(s->nodes[l].r, &st);
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->state == SIM_GONE || !rm_index[i] || st.applied < rm_index[i] ||
		    raft_conf_is_voter(&st.conf, i) || raft_conf_is_learner(&st.conf, i))
			continue;
		sim_crash(s, i);
		n->state = SIM_GONE;
	}
}

/* Can voters a and b stay cut (either way) without making the cluster
 * dead? Not if, in a configuration the cluster may still go through, they
 * are two of fewer than 3 live voters: then one of them is needed for any
 * quorum. The configurations are each member's applied one and those that
 * every configuration entry after it in its log (committed or not: it may
 * yet commit) makes in turn. */
static bool pair_needed(const struct sim *s, const struct raft_conf *c, uint64_t a, uint64_t b)
{
	unsigned live = 0;
	for (uint32_t v = 0; v < c->n_voters; v++)
		live += c->voters[v] <= s->n_nodes && s->nodes[c->voters[v]].state != SIM_GONE;
	return live < 3 && raft_conf_is_voter(c, a) && raft_conf_is_voter(c, b);
}

static bool pair_may_stay_cut(struct sim *s, uint64_t a, uint64_t b)
{
	for (unsigned i = 1; i <= s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		if (n->state != SIM_UP)
			continue;
		struct raft_status st;
		raft_get_status(n->r, &st);
		struct raft_conf c = st.conf;
		if (c.n_voters == 0)
			continue; /* unconfigured: waits for a snapshot */
		if (pair_needed(s, &c, a, b))
			return false;
		for (uint64_t k = st.applied + 1; k <= st.last_index; k++) {
			const struct raft_entry *e = raft_log_entry(n->r, k);
			struct raft_conf_change cc;
			if (!e || e->type != RAFT_ENTRY_CONF ||
			    raft_conf_change_decode(e->data.base, e->data.len, &cc) ||
			    raft_conf_apply(&c, &cc))
				continue;
			if (pair_needed(s, &c, a, b))
				return false;
		}
	}
	return true;
}

static int run_seed(unsigned nodes, uint64_t seed, unsigned steps, FILE *tr, struct totals *t)
{
	struct sim s;
	struct sim_opts o = {.n = nodes, .seed = seed, .trace = tr, .trace_all = true};
	/* Per-seed weather, from the seed itself. */
	uint64_t w = seed * 0x9E3779B97F4A7C15ULL + nodes;
	w ^= w >> 29;
	o.drop = (double)(w % 11) / 100.0;
	o.dup = (double)((w >> 8) % 6) / 100.0;
	o.max_delay = (unsigned)((w >> 16) % 4);
	o.max_persist_delay = (unsigned)((w >> 20) % 3);
	o.compact_threshold = 16 + (unsigned)((w >> 24) % 32);
	o.pre_vote = ((w >> 32) % 8) != 0;
	o.check_quorum = ((w >> 36) % 8) != 0;
	o.max_msg_bytes = (size_t)8 << ((w >> 40) % 6); /* 1..32 entries per message */
	o.codec = ((w >> 56) % 2) == 0;
	/* More weather from a second hash: the bits of w are all taken. */
	uint64_t w2 = (seed + 1) * 0xD1B54A32D192ED03ULL ^ nodes;
	w2 ^= w2 >> 31;
	/* A quarter of the seeds bound in-flight bytes to 4-7 entries' worth,
	 * below the 8-message window, so the byte bound is what pauses
	 * replication to a follower. (1-3 entries is too slow for the
	 * catch-up check below: a follower restarted 28 entries behind,
	 * one entry per round trip, took over 5 election timeouts.) */
	if (w2 % 4 == 0)
		o.max_inflight_bytes = 8 * (4 + (size_t)((w2 >> 2) % 4));
	if ((w2 >> 4) % 2)
		o.late = 0.01 * (double)(1 + (w2 >> 5) % 4);
	bool leader_killer = ((w >> 48) % 4) == 0;
	if (leader_killer) {
		o.max_msg_bytes = 8; /* one entry per AppendEntries */
		o.max_delay = 1 + (unsigned)((w >> 50) % 3);
		o.max_persist_delay = 1 + (unsigned)((w >> 52) % 2);
	}
	double pc = 0.002 + (double)((w >> 44) % 10) * 0.002; /* crashes per tick */
	memset(rm_index, 0, sizeof(rm_index));
	int rc = sim_init(&s, &o);
	sim_trace(&s, "driver: leader killer %d, crash p %.3f per tick, partial heal %d",
	          leader_killer, pc, (int)((w >> 60) & 1));
	for (unsigned step = 0; rc == 0 && step < steps; step++) {
		double p = sim_frand(&s);
		uint64_t l = sim_leader(&s);
		uint64_t any = pick_up(&s);
		if (leader_killer) {
			/* Figure 8 weather: leaders die soon after taking a
			 * proposal, before replicating much; a majority stays up. */
			unsigned down = 0;
			for (unsigned i = 1; i <= s.n_nodes; i++)
				down += s.nodes[i].state == SIM_DOWN;
			if (p < 0.3 && l)
				sim_propose(&s, l, NULL, 0);
			else if (p < 0.55 && l)
				sim_crash(&s, l);
			if (down > (nodes - 1) / 2 || sim_frand(&s) < 0.1) {
				for (unsigned i = 1; i <= s.n_nodes; i++)
					if (s.nodes[i].state == SIM_DOWN) {
						sim_restart(&s, i);
						break;
					}
			}
		} else if (p < 0.35) {
			if (l)
				sim_propose(&s, l, NULL, 0);
		} else if (p < 0.40) {
			if (any)
				sim_propose(&s, any, NULL, 0); /* usually ENOTLEADER */
		} else if (p < 0.45) {
			if (any)
				sim_read(&s, any);
		} else if (p < 0.45 + pc) {
			if (any)
				sim_crash(&s, any);
		} else if (p < 0.475 + pc) {
			for (unsigned i = 1; i <= s.n_nodes; i++)
				if (s.nodes[i].state == SIM_DOWN) {
					sim_restart(&s, i);
					break;
				}
		} else if (p < 0.485 + pc) {
			partition(&s);
		} else if (p < 0.50 + pc) {
			sim_heal(&s);
		} else if (p < 0.51 + pc) {
			if (l)
				conf_change(&s, l);
		} else if (p < 0.515 + pc) {
			if (l) {
				struct raft_status st;
				raft_get_status(s.nodes[l].r, &st);
				struct raft_event ev = {.type = RAFT_EVENT_TRANSFER};
				ev.transfer.to = st.conf.voters[sim_rand(&s) % st.conf.n_voters];
				sim_step(&s, l, &ev);
			}
		}
		reap_removed(&s);
		if (s.failed || sim_tick(&s))
			rc = -1;
	}
	/* Liveness: heal everything, restart everyone. */
	unsigned live_ticks = 0;
	bool live = false;
	if (rc == 0) {
		sim_trace(&s, "liveness: heal, restart everyone, no more drops or duplicates");
		sim_heal(&s);
		s.o.drop = s.o.dup = s.o.late = 0; /* what is late already still comes */
		for (unsigned i = 1; i <= s.n_nodes; i++)
			if (s.nodes[i].state == SIM_DOWN)
				sim_restart(&s, i);
		struct raft_status cs = {0};
		for (unsigned i = 1; i <= s.n_nodes; i++) {
			struct raft_status st;
			if (s.nodes[i].state != SIM_UP)
				continue;
			raft_get_status(s.nodes[i].r, &st);
			if (st.applied >= cs.applied)
				cs = st;
		}
		uint64_t pairs[RAFT_MAX_MEMBERS * RAFT_MAX_MEMBERS][2];
		unsigned np = 0;
		for (uint32_t i = 0; i < cs.conf.n_voters; i++)
			for (uint32_t j = i + 1; j < cs.conf.n_voters; j++)
				if (pair_may_stay_cut(&s, cs.conf.voters[i], cs.conf.voters[j])) {
					pairs[np][0] = cs.conf.voters[i];
					pairs[np++][1] = cs.conf.voters[j];
				}
		/* Half the seeds heal only partially: two voters a, b stay
		 * unable to talk, both ways or (a third of those) only a -> b.
		 * Live, given at least 3 voters (pair_may_stay_cut): the voters
		 * but one of the pair are a quorum, so a leader that one of the
		 * pair cannot hear still commits. The member that hears no
		 * leader cannot depose it: CheckQuorum's lease makes the others
		 * ignore its votes (D§4.2.3); under PreVote (D§9.6) it wins a
		 * pre-vote only with a log as up to date as a quorum's, i.e.
		 * when it missed none of the leader's entries, and then leads
		 * with a quorum that hears it. With neither option it can
		 * depose the leader again and again (the disruption they exist
		 * to stop), but each time another member, or itself once up to
		 * date, may be elected instead and hold: slower, not dead, so
		 * those seeds stay in. */
		if (((w >> 60) & 1) && np) {
			unsigned pk = (unsigned)(sim_rand(&s) % np);
			bool flip = sim_rand(&s) & 1;
			uint64_t a = pairs[pk][flip], b = pairs[pk][!flip];
			bool oneway = sim_rand(&s) % 3 == 0;
			sim_trace(&s, "liveness: %llu %s %llu stay cut", (unsigned long long)a,
			          oneway ? "->" : "<->", (unsigned long long)b);
			sim_cut(&s, a, b, true);
			if (!oneway)
				sim_cut(&s, b, a, true);
			t->partial++;
			t->oneway += oneway;
		}
		unsigned limit = 10 * s.o.election_ticks;
		for (live_ticks = 0; live_ticks <= limit && rc == 0; live_ticks++) {
			if (sim_has_stable_leader(&s)) {
				live = true;
				break;
			}
			if (sim_tick(&s))
				rc = -1;
		}
		if (live)
			rc = check_catch_up(&s);
		if (live && rc == 0) {
			/* ...and it makes progress: a proposal commits. */
			uint64_t l = sim_leader(&s);
			uint64_t before = s.n_commits;
			for (unsigned k = 0; k < 20 * s.o.election_ticks && rc == 0; k++) {
				l = sim_leader(&s);
				if (l && k % 5 == 0)
					sim_propose(&s, l, NULL, 0);
				if (sim_tick(&s))
					rc = -1;
				if (s.n_commits > before + 1)
					break;
			}
			if (rc == 0 && s.n_commits <= before + 1) {
				snprintf(s.err, sizeof(s.err), "no progress after heal");
				rc = -1;
			}
		}
	}
	if (tr)
		sim_print_status(&s, tr);
	if (rc == 0) {
		if (live)
			t->live_ok++;
		else
			t->live_fail++;
		if (live && live_ticks > t->max_live_ticks)
			t->max_live_ticks = live_ticks;
	}
	t->seeds++;
	t->steps += steps;
	t->raft_steps += s.n_steps;
	t->msgs += s.n_msgs;
	t->late += s.n_late;
	t->commits += s.n_commits;
	t->reads += s.n_reads_ok;
	t->snapshots += s.n_snapshots;
	t->confs += s.n_conf;
	if (rc)
		fprintf(stderr, "FAIL seed %llu (%u members): %s\n", (unsigned long long)seed,
		        nodes, s.err);
	else if (!live)
		fprintf(stderr,
		        "no leader within 10 election timeouts after heal: seed %llu (%u)\n",
		        (unsigned long long)seed, nodes);
	if ((rc || !live) && !tr)
		fprintf(stderr,
		        "  replay: RAFT_SEED=%llu RAFT_NODES=%u RAFT_STEPS=%u RAFT_TRACE=1 %s\n",
		        (unsigned long long)seed, nodes, steps, self_bin);
	sim_fini(&s);
	return rc;
}

static unsigned long env_ul(const char *name, unsigned long def)
{
	const char *v = getenv(name);
	return v && *v ? strtoul(v, NULL, 10) : def;
}

int main(int argc, char **argv)
{
	if (getenv("RAFT_BIN"))
		self_bin = getenv("RAFT_BIN");
	else if (argc > 0)
		self_bin = argv[0];
	unsigned steps = (unsigned)env_ul("RAFT_STEPS", 2000);
	struct totals t = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (getenv("RAFT_SEED")) {
		uint64_t seed = env_ul("RAFT_SEED", 1);
		unsigned nodes = (unsigned)env_ul("RAFT_NODES", 3);
		FILE *tr = env_ul("RAFT_TRACE", 0) ? stdout : NULL;
		int rc = run_seed(nodes, seed, steps, tr, &t);
		printf("seed %llu: %s, leader after heal: %s\n", (unsigned long long)seed,
		       rc ? "FAILED" : "ok", t.live_ok ? "yes" : "no");
		return rc ? 1 : 0;
	}
	unsigned long seeds = env_ul("RAFT_SEEDS", 1000);
	unsigned long secs = env_ul("RAFT_SECONDS", 0);
	uint64_t base = env_ul("RAFT_SEED_BASE", 1);
	int failures = 0;
	static const unsigned sizes[] = {3, 5};
	for (uint64_t k = 0;; k++) {
		if (secs) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((unsigned long)(t1.tv_sec - t0.tv_sec) >= secs)
				break;
		} else if (k >= seeds) {
			break;
		}
		for (unsigned z = 0; z < 2; z++)
			if (run_seed(sizes[z], base + k, steps, NULL, &t))
				failures++;
		if (failures >= 5)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	unsigned long lt = t.live_ok + t.live_fail;
	double ratio = lt ? (double)t.live_ok / (double)lt : 0;
	printf("raft sim: seeds from %llu: ", (unsigned long long)base);
	printf("%lu seeds (3 and 5 members) x %u steps = %lu ticks in %.1fs; "
	       "%llu core steps, %llu messages (%llu late), %llu entries committed, %llu reads, "
	       "%llu snapshots installed, %llu conf changes proposed\n",
	       t.seeds, steps, t.steps, el, t.raft_steps, t.msgs, t.late, t.commits, t.reads,
	       t.snapshots, t.confs);
	printf("liveness: leader within 10 election timeouts after heal in %lu/%lu seeds "
	       "(%.2f%%; %lu of them healed but for one cut pair of voters, %lu of those one "
	       "way), slowest %lu ticks\n",
	       t.live_ok, lt, 100.0 * ratio, t.partial, t.oneway, t.max_live_ticks);
	if (failures)
		printf("%d seeds FAILED\n", failures);
	return failures || ratio < 0.999 ? 1 : 0;
}
