/*
 * store.h — cairn's MVCC key-value store on LMDB. This header is the manual.
 *
 * WHAT IT IS
 *   A multi-version key-value store with etcd v3 semantics (DESIGN.md §2):
 *   one revision counter for the whole store, 1 in an empty store (so the
 *   first write is revision 2, as in etcd), bumped by every mutation that
 *   changes something (a Put always; a DeleteRange only if it deleted a key; a
 *   Txn if any of its ops wrote; a lease revoke if it deleted a key). The
 *   writes of one mutation share one main revision and are numbered by sub
 *   revision 0, 1, 2 ... in op order. Every key carries create_revision,
 *   mod_revision, version (1 on create, +1 per put, reset by delete) and lease.
 *   Lease grant/revoke-without-keys and compaction do not bump the revision
 *   (as in etcd). The store knows nothing of raft, time or the network: lease
 *   expiry and request ids are the caller's business.
 *
 * LAYOUT (DESIGN.md §3)
 *   One LMDB environment per member, in cfg->dir (data.mdb, lock.mdb) plus a
 *   lock file "cairn.lock". Named databases used by the store: "kv" (history),
 *   "index" and "recent" (key -> revisions), "meta", "leases", "lease_keys".
 *   Other components (raft log storage) may open their own named databases in
 *   the same environment (store_env(), store_wtxn_mdb()); up to STORE_MAX_DBS
 *   named databases exist in total. Opening needs no work proportional to the
 *   data size.
 *
 * LIFECYCLE
 *   store_open -> { store_wtxn_begin -> mutations... -> commit|abort }*
 *              -> { store_rtxn_begin -> reads... -> store_rtxn_end }*
 *              -> store_close.
 *   A write transaction (wtxn) is a batch: it may hold many mutations, hence
 *   many revisions (the server applies many committed raft entries in one
 *   LMDB transaction, one fsync). Nothing is visible to readers or durable
 *   until store_wtxn_commit. A mutation that fails a request check returns a
 *   negative code and changes nothing: every check runs before its first
 *   write. The wtxn stays usable and the other mutations of the batch are
 *   kept. When the map may be nearly full, mutations run in nested LMDB txns
 *   so that a full map (CAIRN_ENOSPACE) also undoes just that mutation.
 *   Only after a fatal error (CAIRN_EIO, CAIRN_ENOMEM, CAIRN_ECORRUPT), or an
 *   LMDB write failure that could not be undone (CAIRN_ENOSPACE /
 *   CAIRN_ETOOBIG from a map or batch the size estimate did not foresee, e.g.
 *   because raft wrote a lot into the same txn), is the wtxn "failed": every
 *   later call on it returns that error and commit aborts and returns it.
 *   The caller then aborts and may retry the batch's entries one per wtxn.
 *
 * THREADS
 *   One writer thread at a time: at most one wtxn exists at a time (a second
 *   store_wtxn_begin from another thread blocks in LMDB until the first ends;
 *   from the same thread it deadlocks — don't). Read transactions are
 *   MDB_NOTLS: any thread may begin, use and end them, many may be open at
 *   once, and a rtxn may move between threads as long as only one thread uses
 *   it at a time. A long-lived rtxn keeps old pages alive: end it soon.
 *   store_open/store_close must not race with any other call on the store.
 *
 * OWNERSHIP AND MEMORY
 *   Every pointer parameter is borrowed for the duration of the call. Results
 *   (struct store_kv and the arrays holding them) live in memory owned by the
 *   response; it stays valid until the response is freed with its
 *   *_resp_free() function AND the transaction it came from has ended
 *   (results read in a rtxn may point straight into the LMDB map, so end the
 *   rtxn after freeing / copying, never before using them). Responses from a
 *   wtxn are copies and only need the *_resp_free(). *_resp_free() accepts a
 *   zeroed or already-freed response. A response is zeroed on error.
 *
 * ERRORS
 *   Functions return 0 or a negative CAIRN_E* code (common/cairn_error.h).
 *   CAIRN_ENOTFOUND / CAIRN_ELEASENOTFOUND are answers, not failures. LMDB
 *   codes are translated here: MDB_MAP_FULL -> CAIRN_ENOSPACE (see
 *   LIFECYCLE), corruption -> CAIRN_ECORRUPT, other I/O -> CAIRN_EIO.
 *
 *   Request checks, done before anything is written:
 */
