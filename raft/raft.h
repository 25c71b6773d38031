/*
 * raft.h — the Raft consensus core of cairn: a pure, deterministic state machine.
 *
 * The core is fed events through raft_step() (a tick of the logical clock, a
 * received message, a proposal, "storage persisted up to update N", ...) and
 * answers each with a struct raft_update: what to persist, what to send, what
 * to apply, which snapshot to install, which reads are ready. It performs no
 * I/O, reads no clock, has no randomness of its own (a small PRNG seeded from
 * raft_config.seed) and allocates only through raft_config.alloc (libc when
 * NULL). Modelled on etcd-io/raft (RawNode/Ready, with asynchronous storage
 * writes) and cowsql/raft (raft_step).
 *
 * References in comments: "§5.4.2" is the Raft paper (Ongaro & Ousterhout,
 * 2014); "D§4.2.3" is Ongaro's dissertation (2014).
 *
 * --- Driving the core (the member's loop) --------------------------------
 *
 *   raft_step(r, &ev, &up);
 *   1. hand up.persist to the storage thread (it may batch several updates in
 *      one write transaction): in order, install up.snapshot (if any), delete
 *      stored entries >= up.truncate_from (if non-zero), append up.entries,
 *      write up.hard_state (if up.hard_state_changed). When everything of
 *      updates up to up.persist_seq is durable, step RAFT_EVENT_PERSISTED
 *      with that seq (seqs must be reported in non-decreasing order);
 *   2. send up.msgs now: the core never emits a message that depends on
 *      state not yet durable. Replies that do (a vote grant, an
 *      AppendEntries ack, a snapshot ack, a candidate's vote request) are
 *      held inside the core and released by the RAFT_EVENT_PERSISTED that
 *      makes them safe. A leader's AppendEntries leave in parallel with
 *      its own log write (D§10.2.1); its own match index advances only on
 *      RAFT_EVENT_PERSISTED.
 *   3. apply up.committed in order (always locally durable entries), then
 *      step RAFT_EVENT_APPLIED with the last applied index;
 *   4. answer up.reads once the local applied index >= read.index.
 *
 * Membership changes (D§4.1, single-server) take effect when the entry is
 * APPLIED (RAFT_EVENT_APPLIED), as in etcd-io/raft, not when appended. The
 * dissertation's append-time rule is simpler to argue about but forces a
 * member to roll its configuration back on log truncation; apply-time keeps
 * the configuration a function of the applied prefix, which is also what a
 * snapshot records. Safety is kept by allowing one change in flight (a new
 * one is refused until the previous one is applied by the leader) and by a
 * new leader proposing a change only after committing an entry of its own
 * term (the fix to the single-server change bug, raft-dev 2015).
 *
 * Snapshots: the core never holds state-machine data. raft_compact() records
 * that the member's state machine covers the log up to an index and drops
 * those entries. When a follower needs compacted entries, the leader emits a
 * RAFT_MSG_SNAPSHOT carrying only metadata (index, term, configuration); the
 * member fills msg.snapshot_data with its current state-machine snapshot
 * (which may be at a later applied index A >= msg.snapshot.index; the
 * receiver's state machine must then skip committed entries <= A, as etcd's
 * consistent index does) and sends it. A receiving core accepts or refuses
 * it; when accepted the update carries up.snapshot (+ data borrowed from the
 * event message) to install as part of its persist set (state machine,
 * snapshot metadata, log reset), and the ack leaves after the
 * RAFT_EVENT_PERSISTED covering it. RAFT_EVENT_SNAPSHOT_INSTALLED is
 * equivalent to RAFT_EVENT_APPLIED with the snapshot index.
 *
 * Restart: raft_new() recovers term, vote, commit, the snapshot metadata and
 * the log from storage, with applied = the snapshot index; committed entries
 * after it are handed out again. The state machine skips those it already
 * holds (its own applied index) but the member still reports them with
 * RAFT_EVENT_APPLIED, which is how configuration changes take effect again.
 * A member does not campaign while a committed configuration change is
 * unapplied (etcd's rule), so it never counts votes in a stale
 * configuration.
 *
 * Proposals: RAFT_EVENT_PROPOSE reports the entry's (index, term) in
 * up.proposed_index/term. The proposal succeeded if that entry is later
 * handed out in up.committed; if an entry with another term commits at
 * that index, it was lost with a leader change (retry or report).
 *
 * Ownership and lifetime: everything a struct raft_update points to (entries,
 * messages and their entries, committed entries, reads, snapshot metadata)
 * is owned by the core and valid until the next raft_step(), raft_compact()
 * or raft_free() on the same struct raft; copy or encode what must outlive
 * that. up.snapshot_data points into the event's message (caller-owned).
 * Event payloads (proposal data, received messages and their entries) are
 * borrowed for the duration of the call: the core copies what it keeps.
 *
 * Threading: a struct raft is not thread-safe; one thread (the member's
 * loop) calls everything. Storage callbacks are called from that thread,
 * only inside raft_new().
 */
