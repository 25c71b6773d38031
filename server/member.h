/*
 * member.h — one cairnd member: raft + store + rpc wired together.
 *
 * THREADS
 *   The loop thread (libuv) owns the network, the raft core, pending
 *   requests, leases, the watch hub and everything in struct srv_member
 *   unless marked otherwise. The storage thread runs batches (batch.c): one
 *   LMDB write transaction holding the raft log appends, hard state and the
 *   application of committed entries, one fsync; the loop keeps filling the
 *   next batch meanwhile (group commit). The two meet only in struct
 *   srv_batch_queue (mutex + condvar one way, uv_async the other way).
 *
 * WRITE PATH
 *   handler → srv_check_*() → srv_member_propose() (InternalRequest with a
 *   fresh id, pending entry keyed by it) → raft → batch (append, fsync) →
 *   PERSISTED → committed → batch (apply) → result with the id → the pending
 *   call is answered with the response packed on the storage thread.
 *
 * READ PATH
 *   serializable: served at once from a read transaction. Linearizable:
 *   RAFT_EVENT_READ_INDEX; once the read state arrives and the applied index
 *   has reached it, served from a read transaction (D§6.4).
 *
 * INVARIANTS
 *   1. Nothing is answered before the batch that applied it committed (and
 *      so before its log entry was fsynced on a quorum: raft only commits
 *      entries persisted on a quorum).
 *   2. applied_index == the store's applied index once no batch is in flight.
 *   3. Every pending call is answered exactly once: by its result, by its
 *      deadline, or at shutdown.
 */
#ifndef SRV_MEMBER_H
#define SRV_MEMBER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "raft/raft.h"
#include "raft/raft_lmdb.h"
#include "rpc/peer.h"
#include "rpc/rpc.h"
#include "server/apply.h"
#include "server/apply_int.h" /* struct srv_arena */
#include "server/config.h"
#include "server/idmap.h"
#include "server/log.h"
#include "server/membership.h"
#include "server/metrics.h"
#include "store/store.h"

#define SRV_VERSION         "3.5.17"
#define SRV_CLUSTER_VERSION "3.5.0"
#define SRV_CAIRN_VERSION   "0.1.0"

struct srv_watch_hub;
struct srv_batch;

/* The persist part of one raft update, copied. */
struct srv_persist {
	bool has_snapshot;
	struct raft_snapshot_meta snapshot;
	uint64_t truncate_from;
	struct raft_entry *entries;
	size_t n_entries;
	bool hard_state_changed;
	struct raft_hard_state hard_state;
};

struct srv_batch {
	/* input, filled by the loop */
	struct srv_persist *persist;
	size_t n_persist, cap_persist;
	uint64_t persist_seq;
	/* Every persist record only moves the commit index (same term and
	 * vote, no entries): nothing waits on its durability (see
	 * maybe_submit). */
	bool commit_only;
	struct raft_entry *apply;
	size_t n_apply, cap_apply;
	uint64_t apply_to;   /* last index the batch applies (entries or skipped) */
	bool *want_response; /* per apply entry */
	uint8_t *membership; /* packed Cairnpb__Membership to store, or NULL */
	size_t membership_len;
	bool has_log_compact;
	struct raft_snapshot_meta log_compact;
	bool compact_step; /* run a bounded store compaction step */
	/* Only flush what earlier batches committed (store_sync): they are
	 * durable once it is done. */
	bool sync_only;
	/* Applies entries that an earlier batch appended and that are
	 * committed once durable (a single voter's own): the commit must
	 * flush that batch before its own result becomes visible. */
	bool need_prev_durable;
	struct srv_header hdr;
	struct srv_arena arena;
	struct srv_conf_done {
		uint64_t id;
		int err;
	} * conf_done; /* membership entries proposed here, applied */
	size_t n_conf_done, cap_conf_done;
	/* applies this member's own removal: it stops once the batch is done
	 * (and the MemberRemove that asked for it is answered), not before */
	bool removes_self;
	/* output, filled by the storage thread */
	int err;
	struct srv_apply_result *results;
	size_t n_results, cap_results;
	int64_t revision;
	bool compact_more;
	uint64_t commit_ns;
	/* Every batch committed before this one is durable now (the commit
	 * flushed the device, or sync_only). This one's own commit is durable
	 * only after the next flush, unless self_durable (no fsync at all). */
	bool flushed_before;
	bool self_durable;
};

struct srv_batch_queue {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_cond_t done_cv;      /* signalled with done set (drain) */
	struct srv_batch *submitted; /* loop → storage */
	struct srv_batch *done;      /* storage → loop */
	bool stop;
	uv_async_t async;
};

enum srv_pending_kind { SRV_PENDING_WRITE, SRV_PENDING_READ, SRV_PENDING_CONF };

/* First byte of a normal entry that updates a member's attributes (never
 * the first byte of a packed InternalRequest). */