/* clang-format off */
/*
 *     empty key                               CAIRN_EKEYEMPTY
 *     key > mdb_env_get_maxkeysize() (511 B)  CAIRN_EKEYTOOLARGE
 *     key + value > max_request_bytes         CAIRN_EVALUETOOLARGE
 *     ignore_value with a value               CAIRN_EVALUEPROVIDED
 *     ignore_lease with a lease               CAIRN_ELEASEPROVIDED
 *     ignore_* on a missing key               CAIRN_EKEYNOTFOUND
 *     lease that does not exist               CAIRN_ELEASENOTFOUND
 *     duplicate / overlapping txn keys        CAIRN_EDUPKEY (etcd's checkIntervals)
 *     more than max_txn_ops per level         CAIRN_ETOOMANYOPS
 *     data over quota_bytes                   CAIRN_ENOSPACE (deletes, compaction,
 *                                             revokes and reads still work)
 *     revision < compact revision             CAIRN_ECOMPACTED
 *     revision > current revision             CAIRN_EFUTUREREV
 *
 *   What a failed mutation leaves of its batch: see LIFECYCLE.
 */
/* clang-format on */
/*
 * KEY RANGES (etcd's convention, used by range, delete, compare, history)
 *   range_end_len == 0          the single key `key`
 *   range_end == "\0" (len 1)   every key >= key   ("from key")
 *   otherwise                   keys in [key, range_end)
 *   key == "\0" with range_end "\0" is every key.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The store hands out the LMDB environment and write transaction so raft log
 * storage can share them; including lmdb.h here is the honest way to type them. */
#include <lmdb.h>

#include "common/cairn_error.h"

#define STORE_MAX_DBS              16 /* named LMDB databases in the environment, all users */
#define STORE_DEFAULT_QUOTA        (2ull << 30)    /* etcd's default backend quota */
#define STORE_DEFAULT_MAP_SIZE     (8ull << 30)    /* sparse; must be >= quota */
#define STORE_DEFAULT_MAX_REQUEST  (1536u * 1024u) /* 1.5 MiB, etcd's default */
#define STORE_DEFAULT_MAX_TXN_OPS  128u            /* etcd's --max-txn-ops */
#define STORE_DEFAULT_RECENT_ITEMS 4096u           /* see store_index.c */

struct store;
struct store_wtxn;
struct store_rtxn;
struct store_mem; /* response memory, internal */

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                  */

struct store_config {
	const char *dir;          /* data directory; created if missing (not read_only) */
	uint64_t map_size;        /* LMDB map size; 0 = default. Keep it above the quota
	                           plus the raft log: a full map is CAIRN_ENOSPACE too */
	uint64_t quota_bytes;     /* store data limit -> CAIRN_ENOSPACE; 0 = default */
	size_t max_request_bytes; /* key+value of a put, sum over a txn; 0 = default */
	unsigned max_txn_ops;     /* ops per txn level; 0 = default */
	bool nosync;              /* no fsync at commit (tests, benchmarks) */
	/* Lazy meta sync (LMDB's MDB_NOMETASYNC): a commit flushes its data
	 * pages but writes the meta page that makes it current without a flush.
	 * The store stays intact across a power loss, but its last commit may
	 * be undone: a commit is durable once a later commit returned (that
	 * one's data flush covers the earlier meta page) or store_sync did. */
	bool lazy_meta_sync;
	bool read_only; /* offline inspection beside a running writer */
	/* Index items the "recent" database keeps after a commit (store_index.c);
	 * 0 = default. Tests set it small to move slices all the time. */
	size_t index_recent_items;
};