#ifndef CAIRN_RAFT_H
#define CAIRN_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cairn_error.h"

/* Member ids are non-zero; 0 means "nobody". */
#define RAFT_NONE 0

/* Upper bound on voters + learners: keeps configurations fixed-size. */
#define RAFT_MAX_MEMBERS 16

/* Largest term or log index the core accepts from a peer (2^63 - 1: a
 * term or entry per nanosecond for 292 years). Keeping terms and indexes
 * this far below UINT64_MAX makes every term + 1 and index + n the core
 * computes exact: a peer announcing term UINT64_MAX would otherwise wrap
 * the next election's term to 0. */
#define RAFT_MAX_INDEX INT64_MAX

/* ---------------------------------------------------------------- types */

struct raft_buf {
	const void *base;
	size_t len;
};

enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE,
	RAFT_CANDIDATE,
	RAFT_LEADER,
};

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* opaque to the core; empty data = leader no-op */
	RAFT_ENTRY_CONF = 1,   /* data = raft_conf_change_encode() output */
};

struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type; /* enum raft_entry_type */
	struct raft_buf data;
};

/* Persistent state of Figure 2 (plus commit, so a restart re-applies less). */
struct raft_hard_state {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
};

/* A configuration: voters and learners (disjoint, ids non-zero). */
struct raft_conf {
	uint32_t n_voters;
	uint32_t n_learners;
	uint64_t voters[RAFT_MAX_MEMBERS];
	uint64_t learners[RAFT_MAX_MEMBERS];
};

/* What a snapshot covers: the log up to index (of term), and the
 * configuration in force once that prefix is applied. */
struct raft_snapshot_meta {
	uint64_t index;
	uint64_t term;
	struct raft_conf conf;
};

enum raft_conf_change_type {
	RAFT_CC_ADD_VOTER = 0, /* add as voter directly (also promotes a learner) */
	RAFT_CC_ADD_LEARNER = 1,
	RAFT_CC_PROMOTE = 2, /* learner -> voter */
	RAFT_CC_REMOVE = 3,  /* voter or learner */
};

struct raft_conf_change {
	uint8_t type; /* enum raft_conf_change_type */
	uint64_t id;
};

#define RAFT_CONF_CHANGE_SIZE 9

/* ------------------------------------------------------------- messages */

enum raft_msg_type {
	RAFT_MSG_APPEND = 1,    /* AppendEntries (§5.3) */
	RAFT_MSG_APPEND_RESP,   /* ack (index = last matching) or reject (+hint) */
	RAFT_MSG_VOTE,          /* RequestVote (§5.2) */
	RAFT_MSG_VOTE_RESP,     /* reject=false means granted */
	RAFT_MSG_PRE_VOTE,      /* D§9.6, sent with term+1, changes no term */
	RAFT_MSG_PRE_VOTE_RESP, /* granted replies carry the request's term */
	RAFT_MSG_HEARTBEAT,     /* commit + ctx = heartbeat round (ReadIndex) */
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_SNAPSHOT,        /* InstallSnapshot (§7); data filled by member */
	RAFT_MSG_TIMEOUT_NOW,     /* leader transfer (D§3.10) */
	RAFT_MSG_READ_INDEX,      /* follower -> leader, ctx = caller's id (D§6.4) */
	RAFT_MSG_READ_INDEX_RESP, /* leader -> follower, index = read index */
};
#define RAFT_MSG_TYPE_MAX RAFT_MSG_READ_INDEX_RESP

