/*
 * fuzz_store_records.c — libFuzzer target for what the store decodes from
 * LMDB: the records of "kv" (history), "index" (key -> revisions), "meta",
 * "leases", "lease_keys" and "recent" (store_int.h ON-DISK FORMAT) after a disk, a
 * bug or a hand edit corrupted them. Whatever they hold, every reader and
 * writer must answer with an error or a result, never crash, hang or read
 * out of bounds (UBSan aborts too); and when store_check passes, no call
 * may report corruption (store_check is what `cairnctl inspect check`
 * trusts).
 *
 * One store in a temp dir is seeded once (puts, deletes, a txn, a lease
 * with a key, a finished and an unfinished compaction) and its records are
 * kept in memory. Each input is a list of edits of those records, then the
 * six databases are emptied and rewritten with the edited records in one
 * LMDB transaction (records LMDB itself refuses are skipped) and the store
 * API runs over them: store_check, range (current, old revisions, keys
 * only, sorted), history with prev_kv, HashKV, the lease reads, stats, and
 * in a batch: put, delete, txn, lease revoke, compaction and compaction
 * steps. The batch is aborted, or (first input byte & 16) committed, which
 * moves index items from recent to index: then a store store_check passed
 * must pass it again.
 *
 * An edit is one opcode byte, its database (byte % 6: kv, index, meta,
 * leases, lease_keys, recent) and operands:
 *   0 flip    u8 record, u16 offset (LE) into key||value, u8 xor
 *   1 cut     u8 record, u16 new value length
 *   2 drop    u8 record
 *   3 insert  u8 key length, key, u8 value length, value (meta: a key
 *             byte < 16 picks one of the names the store uses)
 *   4 set     u8 record, u8 value length, value (replaces the value)
 * Records are picked by index modulo the number of records of the database.
 *
 * Found so far: int64 overflows on a revision near INT64_MAX in meta
 * "rev" or a record key (history's next revision, a mutation's rev + 1:
 * decoders now refuse anything above REV_MAX), index items and lease ids
 * of the wrong size read past their end, lease records store_check did not
 * look at.
 *
 *   make fuzz-store-records FUZZ_SECONDS=600
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "tests/store_test_util.h"
#include "tests/fuzz/fuzz_input.h"

#define NDB     6
#define MAX_REC 512

struct record {
	uint8_t *k, *v;
	size_t kl, vl;
};

struct dbset {
	struct record r[NDB][MAX_REC];
	size_t n[NDB];
};

static struct store *st;
static char *dir;
static struct dbset base, cur;

static const char *const meta_names[16] = {
    "schema", "rev",   "compact", "applied", "keys", "cnext", "u/membership", "u/cluster_id", "rev",
    "keys",   "cnext", "compact", "schema",  "u/",   "",      "applied"};

static MDB_dbi dbi_of(int db)
{
	switch (db) {
	case 0:
		return st->kv;
	case 1:
		return st->index;
	case 2:
		return st->meta;
	case 3:
		return st->leases;
	case 4:
		return st->lease_keys;
	default:
		return st->recent;
	}
}

static void *dup_bytes(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	if (!q)
		abort();
	if (n)
		memcpy(q, p, n);
	return q;
}

static void set_free(struct dbset *s)
{
	for (int db = 0; db < NDB; db++) {
		for (size_t i = 0; i < s->n[db]; i++) {
			free(s->r[db][i].k);
			free(s->r[db][i].v);
		}
		s->n[db] = 0;
	}
}

static void set_copy(struct dbset *to, const struct dbset *from)
{
	for (int db = 0; db < NDB; db++) {
		to->n[db] = from->n[db];
		for (size_t i = 0; i < from->n[db]; i++) {
			const struct record *f = &from->r[db][i];
			to->r[db][i] = (struct record){dup_bytes(f->k, f->kl),
			                               dup_bytes(f->v, f->vl), f->kl, f->vl};
		}
	}
}

static void cleanup(void)
{
	set_free(&base);
	store_close(st);
	if (dir)
		tu_rmrf(dir);
	free(dir);
}

static void must(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "fuzz_store_records: seeding: %s: %s\n", what, cairn_strerror(rc));
		abort();
	}
}

static void seed_store(void)
{
	const char *keys[] = {"a", "b", "c", "foo", "foo/bar", "z"};
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			must(tu_put(st, keys[i], round ? "v2" : "v1"), "put");
	struct store_wtxn *w;
	must(store_wtxn_begin(st, &w), "begin");
	struct store_delete_req del = {B("b"), 1, NULL, 0, false};
	must(store_delete_range(w, &del, NULL), "delete");
	struct store_op ops[2] = {
	    {.type = STORE_OP_PUT, .u.put = {B("t1"), 2, B("x"), 1, 0, false, false, false}},
	    {.type = STORE_OP_PUT, .u.put = {B("t2"), 2, B("y"), 1, 0, false, false, false}}};
	struct store_txn_req txn = {.success = ops, .n_success = 2};
	struct store_txn_resp tr;
	must(store_txn(w, &txn, &tr), "txn");
	store_txn_resp_free(&tr);
	must(store_lease_grant(w, 7, 60), "grant");
	must(store_lease_grant(w, 8, 30), "grant");
	must(store_wtxn_set_applied(w, 42), "applied");
	must(store_wtxn_set_meta(w, "membership", "m1,m2,m3", 8), "set_meta");
	must(store_compact(w, 4), "compact");
	bool done = false;
	while (!done)
		must(store_compact_step(w, 100, &done), "compact_step");
	must(store_wtxn_commit(w), "commit");
	must(tu_put_lease(st, "leased", "x", 7), "put lease");
	must(tu_put(st, "a", "v3"), "put");
	must(store_wtxn_begin(st, &w), "begin");
	must(store_compact(w, 9), "compact"); /* left unswept: "cnext" stays */
	must(store_wtxn_commit(w), "commit");
	char msg[256];
	if (store_check(st, msg, sizeof(msg))) {
		fprintf(stderr, "fuzz_store_records: seeded store fails store_check: %s\n", msg);
		abort();
	}
	/* Keep every record of the six databases. */
	MDB_txn *t;
	must(store_lmdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t)), "read");
	for (int db = 0; db < NDB; db++) {
		MDB_cursor *c;
		must(store_lmdb_err(mdb_cursor_open(t, dbi_of(db), &c)), "cursor");
		MDB_val k, v;
		for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			if (base.n[db] == MAX_REC)
				abort();
			base.r[db][base.n[db]++] =
			    (struct record){dup_bytes(k.mv_data, k.mv_size),
			                    dup_bytes(v.mv_data, v.mv_size), k.mv_size, v.mv_size};
		}
		mdb_cursor_close(c);
	}
	mdb_txn_abort(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	st = tu_fuzz_store("fuzz_store_records", &dir);
	atexit(cleanup);
	seed_store();
	return 0;
}