/* Opens (creating if needed) the store in cfg->dir. A writer takes an
 * exclusive flock on dir/cairn.lock: a second writer (any process, or the
 * same process twice) gets CAIRN_ELOCKED. A read_only opener takes no lock
 * and opens LMDB with MDB_RDONLY; it works beside a running writer, sees
 * each committed state, and every write call returns CAIRN_EREADONLY.
 * Do not open the same directory twice in one process except to get
 * CAIRN_ELOCKED (LMDB's fcntl locks are per process).
 * Errors: CAIRN_EINVAL (no dir), CAIRN_ELOCKED, CAIRN_EVERSION (unknown schema),
 * CAIRN_ENOTFOUND (read_only and no store there), CAIRN_EIO, CAIRN_ENOMEM.
 * On success *out is owned by the caller; free with store_close(). */
int store_open(const struct store_config *cfg, struct store **out);

/* Closes the store. Every rtxn/wtxn must have ended. Accepts NULL. */
void store_close(struct store *s);

/* The shared LMDB environment (owned by the store; valid until store_close).
 * Others may open named databases in it (at most STORE_MAX_DBS in total) and
 * must not change its flags or map size. */
MDB_env *store_env(struct store *s);

/* ------------------------------------------------------------------------ */
/* Write transactions (batches)                                               */

/* Begins a batch. Errors: CAIRN_EREADONLY, CAIRN_EIO. */
int store_wtxn_begin(struct store *s, struct store_wtxn **out);

/* Makes the batch durable (fsync unless cfg->nosync) and visible, then frees
 * the wtxn. On error nothing of the batch is kept and the wtxn is freed too.
 * With cfg->lazy_meta_sync the batch is visible but durable only after the
 * next commit that changed something or store_sync; *flushed (may be NULL)
 * tells whether this commit flushed to the device, which makes every earlier
 * commit durable (false for a batch that changed nothing, or with nosync). */
int store_wtxn_commit(struct store_wtxn *w);
int store_wtxn_commit_flushed(struct store_wtxn *w, bool *flushed);

/* Flushes everything committed so far to the device (a no-op with
 * cfg->nosync). Errors: CAIRN_EIO. */
int store_sync(struct store *s);

/* Throws the batch away and frees the wtxn. Accepts NULL. */
void store_wtxn_abort(struct store_wtxn *w);

/* The LMDB write transaction underneath, for raft log storage to write its
 * own databases in the same commit (group commit: one fsync per batch).
 * Valid until commit/abort. Do not commit/abort it yourself and do not use it
 * while a store_* call on this wtxn is running. */
MDB_txn *store_wtxn_mdb(struct store_wtxn *w);

/* Current revision inside the batch (includes the batch's mutations). */
int64_t store_wtxn_revision(const struct store_wtxn *w);

/* Records the raft index applied by this batch (must not go backwards:
 * CAIRN_EINVAL). Written in the same LMDB txn, so after a crash the store
 * holds exactly the mutations of indexes <= the applied index. */
int store_wtxn_set_applied(struct store_wtxn *w, uint64_t index);

/* Stores an opaque blob under `name` (e.g. "membership", "cluster_id") in the
 * same txn. name: 1..64 bytes NUL-terminated; len <= 1 MiB. len 0 with
 * data NULL deletes it (no error if it was unset). Errors: CAIRN_EINVAL for
 * a bad name or length, CAIRN_ENOSPACE, CAIRN_EIO, or the failed wtxn's. */
int store_wtxn_set_meta(struct store_wtxn *w, const char *name, const void *data, size_t len);