/*
 * One raft message. Field use per type:
 *   APPEND:      index/log_term = previous entry, entries, commit
 *   APPEND_RESP: index = last index now matching (ack) or the rejected
 *                previous index (reject), reject_hint/log_term = conflict
 *                hint: the follower's last index <= index whose term is
 *                <= the leader's log_term, and that term (fast backtracking)
 *   VOTE, PRE_VOTE: index/log_term = candidate's last entry; transfer = sent
 *                because of TimeoutNow (overrides the leader lease)
 *   *_VOTE_RESP: reject
 *   HEARTBEAT(_RESP): commit, ctx
 *   SNAPSHOT:    snapshot (metadata), snapshot_data (member-provided bytes)
 *   READ_INDEX(_RESP): ctx, index (resp), reject (resp: not leader any more)
 */
struct raft_msg {
	uint8_t type; /* enum raft_msg_type */
	uint64_t from;
	uint64_t to;
	uint64_t term;
	uint64_t index;
	uint64_t log_term;
	uint64_t commit;
	uint64_t ctx;
	uint64_t reject_hint;
	bool reject;
	bool transfer;
	uint32_t n_entries;
	const struct raft_entry *entries;
	struct raft_snapshot_meta snapshot;
	struct raft_buf snapshot_data;
};

/* --------------------------------------------------------------- events */

enum raft_event_type {
	RAFT_EVENT_TICK = 1,           /* one unit of the logical clock */
	RAFT_EVENT_RECEIVE,            /* a message from a peer */
	RAFT_EVENT_PROPOSE,            /* leader only: append data */
	RAFT_EVENT_PERSISTED,          /* updates up to seq are durable */
	RAFT_EVENT_SNAPSHOT_INSTALLED, /* state machine restored from up.snapshot */
	RAFT_EVENT_READ_INDEX,         /* linearizable read request (D§6.4) */
	RAFT_EVENT_APPLIED,            /* state machine applied up to index */
	RAFT_EVENT_TRANSFER,           /* leader: hand leadership to id (D§3.10) */
	RAFT_EVENT_CAMPAIGN,           /* start an election now (skips PreVote) */
};

struct raft_event {
	uint8_t type; /* enum raft_event_type */
	union {
		struct {
			const struct raft_msg *msg;
		} receive;
		struct {
			uint8_t type; /* enum raft_entry_type */
			struct raft_buf data;
		} propose;
		struct {
			uint64_t seq; /* an up.persist_seq */
		} persisted;
		struct {
			uint64_t index; /* up.snapshot->index */
		} snapshot_installed;
		struct {
			uint64_t ctx; /* caller's id, echoed in the read state */
		} read_index;
		struct {
			uint64_t index;
		} applied;
		struct {
			uint64_t to;
		} transfer;
	};
};

/* --------------------------------------------------------------- update */

struct raft_read_state {
	uint64_t ctx;   /* the RAFT_EVENT_READ_INDEX ctx */
	uint64_t index; /* serve the read once applied >= index */
	int status;     /* 0, or CAIRN_ELEADERCHANGED / CAIRN_ENOLEADER: read failed */
};

struct raft_update {
	/* --- to persist (all or nothing per update, in this order) --- */
	const struct raft_snapshot_meta *snapshot; /* install, drop the whole log */
	struct raft_buf snapshot_data;             /* borrowed from the event's msg */
	uint64_t truncate_from;                    /* 0 = none */
	size_t n_entries;
	const struct raft_entry *entries;
	bool hard_state_changed;
	struct raft_hard_state hard_state;
	uint64_t persist_seq; /* 0 = nothing to persist; else report when durable */

	/* --- to send now --- */
	size_t n_msgs;
	const struct raft_msg *msgs;

	/* --- to apply, in order --- */
	size_t n_committed;
	const struct raft_entry *committed;

	/* --- ready reads --- */
	size_t n_reads;
	const struct raft_read_state *reads;

	/* --- soft state --- */
	bool role_changed; /* role or leader differs from the previous update */
	uint8_t role;      /* enum raft_role */
	uint64_t leader;
	uint64_t term;

