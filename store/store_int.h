/*
 * store_int.h — internals shared by the store's source files. Not API.
 *
 * ON-DISK FORMAT (schema 2; schema 1 had no "recent" and is upgraded by
 * creating it)
 *   kv     revkey (main u64 BE, sub u64 BE) -> record:
 *            [0] flags (1 = tombstone)  [1..3] zero  [4..7] key length u32 BE
 *            [8..15] create_revision  [16..23] version  [24..31] lease
 *            (all i64 BE), then the key, then the value.
 *          A tombstone has create = version = lease = 0 and no value.
 *   index  user key -> DUPSORT|DUPFIXED 17-byte items: main BE, sub BE,
 *          tombstone flag. Dup order is revision order.
 *   recent same format: each key's newest items (store_index.c: a key's
 *          items are its index items, then its recent items).
 *   meta   "schema" u32, "rev" i64 (absent: 1, the empty store, whose
 *          first write is revision 2 as in etcd), "compact" i64 (absent:
 *          0), "applied" u64, "keys" u64 (live keys), "cnext" revkey
 *          (next kv record the compaction has to examine; absent when
 *          compaction is done), "u/<name>" caller blobs.
 *   leases     id (u64 BE) -> ttl i64 BE, remaining i64 BE
 *   lease_keys id (u64 BE) -> DUPSORT user keys attached to the lease.
 *
 * Decoders (rec_decode, idx_decode, the meta and lease readers) check
 * sizes and ranges (REV_MAX) and return CAIRN_ECORRUPT rather than trust a
 * damaged record.
 *
 * INVARIANTS (checked by store_check)
 *   1. Every kv record has its index item and vice versa, same tombstone flag.
 *   2. Records above the compact revision have sub revisions 0..n-1 for
 *      each main revision; every record is in [2, meta "rev"].
 *   3. Per key, above the compact revision: a put with a live predecessor
 *      has version+1 and the same create revision; one without has version
 *      1 and create == its own revision; a tombstone follows a live record.
 *   4. meta "keys" = keys whose latest item is not a tombstone.
 *   5. A live key with lease L != 0 <=> L exists and lease_keys has (L, key).
 */
#ifndef CAIRN_STORE_INT_H
#define CAIRN_STORE_INT_H

#include "store/store.h"

#define SCHEMA_VERSION 2u
#define REC_HDR        32u
#define IDX_ITEM       17u
#define REVKEY         16u
#define REC_TOMB       1u

/* Largest revision, sub revision, create revision or version a sane store
 * holds (2^62 - 1): a decoder treats anything above it (or negative) as
 * corruption. Staying this far below INT64_MAX keeps every rev + 1,
 * sub + 1 and version + 1 the store computes exact, whatever the disk
 * says. */
#define REV_MAX (INT64_MAX / 2)

struct store {
	MDB_env *env;
	MDB_dbi kv, index, meta, leases, lease_keys;
	MDB_dbi recent;
	bool has_recent;      /* false only for a read-only open of a schema 1 dir */
	size_t recent_target; /* items recent keeps after a commit */
	/* Where the next slice moved from recent to index starts (writer only;
	 * a hint, lost on close). */
	uint8_t mpos[512];
	size_t mpos_len;
	int lock_fd;
	bool read_only;
	bool nosync;
	size_t max_key;
	uint64_t psize; /* LMDB page size */
	uint64_t quota;
	size_t max_request;
	unsigned max_txn_ops;
};

/* Cursors on both index databases (store_index.c); c[1] NULL without
 * recent. */
struct ixc {
	MDB_cursor *c[2];
};

struct store_wtxn {
	struct store *s;
	MDB_txn *txn; /* the batch */
	MDB_txn *cur; /* the running mutation's nested txn, else txn */
	int failed;   /* fatal error code, 0 if usable */
	int64_t rev;  /* committed-in-batch revision */
	int64_t compact;
	uint64_t applied;
	uint64_t keys;
	/* The running mutation. */
	int64_t main;       /* revision it writes at (rev + 1) */
	int64_t sub;        /* next sub revision */
	int64_t dkeys;      /* live key delta */
	int64_t base_rev;   /* revision compares read at (state before the txn) */
	bool nested;        /* the mutation runs in a nested LMDB txn */
	bool touched;       /* the mutation has written something */
	uint64_t est_pages; /* estimate of pages the batch allocated (mut_begin) */
	/* An index cursor on txn (the batch), opened by the first put that
	 * runs outside a nested txn and closed before txn ends: a put no
	 * longer allocates and frees a cursor (with its DUPSORT sub-cursor)
	 * of its own. Only used while cur == txn: LMDB forbids using a
	 * parent's cursor while a nested txn is open. */
	struct ixc ic;
	bool ic_open;
};

struct store_rtxn {
	struct store *s;
	MDB_txn *txn;
	int64_t rev;
	int64_t compact;
	uint64_t applied;
};