/* Reads the blob stored under `name` as the batch sees it: committed state
 * plus this batch's own store_wtxn_set_meta calls. *data points into the
 * map, read-only: valid until the next write in this wtxn (any mutation,
 * set_* or compaction call, or a write through store_wtxn_mdb) or its
 * commit/abort, whichever comes first; copy it to keep it longer.
 * CAIRN_ENOTFOUND if unset (never set, or deleted), CAIRN_EINVAL for a bad
 * name, the wtxn's error if it has failed. */
int store_wtxn_get_meta(struct store_wtxn *w, const char *name, const void **data, size_t *len);

/* ------------------------------------------------------------------------ */
/* Read transactions                                                          */

/* Begins a consistent read view of the last committed state (MDB_RDONLY |
 * MDB_NOTLS). Errors: CAIRN_EIO, CAIRN_ENOMEM. */
int store_rtxn_begin(struct store *s, struct store_rtxn **out);

/* Ends the view and frees it. Accepts NULL. Results read through it that
 * point into the map become invalid. */
void store_rtxn_end(struct store_rtxn *r);

/* The LMDB read txn underneath (for raft log reads in the same view). */
MDB_txn *store_rtxn_mdb(struct store_rtxn *r);

/* Revision, compact revision and applied raft index of the view. */
int64_t store_rtxn_revision(const struct store_rtxn *r);
int64_t store_rtxn_compact_revision(const struct store_rtxn *r);
uint64_t store_rtxn_applied(const struct store_rtxn *r);

/* Reads the blob stored by store_wtxn_set_meta. *data points into the map,
 * valid until the rtxn ends. CAIRN_ENOTFOUND if never set. */
int store_rtxn_get_meta(struct store_rtxn *r, const char *name, const void **data, size_t *len);

/* ------------------------------------------------------------------------ */
/* Key-value records                                                          */

struct store_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value; /* NULL with value_len 0 when keys_only / empty */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease;
};

/* ------------------------------------------------------------------------ */
/* Range                                                                      */

enum store_sort_order { STORE_SORT_NONE = 0, STORE_SORT_ASCEND = 1, STORE_SORT_DESCEND = 2 };
enum store_sort_target {
	STORE_SORT_KEY = 0,
	STORE_SORT_VERSION = 1,
	STORE_SORT_CREATE = 2,
	STORE_SORT_MOD = 3,
	STORE_SORT_VALUE = 4,
};

struct store_range_req {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *range_end;
	size_t range_end_len;
	int64_t revision; /* 0 = current */
	int64_t limit;    /* 0 or negative = no limit (as etcd) */
	enum store_sort_order sort_order;
	enum store_sort_target sort_target;
	bool keys_only;
	bool count_only;
	int64_t min_mod_revision; /* 0 = no filter (each of the four) */
	int64_t max_mod_revision;
	int64_t min_create_revision;
	int64_t max_create_revision;
};

/* etcd 3.5 semantics (etcdserver/apply.go Range): `count` is the number of
 * keys in the range at the revision, before limit and before the min/max
 * filters; kvs are filtered, sorted (target != KEY with order NONE sorts
 * ascending), then cut to `limit` with `more` set if any were cut. With
 * count_only, kvs is empty and more is false. */
struct store_range_resp {
	struct store_kv *kvs;
	size_t n_kvs;
	int64_t count;
	bool more;
	int64_t revision; /* header revision: the current revision of the view */
	struct store_mem *mem;
};

/* Errors: CAIRN_EKEYEMPTY, CAIRN_EKEYTOOLARGE, CAIRN_ECOMPACTED,
 * CAIRN_EFUTUREREV, CAIRN_EINVAL (bad enum), CAIRN_ENOMEM, CAIRN_EIO. */
int store_range(struct store_rtxn *r, const struct store_range_req *req,
                struct store_range_resp *resp);
void store_range_resp_free(struct store_range_resp *resp);

/* ------------------------------------------------------------------------ */
/* Put / DeleteRange / Txn (mutations, inside a wtxn)                         */