#define SRV_MEMBER_UPDATE_TAG 0xFF

/* A client call waiting for raft: a proposal (keyed by request id) or a
 * linearizable read (keyed by read ctx). */
struct srv_pending {
	enum srv_pending_kind kind;
	uint64_t id;
	struct rpc_call *call;
	uint64_t deadline_ms;
	int method;                        /* metrics row */
	uint64_t read_index;               /* reads: serve once applied >= this */
	Etcdserverpb__RangeRequest *range; /* reads: the decoded request (owned) */
	struct srv_pending *next;          /* reads waiting for apply */
	int kind_api;                      /* conf: which Cluster call */
	uint64_t member_id;                /* conf: the member it is about */
};

struct srv_lease_entry {
	int64_t id;
	int64_t ttl;
	uint64_t expiry_ms; /* loop clock */
	uint64_t revoke_sent_ms;
};

struct srv_member {
	uv_loop_t *loop;
	const struct srv_config *cfg;
	struct srv_log *log;

	uint64_t id;
	uint64_t cluster_id;
	struct srv_membership members; /* applied membership (loop thread) */

	struct store *store;
	struct raft_lmdb *rl;
	struct raft *raft;
	struct rpc_server *rpc;
	struct srv_watch_hub *hub;
	struct rpc_peer_net *peers;
	struct rpc_client *relay; /* to the leader's client URL (follower) */
	uint64_t relay_to;
	struct srv_idmap snaps_out;  /* follower id → snapshot being sent */
	struct srv_idmap ka_pending; /* keep-alive ctx → rpc_stream (followers) */

	/* raft soft state */
	uint64_t leader;
	uint64_t term;
	uint8_t role;
	uint64_t commit_index;

	/* batches: one filling, one on the storage thread, one whose results
	 * the loop is answering (batch_done) */
	struct srv_batch batches[3];
	struct srv_batch *filling;
	struct srv_batch *inflight;
	struct srv_batch *answering;
	struct raft_hard_state queued_hs; /* last hard state queued to persist */
	uint64_t reported_seq;            /* last persist seq stepped PERSISTED */
	/* Persist seq of the last batch committed but not yet flushed (lazy
	 * meta sync: a later commit or a sync_only batch makes it durable);
	 * 0 when everything committed is durable. */
	uint64_t undurable_seq;
	struct srv_batch_queue q;
	uint64_t applied_index; /* applied by committed batches */
	uint64_t queued_apply;  /* last index handed to a batch for apply */
	int64_t revision;
	bool compact_pending;
	uint64_t last_log_compact;
	uint64_t log_bytes;    /* payload bytes of the in-memory raft log up to: */
	uint64_t log_bytes_to; /* this index (counted as entries are applied) */

	/* requests */
	uint64_t next_req;
	struct srv_idmap writes;           /* request id → struct srv_pending */
	struct srv_idmap reads;            /* read ctx → struct srv_pending */
	struct srv_pending *reads_waiting; /* have a read index, wait for apply */
	struct srv_limits limits;
	uint64_t request_timeout_ms;

	/* leases (leader) */
	struct srv_idmap leases; /* id → struct srv_lease_entry */
	uint64_t lease_sync_ms;
	int64_t min_lease_ttl;

	uv_timer_t tick;
	uint64_t ticks;
	uv_signal_t sigterm, sigint;
	bool stopping;
	int exit_code;

	void *kv_ctx, *lease_ctx, *maint_ctx, *capi_ctx; /* per-service state */
	uint64_t publish_ms;
	struct rpc_call *move_call; /* MoveLeader waiting for the new leader */
	int move_method;
	uint64_t move_target, move_deadline_ms;
	bool removed;
	struct rpc_stream_cbs watch_cbs;
	struct srv_metrics metrics;
	int method_row[64];
};

/* Starts the member on `loop`: opens the store (cfg->data_dir), recovers
 * raft, listens on the client URLs. 0 or a negative code (logged). */
int srv_member_start(struct srv_member *m, uv_loop_t *loop, const struct srv_config *cfg,
                     struct srv_log *log);

/* Graceful stop: stops accepting, fails pending requests, drains the
 * storage thread, closes everything. The loop ends when all handles are
 * closed. */
void srv_member_stop(struct srv_member *m);

/* After the loop stopped: closes the network, drains the storage thread,
 * syncs and closes the store, frees everything. */
void srv_member_close(struct srv_member *m);

/* One heartbeat: a raft tick, then the watch hub's catch-up and progress,
 * lease expiry, request deadlines and log compaction. The tick timer calls
 * it every heartbeat interval; tests that drive time themselves call it. */
void srv_member_tick(struct srv_member *m);

/* Processes a raft update: queues what to persist and apply, sends
 * messages, hands out read states, submits a batch when the storage thread
 * is idle. Call after every raft_step. */