/* A consistent read position: a txn and the revision it reads as current. */
struct view {
	struct store *s;
	MDB_txn *txn;
	int64_t rev;
	int64_t compact;
	bool copy; /* results must be copied (write txn: pages move) */
};

struct rec {
	int64_t main, sub;
	bool tomb;
	const uint8_t *key;
	size_t klen;
	const uint8_t *val;
	size_t vlen;
	int64_t create, version, lease;
};

struct idx {
	int64_t main, sub;
	bool tomb;
};

/* Key range in etcd's convention. */
enum { KR_SINGLE, KR_FROM, KR_RANGE };
struct krange {
	const uint8_t *key;
	size_t klen;
	const uint8_t *end;
	size_t elen;
	int kind;
};

/* Bump allocator owning response memory. */
struct store_mem {
	struct store_mem *next;
	size_t used, cap;
	unsigned char *data;
};

/* store.c */
int store_lmdb_err(int rc);
void put_u64be(uint8_t *p, uint64_t v);
uint64_t get_u64be(const uint8_t *p);
void revkey_make(uint8_t out[REVKEY], int64_t main, int64_t sub);
int rec_decode(const MDB_val *k, const MDB_val *v, struct rec *r);
int idx_decode(const MDB_val *v, struct idx *out);
void krange_init(struct krange *kr, const uint8_t *key, size_t klen, const uint8_t *end,
                 size_t elen);
int krange_cmp_end(const struct krange *kr, const uint8_t *k, size_t kl);
int krange_first(const struct krange *kr, MDB_cursor *c, MDB_val *k, MDB_val *v);
int rec_get(const struct view *v, int64_t main, int64_t sub, struct rec *r);
int idx_at(MDB_cursor *ic, const MDB_val *key, int64_t rev, struct idx *out);
int is_kept(struct ixc *x, const struct rec *r, int64_t compact, bool *kept);
int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);
void *mem_alloc(struct store_mem **m, size_t n);
void *mem_dup(struct store_mem **m, const void *p, size_t n);
void mem_free(struct store_mem *m);
int kv_out(const struct view *v, struct store_mem **m, const struct rec *r, bool keys_only,
           struct store_kv *out);
int meta_get_i64(MDB_txn *t, MDB_dbi meta, const char *name, int64_t *out);
int meta_put_i64(MDB_txn *t, MDB_dbi meta, const char *name, int64_t v);
uint64_t store_pages_in_use(struct store *s, MDB_txn *t);

/* store_index.c */
void idx_item(uint8_t out[IDX_ITEM], int64_t main, int64_t sub, bool tomb);
int ixc_open(MDB_txn *t, const struct store *s, struct ixc *x);
void ixc_close(struct ixc *x);
/* The latest item of key with main <= rev; CAIRN_ENOTFOUND if none. */
int ix_at(struct ixc *x, const MDB_val *key, int64_t rev, struct idx *out);
/* The same, looking only in the databases of mask `in` (1 index, 2
 * recent): a key walk knows which hold the key (struct ixk's cur). */
int ix_at_in(struct ixc *x, unsigned in, const MDB_val *key, int64_t rev, struct idx *out);
/* Which database (0 index, 1 recent) holds item it of key. */
int ix_find(struct ixc *x, const MDB_val *key, const struct idx *it, int *which);
/* The item after (dir > 0) or before (dir < 0) item it of key;
 * CAIRN_ENOTFOUND if none, CAIRN_ECORRUPT if it is not there. */
int ix_step(struct ixc *x, const MDB_val *key, const struct idx *it, int dir, struct idx *out);
int ix_del(struct store_wtxn *w, struct ixc *x, const MDB_val *key, const struct idx *it);
/* Moves slices of keys from recent to index until recent holds at most
 * recent_target items (called by the commit). */
int ix_rebalance(struct store_wtxn *w);
/* The keys of a range in both, in order: ixk_first/ixk_next give each key
 * once (0), MDB_NOTFOUND past the range, or an LMDB error. Open x with
 * ixc_open first; keys point into the map. */
struct ixk {
	struct ixc x;
	const struct krange *kr;
	MDB_val k[2];
	int rc[2];
	unsigned cur; /* which cursors are on the current key */
};
int ixk_first(struct ixk *it, const struct krange *kr, MDB_val *key);
int ixk_next(struct ixk *it, MDB_val *key);

/* store_read.c */
int view_range(const struct view *v, const struct store_range_req *req,
               struct store_range_resp *resp, struct store_mem **m);

/* store_write.c */
int wtxn_usable(struct store_wtxn *w);
int mut_begin(struct store_wtxn *w, size_t est_bytes);
int mut_end(struct store_wtxn *w, int rc);
int w_put(struct store_wtxn *w, MDB_dbi dbi, MDB_val *k, MDB_val *d, unsigned flags);
int w_del(struct store_wtxn *w, MDB_dbi dbi, MDB_val *k, MDB_val *d);
/* Deletes the item under c (a cursor on w->cur), as w_del. */
int w_cursor_del(struct store_wtxn *w, MDB_cursor *c);

#endif