struct store_put_req {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t lease; /* 0 = none; a put with another lease moves the key */
	bool prev_kv;
	bool ignore_value; /* keep the current value (key must exist) */
	bool ignore_lease; /* keep the current lease (key must exist) */
};

struct store_put_resp {
	int64_t revision; /* revision of the put (header revision) */
	bool has_prev;
	struct store_kv prev_kv; /* when req->prev_kv and the key existed */
	struct store_mem *mem;
};

struct store_delete_req {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *range_end;
	size_t range_end_len;
	bool prev_kv;
};

struct store_delete_resp {
	int64_t revision; /* header revision after the delete */
	int64_t deleted;
	struct store_kv *prev_kvs; /* when req->prev_kv, in key order */
	size_t n_prev_kvs;
	struct store_mem *mem;
};

enum store_cmp_result {
	STORE_CMP_EQUAL = 0,
	STORE_CMP_GREATER = 1,
	STORE_CMP_LESS = 2,
	STORE_CMP_NOT_EQUAL = 3,
};
enum store_cmp_target {
	STORE_CMP_VERSION = 0,
	STORE_CMP_CREATE = 1,
	STORE_CMP_MOD = 2,
	STORE_CMP_VALUE = 3,
	STORE_CMP_LEASE = 4,
};

/* etcd applyCompare: every key in the range must satisfy the compare; if no
 * key exists, VALUE compares fail and the others compare against 0. */
struct store_compare {
	enum store_cmp_result result;
	enum store_cmp_target target;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *range_end;
	size_t range_end_len;
	int64_t number;       /* for VERSION / CREATE / MOD / LEASE */
	const uint8_t *value; /* for VALUE */
	size_t value_len;
};

enum store_op_type { STORE_OP_RANGE = 0, STORE_OP_PUT = 1, STORE_OP_DELETE = 2, STORE_OP_TXN = 3 };

struct store_txn_req;

struct store_op {
	enum store_op_type type;
	union {
		struct store_range_req range;
		struct store_put_req put;
		struct store_delete_req del;
		const struct store_txn_req *txn;
	} u;
};

struct store_txn_req {
	const struct store_compare *compares;
	size_t n_compares;
	const struct store_op *success;
	size_t n_success;
	const struct store_op *failure;
	size_t n_failure;
};

struct store_txn_resp;

/* Response of one op; ranges inside a txn see the txn's earlier writes. */
struct store_op_resp {
	enum store_op_type type;
	union {
		struct store_range_resp range;
		struct store_put_resp put;
		struct store_delete_resp del;
		struct store_txn_resp *txn;
	} u;
};

struct store_txn_resp {
	bool succeeded;
	struct store_op_resp *responses; /* one per op of the branch taken */
	size_t n_responses;
	int64_t revision;      /* header revision after the txn */
	struct store_mem *mem; /* set on the outermost response only */
};

/* Put: always one new revision. resp may be NULL. Errors: see ERRORS above. */
int store_put(struct store_wtxn *w, const struct store_put_req *req, struct store_put_resp *resp);
void store_put_resp_free(struct store_put_resp *resp);

/* DeleteRange: one new revision if anything was deleted, else none. resp may
 * be NULL. */
int store_delete_range(struct store_wtxn *w, const struct store_delete_req *req,
                       struct store_delete_resp *resp);
void store_delete_resp_free(struct store_delete_resp *resp);

/* Txn (etcd 3.5 applyTxn): all compares, including those of nested txns on
 * the branch taken, are evaluated against the state before the txn; then the
 * ops of the branch run in order. All writes share one revision (sub
 * revisions in op order); no revision if nothing was written. If any op
 * fails, the whole txn changes nothing and its error is returned. */
int store_txn(struct store_wtxn *w, const struct store_txn_req *req, struct store_txn_resp *resp);
void store_txn_resp_free(struct store_txn_resp *resp);

/* ------------------------------------------------------------------------ */
/* Compaction                                                                 */

