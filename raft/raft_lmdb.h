/*
 * raft_lmdb.h — durable raft log and hard state in LMDB.
 *
 * Two named databases in an MDB_env the member's store opened and shares
 * (opened with maxdbs >= 16):
 *   raft_log   index (8 bytes big-endian) -> term (8 BE) | type (1) | data
 *   raft_state "hard"  -> term | vote | commit        (3 x 8 BE)
 *              "snap"  -> index | term | n_voters | n_learners | ids (8 BE each)
 * Writes take a caller-supplied MDB_txn so the member can put the log
 * append, the hard state and the application of committed entries into one
 * write transaction (one fsync per batch); the *_own variants open and
 * commit their own transaction (tests, tools).
 *
 * The struct raft_storage it offers, and raft_lmdb_term(), read through
 * their own short read transactions, and raft_lmdb_open() and the *_own
 * variants through their own write transaction: LMDB allows one
 * transaction per thread, so never call them from a thread inside a
 * transaction of the env. A raft_lmdb must not outlive its env. Not
 * thread-safe itself: the member calls writes from its storage thread and
 * raft_new() before starting it.
 */
#ifndef CAIRN_RAFT_LMDB_H
#define CAIRN_RAFT_LMDB_H

#include <lmdb.h>

#include "raft/raft.h"

struct raft_lmdb;

/* Opens (creating) the two DBIs in env; env is borrowed. */
int raft_lmdb_open(MDB_env *env, struct raft_lmdb **out);
void raft_lmdb_close(struct raft_lmdb *rl);

/* The read interface for raft_new(). */
struct raft_storage raft_lmdb_storage(struct raft_lmdb *rl);

/* Writes the persist part of up (snapshot meta + log reset, truncation,
 * entries, hard state) in txn. Nothing is durable before txn commits. */
int raft_lmdb_write(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_update *up);
int raft_lmdb_write_own(struct raft_lmdb *rl, const struct raft_update *up);

/* Records snapshot metadata and deletes entries <= meta->index. */
int raft_lmdb_compact(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_snapshot_meta *meta);
int raft_lmdb_compact_own(struct raft_lmdb *rl, const struct raft_snapshot_meta *meta);

/* Individual pieces (used by the above; exported for tools and tests). */
int raft_lmdb_append(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_entry *ents, size_t n);
int raft_lmdb_truncate(struct raft_lmdb *rl, MDB_txn *txn, uint64_t from);
int raft_lmdb_set_hard_state(struct raft_lmdb *rl, MDB_txn *txn, const struct raft_hard_state *hs);
int raft_lmdb_term(struct raft_lmdb *rl, uint64_t index, uint64_t *term);

#endif
