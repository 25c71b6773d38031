/*
 * raft_sim.h — a deterministic simulator for the raft core.
 *
 * N members run the real core (raft/raft.c) over:
 *   - a virtual clock: sim_tick() advances it by one raft tick;
 *   - a network that delays (0..max_delay ticks, hence reorders; a few
 *     messages 2-5 election timeouts, so they arrive terms late), drops,
 *     duplicates and partitions (any set of directed links cut: symmetric,
 *     asymmetric, partial);
 *   - storage that completes asynchronously (0..max_persist_delay ticks,
 *     in order) on a raft_mem_storage "disk"; a crash loses every pending
 *     write, a restart recovers from the disk with a fresh struct raft;
 *   - a state machine per member (applied index + hash chain, durable like
 *     the store) that snapshots carry.
 * After every event delivered to a member it checks raft_check() and the
 * safety properties of Figure 3 (election safety, leader append-only, log
 * matching, leader completeness, state machine safety), "committed implies
 * durable on a quorum", and that reads are linearizable (a ReadIndex answer
 * is at least the highest commit index known anywhere when it was asked).
 * The first violation is kept in sim->err and every later call is a no-op.
 *
 * Everything is driven by sim_opts.seed: a run is replayable.
 */
#ifndef CAIRN_RAFT_SIM_H
#define CAIRN_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define SIM_MAX_NODES 16

struct sim_opts {
	unsigned n; /* initial voters, ids 1..n */
	uint64_t seed;
	unsigned election_ticks, heartbeat_ticks;
	double drop, dup;           /* probabilities per message */
	unsigned max_delay;         /* ticks */
	double late;                /* probability a message takes 2-5 election timeouts */
	unsigned max_persist_delay; /* ticks */
	unsigned compact_threshold; /* compact when applied - snap >= this; 0 = never */
	size_t max_msg_bytes;       /* per AppendEntries; entries carry 8 bytes */
	size_t max_inflight_bytes;  /* per follower; 0 = unbounded */
	bool pre_vote, check_quorum;
	bool codec;  /* send every message through raft_msg_encode/decode */
	FILE *trace; /* sends, role changes, crashes, ... when non-NULL */
	/* With trace: also the settings above, every event stepped (client
	 * proposals and reads, transfers, deliveries, persist completions)
	 * and the set of cut links whenever it changed: enough to follow a
	 * replay step by step. Scripted scenarios leave it off (their
	 * checked-in traces echo their own commands). */
	bool trace_all;
};

enum { SIM_DOWN = 0, SIM_UP, SIM_GONE };

struct sim_pend;

struct sim_node {
	uint64_t id;
	int state;
	bool original; /* bootstrapped with the initial configuration */
	struct raft *r;
	struct raft_mem_storage *disk;
	struct sim_pend *pend;
	size_t npend, cappend;
	uint64_t sm_applied, sm_hash;
	uint64_t commit_seen;
	/* leader append-only check */
	uint64_t lead_term;
	uint64_t *lead_terms;
	size_t lead_n, lead_cap;
	uint64_t lead_from;
	/* log matching: last index (and its term) when last checked */
	uint64_t lm_last, lm_last_term;
};

struct sim_net_msg;

struct sim {
	struct sim_opts o;
	uint64_t rng;
	uint64_t now;
	struct sim_node nodes[SIM_MAX_NODES + 1]; /* by id; [0] unused */
	unsigned n_nodes;                         /* ids 1..n_nodes exist */
	bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	struct sim_net_msg *net;
	size_t nnet, capnet;
	uint64_t net_seq;
	bool net_changed; /* cut links changed since last traced */
	/* global records */
	uint64_t *leader_of_term;
	size_t cap_lot;
	struct sim_commit *comm;
	size_t cap_comm;
	uint64_t max_commit;
	uint64_t *sm_at;
	size_t cap_sm;
	/* every (index, term) any log has held: lm_head[index] is 1 + the
	 * first of its records in lm (chained through next), 0 for none */
	uint32_t *lm_head;
	size_t cap_lmh;
	struct sim_lm *lm;
	size_t nlm, cap_lm;
	struct sim_read *reads;
	size_t nreads, capreads;
	uint64_t next_ctx;
	uint64_t data_counter;
	/* stats */
	uint64_t n_steps, n_msgs, n_late, n_commits, n_reads_ok, n_snapshots, n_conf;
	char err[512];
	bool failed;
};

struct sim_commit {
	uint64_t term;
	uint64_t hash;
	uint64_t seen_term; /* term of the first member that saw it committed */
};

struct sim_lm {
	uint64_t term;
	uint64_t hash;      /* of the entry (term, index, type, data) */
	uint64_t prev_term; /* term at index - 1 when it was appended; 0 unknown */
	uint32_t next;
};

struct sim_read {
	uint64_t ctx;
	uint64_t node;
	uint64_t min_index;
};

int sim_init(struct sim *s, const struct sim_opts *o);
/* A line in the trace (when tracing), for a driver's own notes. */
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fini(struct sim *s);
uint64_t sim_rand(struct sim *s);
double sim_frand(struct sim *s);

/* One tick of the virtual clock for every member, then every message and
 * storage completion due. Returns 0 or -1 (s->err says why). */
int sim_tick(struct sim *s);
/* Delivers every message and completes every pending write, without
 * ticking (scripted scenarios). */
int sim_stabilize(struct sim *s);

int sim_step(struct sim *s, uint64_t id, const struct raft_event *ev);
int sim_propose(struct sim *s, uint64_t id, const void *data, size_t len);
int sim_conf_change(struct sim *s, uint64_t id, uint8_t type, uint64_t target);
int sim_read(struct sim *s, uint64_t id);
int sim_compact(struct sim *s, uint64_t id);
void sim_crash(struct sim *s, uint64_t id);
int sim_restart(struct sim *s, uint64_t id);
/* A new member (next id), started empty with the bootstrap configuration. */
uint64_t sim_add_node(struct sim *s);
void sim_cut(struct sim *s, uint64_t from, uint64_t to, bool cut);
void sim_heal(struct sim *s);
/* The leader with the highest term among members that are up, or 0. */
uint64_t sim_leader(const struct sim *s);
/* True when a member leads and a quorum of its voters (up) follow it in
 * its term. */
bool sim_has_stable_leader(const struct sim *s);
/* One line per member: role, term, leader, commit, applied, log, voters. */
void sim_print_status(const struct sim *s, FILE *out);
/* Checks the cluster-wide invariants now. */
int sim_check(struct sim *s);

#endif