/* Records compaction to `rev` (durable with the batch). From then on reads
 * and history below rev fail with CAIRN_ECOMPACTED; the latest version of
 * each live key at rev stays readable; a key deleted at or before rev
 * vanishes. Does not bump the revision. Errors: CAIRN_ECOMPACTED (rev <=
 * current compact revision, which is 0 until the first compaction),
 * CAIRN_EFUTUREREV (rev > current revision). So an empty store can be
 * compacted to 1 (as etcd can), once.
 * The physical removal of old history is done by store_compact_step. */
int store_compact(struct store_wtxn *w, int64_t rev);

/* Removes up to max_records old records (bounded work, so it never holds the
 * write lock long). *done is set when nothing is left to remove. Progress is
 * kept in the store, so steps may be spread over batches and restarts. Call
 * it in a short wtxn of its own or at the end of a batch. Does not change
 * anything readable. Errors: CAIRN_ECORRUPT (a malformed record or
 * progress mark), CAIRN_ENOSPACE / CAIRN_EIO from LMDB, or the failed wtxn's. */
int store_compact_step(struct store_wtxn *w, size_t max_records, bool *done);

/* ------------------------------------------------------------------------ */
/* History (what watches read)                                                */

enum store_event_type { STORE_EVENT_PUT = 0, STORE_EVENT_DELETE = 1 };

struct store_event {
	enum store_event_type type;
	int64_t sub_revision; /* position inside kv.mod_revision */
	struct store_kv kv;   /* DELETE: key and mod_revision only */
	bool has_prev;
	struct store_kv prev_kv; /* state before this event, when asked and existed */
};

struct store_history_req {
	const uint8_t *key; /* key range as in range (key_len 0 with range_end
	                       "\0" means all keys) */
	size_t key_len;
	const uint8_t *range_end;
	size_t range_end_len;
	int64_t from_rev; /* first revision, >= 1 */
	int64_t from_sub; /* resume inside from_rev at this sub revision (0 first) */
	int64_t to_rev;   /* last revision, inclusive; 0 = current */
	size_t limit;     /* max events returned (0 = no limit) */
	bool prev_kv;
	size_t max_scan; /* max history records examined, matching or not (0 =
	                    no bound): bounds the work of one call when few
	                    records match the key range */
};

struct store_history_resp {
	struct store_event *events; /* revision order, then sub (op) order */
	size_t n_events;
	bool more;        /* limit or max_scan stopped the scan before to_rev: call
	                     again from next_* (that call may find no event) */
	int64_t next_rev; /* where to resume */
	int64_t next_sub;
	int64_t revision;         /* current revision of the view */
	int64_t compact_revision; /* of the view */
	struct store_mem *mem;
};

/* Events with revision in [from, to] whose key is in the range. Like etcd's
 * watch, from_rev < compact revision is CAIRN_ECOMPACTED (from_rev equal to
 * it returns the records kept by compaction at that revision); to_rev >
 * current is CAIRN_EFUTUREREV; from_rev > to_rev returns nothing. */
int store_history(struct store_rtxn *r, const struct store_history_req *req,
                  struct store_history_resp *resp);
void store_history_resp_free(struct store_history_resp *resp);

/* ------------------------------------------------------------------------ */
/* Leases (records only: expiry timing is the server's)                       */

struct store_lease {
	int64_t id;
	int64_t ttl;           /* granted TTL, seconds */
	int64_t remaining_ttl; /* last checkpointed remaining TTL; 0 = none */
};

/* id > 0 (the server picks ids; CAIRN_EINVAL otherwise), ttl >= 0.
 * CAIRN_ELEASEEXIST if id exists, CAIRN_ENOSPACE over quota. No revision. */
int store_lease_grant(struct store_wtxn *w, int64_t id, int64_t ttl);