/* ---- edits ---------------------------------------------------------------- */

static void edit(struct fuzz_in *in)
{
	uint8_t op, db8, which;
	if (!fuzz_get(in, &op, 1) || !fuzz_get(in, &db8, 1))
		return;
	int db = db8 % NDB;
	size_t n = cur.n[db];
	op %= 5;
	if (op == 3) {
		uint8_t kl, vl, k[256], v[256];
		if (!fuzz_get(in, &kl, 1) || !fuzz_get(in, k, kl) || !fuzz_get(in, &vl, 1) ||
		    !fuzz_get(in, v, vl) || n == MAX_REC)
			return;
		struct record *r = &cur.r[db][cur.n[db]++];
		if (db == 2 && kl && k[0] < 16) {
			const char *name = meta_names[k[0]];
			r->k = dup_bytes(name, strlen(name));
			r->kl = strlen(name);
		} else {
			r->k = dup_bytes(k, kl);
			r->kl = kl;
		}
		r->v = dup_bytes(v, vl);
		r->vl = vl;
		return;
	}
	if (!fuzz_get(in, &which, 1) || n == 0)
		return;
	struct record *r = &cur.r[db][which % n];
	if (op == 0) {
		uint8_t off[2], x;
		if (!fuzz_get(in, off, 2) || !fuzz_get(in, &x, 1) || r->kl + r->vl == 0)
			return;
		size_t o = ((size_t)off[0] | (size_t)off[1] << 8) % (r->kl + r->vl);
		if (o < r->kl)
			r->k[o] ^= x;
		else
			r->v[o - r->kl] ^= x;
	} else if (op == 1) {
		uint8_t len[2];
		if (!fuzz_get(in, len, 2))
			return;
		size_t l = (size_t)len[0] | (size_t)len[1] << 8; /* < 64 KiB */
		if (l < r->vl) {
			r->vl = l;
		} else {
			uint8_t *v = calloc(1, l ? l : 1);
			if (!v)
				abort();
			memcpy(v, r->v, r->vl);
			free(r->v);
			r->v = v;
			r->vl = l;
		}
	} else if (op == 2) {
		free(r->k);
		free(r->v);
		*r = cur.r[db][--cur.n[db]];
	} else {
		uint8_t vl, v[256];
		if (!fuzz_get(in, &vl, 1) || !fuzz_get(in, v, vl))
			return;
		free(r->v);
		r->v = dup_bytes(v, vl);
		r->vl = vl;
	}
}