	/* --- RAFT_EVENT_PROPOSE: where the entry went --- */
	uint64_t proposed_index;
	uint64_t proposed_term;
};

/* -------------------------------------------------------------- storage */

/*
 * What the core reads at start-up (raft_new) to recover: hard state,
 * latest snapshot metadata and the log after it. Implemented in memory
 * (raft_mem_storage below) and on LMDB (raft/raft_lmdb.h). Every function
 * returns 0 or a negative cairn error code.
 */
struct raft_storage {
	void *ctx;
	/* Hard state and snapshot metadata; zeroes when empty. */
	int (*initial_state)(void *ctx, struct raft_hard_state *hs,
	                     struct raft_snapshot_meta *snap);
	/* Last stored index (snapshot index when the log is empty). */
	int (*last_index)(void *ctx, uint64_t *out);
	/* Calls cb for each entry of [lo, hi] in order, stopping after max_bytes
	 * of data (0 = no limit; at least one entry is given). The entry and its
	 * data are valid only during the callback. A non-zero cb return stops the
	 * walk and is returned. */
	int (*entries)(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
	               int (*cb)(void *arg, const struct raft_entry *e), void *arg);
};

/* An in-memory struct raft_storage for tests and the simulator: durable
 * means "written here". */
struct raft_mem_storage;
int raft_mem_storage_new(struct raft_mem_storage **out);
void raft_mem_storage_free(struct raft_mem_storage *ms);
/* Applies the persist part of an update (snapshot, truncation, entries,
 * hard state), copying everything. */
int raft_mem_storage_apply(struct raft_mem_storage *ms, const struct raft_update *up);
/* Records a snapshot at meta and drops entries <= meta->index. */
int raft_mem_storage_compact(struct raft_mem_storage *ms, const struct raft_snapshot_meta *meta);
struct raft_storage raft_mem_storage_iface(struct raft_mem_storage *ms);
/* Inspection for tests: term of index (0 if absent), bounds, hard state. */
uint64_t raft_mem_storage_term(const struct raft_mem_storage *ms, uint64_t index);
uint64_t raft_mem_storage_last(const struct raft_mem_storage *ms);
uint64_t raft_mem_storage_snap_index(const struct raft_mem_storage *ms);
struct raft_hard_state raft_mem_storage_hard_state(const struct raft_mem_storage *ms);

/* ------------------------------------------------------------ lifecycle */

struct raft_alloc {
	void *ctx;
	void *(*malloc_fn)(void *ctx, size_t size);
	void *(*realloc_fn)(void *ctx, void *p, size_t size);
	void (*free_fn)(void *ctx, void *p);
};

struct raft_config {
	uint64_t id;              /* this member, non-zero */
	unsigned election_ticks;  /* et: timeout drawn from [et, 2et); default 10 */
	unsigned heartbeat_ticks; /* < election_ticks; default 1 */
	uint64_t seed;            /* PRNG seed: timeouts */
	bool pre_vote;            /* D§9.6 */
	bool check_quorum;        /* D§6.2 leader step-down + D§4.2.3 lease */
	size_t max_msg_bytes;     /* entry data per AppendEntries; default 1 MiB */
	unsigned max_inflight;    /* AppendEntries in flight per follower; default 256 */
	/* Entry data bytes in AppendEntries in flight per follower in
	 * replicate state (etcd-raft's MaxInflightBytes): at the bound the
	 * leader sends no more until acks free some. A message may cross it,
	 * so an entry larger than the bound still goes out alone. 0 =
	 * unbounded (cairnd sets 8 MiB, server/member.c). */
	size_t max_inflight_bytes;
	unsigned max_pending_reads; /* default 4096 */
	/* The cluster's bootstrap configuration (the founding voters), used
	 * when the storage holds no snapshot: the configuration "at index 0"
	 * that every logged change applies to. Every member passes the same
	 * one, including members joining later. A member given NULL stays
	 * unconfigured (never campaigns, applies no membership change) until
	 * it installs a snapshot, which carries the configuration. */
	const struct raft_conf *initial_conf;
	const struct raft_alloc *alloc; /* NULL = libc; borrowed for r's lifetime */
};