/* Deletes the lease and every key attached to it, all in ONE revision (keys
 * in byte order, as etcd's lessor), none if it had no keys.
 * CAIRN_ELEASENOTFOUND if missing. *revision (may be NULL) = header rev. */
int store_lease_revoke(struct store_wtxn *w, int64_t id, int64_t *revision);

/* Records a remaining-TTL checkpoint (etcd LeaseCheckpoint). No revision.
 * CAIRN_ELEASENOTFOUND if missing, CAIRN_ECORRUPT for a malformed record. */
int store_lease_checkpoint(struct store_wtxn *w, int64_t id, int64_t remaining_ttl);

/* CAIRN_ELEASENOTFOUND if missing. */
int store_lease_lookup(struct store_rtxn *r, int64_t id, struct store_lease *out);

/* All leases by id ascending. *out is malloc'd (NULL when *n == 0); free(). */
int store_lease_list(struct store_rtxn *r, struct store_lease **out, size_t *n);

struct store_lease_keys {
	struct store_kv *keys; /* key/key_len only, byte order */
	size_t n_keys;
	struct store_mem *mem;
};

/* Keys attached to lease id. CAIRN_ELEASENOTFOUND if missing. */
int store_lease_keys(struct store_rtxn *r, int64_t id, struct store_lease_keys *out);
void store_lease_keys_free(struct store_lease_keys *out);

/* ------------------------------------------------------------------------ */
/* Snapshots, hash, checks, stats                                             */

/* Writes a consistent copy of the whole environment (store AND every other
 * named database in it, e.g. raft's) to fd, from one read txn: writers are
 * not blocked. fd may be a file, pipe or socket; it is not closed. Compacted
 * (free pages are not copied). Errors: CAIRN_EIO (a write to fd failed, e.g.
 * the peer closed the pipe or socket). */
int store_snapshot_write(struct store *s, int fd);

/* Turns a snapshot read from fd (until EOF) into a new data directory `dir`
 * (created; must not already hold a store: CAIRN_EEXIST). Then store_open it.
 * CAIRN_EINVAL for an empty dir name, CAIRN_EIO for a failed read, write or
 * fsync (nothing is left in dir then). The bytes are not checked here:
 * store_open and store_check judge them. */
int store_snapshot_restore(int fd, const char *dir);

/* HashKV: CRC-32C over every key revision record with compact < rev <= `rev`
 * plus, at or below the compact revision, the records compaction keeps
 * (latest version of each key live at the compact revision), in revision
 * order: (main, sub, key, value, create, version, lease, tombstone flag).
 * Identical on members with the same history whatever their compaction
 * progress. rev 0 = current. Leases are not covered (as in etcd).
 * Errors: CAIRN_ECOMPACTED, CAIRN_EFUTUREREV. */
int store_hash_kv(struct store_rtxn *r, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                  int64_t *compact_rev);

/* Invariant checker (full scan, O(data)): index <-> kv consistency, versions
 * and create revisions chain correctly, no record above the revision, live
 * key count, leases <-> lease_keys <-> kv leases, lease records well
 * formed, meta sane. 0 or
 * CAIRN_ECORRUPT with a description in msg (may be NULL). Read-only. */
int store_check(struct store *s, char *msg, size_t msg_len);

struct store_stats {
	int64_t revision;
	int64_t compact_revision;
	uint64_t applied_index;
	uint64_t keys;    /* live keys at the current revision */
	uint64_t records; /* key revisions held in history */
	uint64_t leases;
	uint64_t db_size_bytes; /* high-water mark of the LMDB file */
	uint64_t in_use_bytes;  /* pages used by the store's databases (vs quota) */
	uint64_t pages_in_use;
	bool compaction_pending;
};

/* A snapshot of the figures above from one read txn. Errors: CAIRN_ECORRUPT
 * (malformed meta records), or a translated LMDB error if no read txn can
 * begin (CAIRN_EIO, e.g. when every reader slot is taken). */
int store_stats(struct store *s, struct store_stats *out);

#endif