/* Whether LMDB can hold index record i: all items of a DUPFIXED key have
 * one size (LMDB does not check it and would break its own pages, which
 * is LMDB's corruption, not the records' the store must survive). */
static bool fits_dupfixed(size_t i)
{
	const struct record *r = &cur.r[1][i];
	for (size_t j = 0; j < i; j++) {
		const struct record *o = &cur.r[1][j];
		if (o->kl == r->kl && !memcmp(o->k, r->k, r->kl))
			return o->vl == r->vl;
	}
	return true;
}

/* Empties the six databases and writes cur into them. */
static void write_records(void)
{
	MDB_txn *t;
	if (mdb_txn_begin(st->env, NULL, 0, &t))
		abort();
	for (int db = 0; db < NDB; db++)
		if (mdb_drop(t, dbi_of(db), 0))
			abort();
	for (int db = 0; db < NDB; db++)
		for (size_t i = 0; i < cur.n[db]; i++) {
			if (db == 1 && !fits_dupfixed(i))
				continue;
			/* LMDB copies a DUPFIXED key's fixed item size from
			 * the value whatever its length: give it room to read
			 * (edits make values at most 64 KiB). */
			static uint8_t vb[1 << 16];
			size_t vl = cur.r[db][i].vl;
			memcpy(vb, cur.r[db][i].v, vl);
			memset(vb + vl, 0, db == 1 ? sizeof(vb) - vl : 0);
			MDB_val k = {cur.r[db][i].kl, cur.r[db][i].k};
			MDB_val v = {vl, vb};
			/* Empty or over-long keys, values of another size in a
			 * DUPFIXED database: LMDB refuses them; skip. */
			mdb_put(t, dbi_of(db), &k, &v, 0);
		}
	if (mdb_txn_commit(t))
		abort();
}

/* ---- what runs over the records ---------------------------------------------- */

/* Whether store_check passed on this input's records: then no call may
 * find corruption store_check missed (it is what `cairnctl inspect check`
 * trusts). */
static bool healthy;

static int ok(int rc, const char *what)
{
	if (healthy && rc == CAIRN_ECORRUPT) {
		fprintf(stderr, "fuzz_store_records: %s reports corruption store_check missed\n",
		        what);
		abort();
	}
	return rc;
}

static void reads(void)
{
	char msg[256];
	healthy = store_check(st, msg, sizeof(msg)) == 0;
	struct store_rtxn *r;
	if (store_rtxn_begin(st, &r))
		return; /* a corrupt meta may refuse every view: fine */
	int64_t rev = store_rtxn_revision(r), compact = store_rtxn_compact_revision(r);
	const int64_t revs[] = {0, rev, rev - 1, compact, compact + 1, 2, 5};
	for (size_t i = 0; i < sizeof(revs) / sizeof(revs[0]); i++) {
		struct store_range_req rq = {.key = B("\0"),
		                             .key_len = 1,
		                             .range_end = B("\0"),
		                             .range_end_len = 1,
		                             .revision = revs[i],
		                             .keys_only = i & 1,
		                             .sort_order = (enum store_sort_order)(i % 3),
		                             .sort_target = (enum store_sort_target)(i % 5),
		                             .limit = (int64_t)i};
		struct store_range_resp rs;
		if (ok(store_range(r, &rq, &rs), "range") == 0)
			store_range_resp_free(&rs);
		const char *single[] = {"a", "leased", "foo", "b"};
		struct store_range_req one = {
		    .key = B(single[i % 4]), .key_len = strlen(single[i % 4]), .revision = revs[i]};
		if (ok(store_range(r, &one, &rs), "range of one key") == 0)
			store_range_resp_free(&rs);
	}
	const int64_t froms[] = {1, compact, compact + 1, rev};
	for (size_t i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		struct store_history_req hq = {.range_end = B("\0"),
		                               .range_end_len = 1,
		                               .from_rev = froms[i] > 0 ? froms[i] : 1,
		                               .prev_kv = true,
		                               .limit = i == 3 ? 2 : 0,
		                               .max_scan = i == 2 ? 3 : 0};
		struct store_history_resp hs;
		if (ok(store_history(r, &hq, &hs), "history") == 0)
			store_history_resp_free(&hs);
	}
	uint32_t hash;
	int64_t hrev, hcomp;
	ok(store_hash_kv(r, 0, &hash, &hrev, &hcomp), "hash_kv");
	ok(store_hash_kv(r, compact, &hash, &hrev, &hcomp), "hash_kv at compact");
	struct store_lease *ls;
	size_t nl;
	if (ok(store_lease_list(r, &ls, &nl), "lease_list") == 0) {
		for (size_t i = 0; i < nl && i < 4; i++) {
			struct store_lease_keys lk;
			if (ok(store_lease_keys(r, ls[i].id, &lk), "lease_keys") == 0)
				store_lease_keys_free(&lk);
		}
		free(ls);
	}
	struct store_lease l;
	ok(store_lease_lookup(r, 7, &l), "lease_lookup");
	const void *blob;
	size_t bl;
	store_rtxn_get_meta(r, "membership", &blob, &bl);
	store_rtxn_end(r);
	struct store_stats sst;
	store_stats(st, &sst);
}