struct raft;

/* Creates a core recovered from storage (borrowed: only used during this
 * call). The core starts as a follower. On error *out is untouched. */
int raft_new(const struct raft_config *cfg, const struct raft_storage *storage, struct raft **out);
void raft_free(struct raft *r);

/*
 * Feeds one event; fills *up (overwritten; see "Ownership and lifetime").
 * Returns 0 or: CAIRN_ENOTLEADER (propose/transfer on a non-leader),
 * CAIRN_ENOLEADER (read with no known leader), CAIRN_EPROPOSALDROPPED
 * (during a leader transfer), CAIRN_ECONFCHANGE (a change is in flight, or
 * the leader has not yet committed an entry of its term), CAIRN_EINVAL (bad
 * event or conf change), CAIRN_EBUSY (too many pending reads),
 * CAIRN_ENOMEM. Even on error *up is valid (and usually empty).
 */
int raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *up);

/* The state machine holds everything up to index (<= applied): forget the
 * log up to it. Returns CAIRN_ESNAPOUTOFDATE when already compacted that
 * far, CAIRN_EINVAL beyond applied or before the applied configuration
 * change it would have to record. The member must record the same snapshot
 * metadata in its storage (raft_snapshot_meta_at() gives it first). */
int raft_compact(struct raft *r, uint64_t index);
/* The metadata raft_compact(r, index) will record. */
int raft_snapshot_meta_at(const struct raft *r, uint64_t index, struct raft_snapshot_meta *out);

/* ------------------------------------------------------------- queries */

struct raft_status {
	uint64_t id;
	uint8_t role;
	uint64_t leader;
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
	uint64_t applied;
	uint64_t first_index; /* first entry in the log (snap_index + 1) */
	uint64_t last_index;
	uint64_t stable_index; /* last index known durable */
	uint64_t snap_index;
	uint64_t snap_term;
	uint64_t transferee; /* leader transfer in progress to, or 0 */
	struct raft_conf conf;
};
void raft_get_status(const struct raft *r, struct raft_status *out);
/* Leader only: the highest index known replicated on member id (its match
 * index, §5.3). CAIRN_ENOTLEADER on a non-leader, CAIRN_ENOTFOUND for an
 * id outside the configuration. */
int raft_progress_match(const struct raft *r, uint64_t id, uint64_t *match);
/* Term of entry index: 0 and CAIRN_ELOGCOMPACTED / CAIRN_ELOGUNAVAILABLE
 * when not in the log (the snapshot index reports the snapshot term). */
int raft_log_term(const struct raft *r, uint64_t index, uint64_t *term);
/* Entry at index (borrowed, valid until the next call that mutates r). */
const struct raft_entry *raft_log_entry(const struct raft *r, uint64_t index);

/* Field checks every received message must pass (raft_step ignores one
 * that does not, raft_msg_decode refuses it): a known type, a sender,
 * terms and indexes <= RAFT_MAX_INDEX, AppendEntries entries contiguous
 * after msg.index with terms in [log_term, term] and data present, and a
 * snapshot of a non-zero index and term <= msg.term whose configuration
 * has a voter, fits struct raft_conf, and lists no id twice (voters and
 * learners disjoint). 0 or CAIRN_EINVAL. */
int raft_msg_check(const struct raft_msg *m);

/* Checks the core's internal invariants; 0 or CAIRN_ECORRUPT with a
 * description in buf (may be NULL). Used by tests and debug builds. */
int raft_check(const struct raft *r, char *buf, size_t len);

/* ------------------------------------------------------------- helpers */

void raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t out[RAFT_CONF_CHANGE_SIZE]);
int raft_conf_change_decode(const void *buf, size_t len, struct raft_conf_change *out);
/* Applies cc to conf (CAIRN_EINVAL when it makes no sense or overflows). */
int raft_conf_apply(struct raft_conf *conf, const struct raft_conf_change *cc);
bool raft_conf_is_voter(const struct raft_conf *conf, uint64_t id);
bool raft_conf_is_learner(const struct raft_conf *conf, uint64_t id);

const char *raft_role_name(uint8_t role);
const char *raft_msg_type_name(uint8_t type);

#endif