void srv_member_handle_update(struct srv_member *m, const struct raft_update *up);

/* Fills the header of responses. */
void srv_member_header(struct srv_member *m, struct srv_header *out);

/* Proposes a packed InternalRequest (id already set by the caller from
 * srv_member_next_id) and tracks `call` (may be NULL: nobody waits). On
 * error the call is failed here. */
void srv_member_propose(struct srv_member *m, struct rpc_call *call, int method,
                        Cairnpb__InternalRequest *req);
uint64_t srv_member_next_id(struct srv_member *m);

/* Proposes one raw entry (type, data) with request id `id` and parks `call`
 * (may be NULL) as a membership change of kind_api about member_id, or a
 * plain write when kind_api is 0. Followers forward it to the leader. */
void srv_member_propose_entry(struct srv_member *m, struct rpc_call *call, int method, uint64_t id,
                              uint8_t type, const void *data, size_t len, int kind_api,
                              uint64_t member_id);
/* A learner may be promoted once it holds 90% of the leader's log (etcd). */
bool srv_member_learner_ready(struct srv_member *m, uint64_t id);

/* Ends a call with a cairn error as etcd would (status + message). */
void srv_member_fail(struct srv_member *m, struct rpc_call *call, int method, int err);
/* Ends a call with a packed response. */
void srv_member_reply(struct srv_member *m, struct rpc_call *call, int method, const void *resp,
                      size_t len);
int srv_member_method(struct srv_member *m, const char *service, const char *name,
                      const char *type);

/* Services (kv.c, lease.c, maint.c). */
int srv_kv_register(struct srv_member *m);
int srv_lease_register(struct srv_member *m);
int srv_maint_register(struct srv_member *m);
int srv_cluster_api_register(struct srv_member *m);
bool srv_membership_entry(const struct raft_entry *e);
void srv_cluster_apply_entry(struct srv_member *m, const struct raft_entry *e, uint64_t *id,
                             int *err);
void srv_cluster_api_reply(struct srv_member *m, struct srv_pending *p, int err);
void srv_cluster_publish(struct srv_member *m, uint64_t now);
void srv_maint_free(struct srv_member *m);
/* Ends the pending MoveLeader call (err 0: the target leads). */
void srv_maint_move_done(struct srv_member *m, struct rpc_call *call, int method, int err);
void srv_lease_tick(struct srv_member *m, uint64_t now_ms);
void srv_lease_leader_changed(struct srv_member *m);
void srv_lease_free(struct srv_member *m);
/* Serves a linearizable read whose index has been applied. */
void srv_kv_serve_read(struct srv_member *m, struct srv_pending *p);

/* Waits (blocking the loop) until no batch is in flight or filling: used
 * before replacing the store with a received snapshot. */
void srv_member_drain(struct srv_member *m);
/* Replaces the store with the snapshot file at path and records meta and
 * the member's own hard state; then reports it persisted and installed to
 * raft. */
void srv_member_install(struct srv_member *m, const struct raft_snapshot_meta *meta,
                        const char *path, uint64_t persist_seq);

/* Cluster (cluster.c). */
int srv_cluster_start(struct srv_member *m);
void srv_cluster_stop(struct srv_member *m);
void srv_cluster_sync_peers(struct srv_member *m);
void srv_cluster_send_msgs(struct srv_member *m, const struct raft_msg *msgs, size_t n);
void srv_cluster_send_snapshot(struct srv_member *m, const struct raft_msg *msg);
void srv_cluster_on_snapshot(void *ud, uint64_t from, const uint8_t *meta, size_t meta_len,
                             const char *path);
/* Follower: sends a unary call as it is to the leader and relays its answer. */
void srv_cluster_relay_to_leader(struct srv_member *m, struct rpc_call *call, int method,
                                 const uint8_t *req, size_t len);
/* Sends a proposal to the leader (follower side). */
int srv_cluster_forward(struct srv_member *m, uint8_t entry_type, const void *data, size_t len);
/* Sends a keep-alive for lease_id to the leader; the answer comes back
 * through srv_lease_keepalive_answer(ctx). */
int srv_cluster_keepalive(struct srv_member *m, uint64_t ctx, int64_t lease_id);
/* Leader: refreshes a lease; returns its TTL, or 0 if it does not exist. */
int64_t srv_lease_renew(struct srv_member *m, int64_t lease_id);
void srv_lease_keepalive_answer(struct srv_member *m, uint64_t ctx, int64_t ttl);

/* Storage thread (batch.c). */
int srv_batch_start(struct srv_member *m);
void srv_batch_stop(struct srv_member *m);
void srv_batch_submit(struct srv_member *m, struct srv_batch *b);
bool srv_batch_empty(const struct srv_batch *b);
void srv_batch_reset(struct srv_batch *b);
void srv_batch_free(struct srv_batch *b);

#endif