static void writes(uint8_t sel)
{
	struct store_wtxn *w;
	if (store_wtxn_begin(st, &w))
		return;
	int64_t rev = store_wtxn_revision(w);
	struct store_put_req put = {B("a"), 1, B("new"), 3, sel & 1 ? 7 : 0, true, false, false};
	struct store_put_resp pr;
	if (ok(store_put(w, &put, &pr), "put") == 0)
		store_put_resp_free(&pr);
	struct store_put_req put2 = {B("leased"), 6, NULL, 0, 0, true, true, true};
	if (ok(store_put(w, &put2, &pr), "put ignore_value") == 0)
		store_put_resp_free(&pr);
	struct store_delete_req del = {B("foo"), 3, sel & 2 ? B("\0") : B("fop"), 1, true};
	struct store_delete_resp dr;
	if (ok(store_delete_range(w, &del, &dr), "delete_range") == 0)
		store_delete_resp_free(&dr);
	struct store_compare cmp = {.result = STORE_CMP_GREATER,
	                            .target = STORE_CMP_MOD,
	                            .key = B("\0"),
	                            .key_len = 1,
	                            .range_end = B("\0"),
	                            .range_end_len = 1,
	                            .number = 3};
	struct store_op ops[1] = {{.type = STORE_OP_DELETE, .u.del = {B("c"), 1, B("z"), 1, true}}};
	struct store_txn_req txn = {.compares = &cmp,
	                            .n_compares = 1,
	                            .success = ops,
	                            .n_success = 1,
	                            .failure = ops,
	                            .n_failure = 1};
	struct store_txn_resp tr;
	if (ok(store_txn(w, &txn, &tr), "txn") == 0)
		store_txn_resp_free(&tr);
	int64_t rrev;
	ok(store_lease_revoke(w, sel & 4 ? 8 : 7, &rrev), "lease_revoke");
	ok(store_lease_checkpoint(w, 8, 10), "lease_checkpoint");
	ok(store_compact(w, sel & 8 ? rev - 1 : rev), "compact");
	bool done = false;
	for (int i = 0; i < 8 && !done; i++)
		if (ok(store_compact_step(w, 3, &done), "compact_step"))
			break;
	if (!(sel & 16)) {
		store_wtxn_abort(w);
		return;
	}
	/* Committed (the records are rewritten for the next input): the
	 * commit moves slices of keys from recent to index, and a store that
	 * passed store_check must pass it after the batch too. */
	int rc = ok(store_wtxn_commit(w), "commit");
	char msg[256];
	if (rc == 0 && healthy && store_check(st, msg, sizeof(msg)) != 0) {
		fprintf(stderr,
		        "fuzz_store_records: store_check fails after a committed batch: %s\n", msg);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	set_copy(&cur, &base);
	struct fuzz_in in = {data, size};
	uint8_t sel = 0;
	fuzz_get(&in, &sel, 1);
	while (in.n)
		edit(&in);
	write_records();
	set_free(&cur);
	reads();
	writes(sel);
	return 0;
}
