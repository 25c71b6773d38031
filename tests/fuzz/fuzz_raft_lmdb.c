/*
 * fuzz_raft_lmdb.c — libFuzzer target for what raft/raft_lmdb.c reads back
 * from LMDB after a disk, a bug or a hand edit corrupted it: log entries
 * (raft_log: index -> term | type | data, with membership changes among
 * them), the hard state and the snapshot metadata with its membership
 * (raft_state "hard", "snap"). Whatever the records hold, the storage
 * interface and raft_new() must answer with an error or a result, never
 * crash, hang or read out of bounds (UBSan aborts too); and a core that
 * raft_new() accepted must pass raft_check(), run, and, after writing its
 * own updates through raft_lmdb, be recovered again by raft_new().
 *
 * Each input empties both databases of one env (in a temp dir, opened
 * once), writes the records it describes in one transaction (records LMDB
 * itself refuses are skipped), then:
 *   - initial_state, last_index, entries over the whole log (no byte
 *     limit and a small one), raft_lmdb_term around its ends; entries must
 *     come in index order; membership entries go through
 *     raft_conf_change_decode and raft_conf_apply on the snapshot's
 *     configuration;
 *   - raft_new() as member 1 (bootstrap configuration {1} or {1, 2, 3});
 *     if it accepts the state: raft_check(), then up to 40 ticks (a lone
 *     voter elects itself and commits the log), every update persisted
 *     with raft_lmdb_write (reported PERSISTED) and committed entries
 *     reported APPLIED, raft_check() after each step; a compaction of what
 *     was applied; then raft_new() again on what is stored must succeed.
 *
 * Input: byte 0 (bit 0: three voters; bit 1: no ticks), then records,
 * each one opcode byte (mod 4) and operands:
 *   0 entry     s8 index step (added to previous + 1), s8 term step, u8
 *               type, u8 length, data: a well-formed log record
 *   1 raw log   u8 key length (mod 17), key, u8 value length, value
 *   2 raw state u8 selector (0 "hard", 1 "snap", else: u8 key length, key),
 *               u8 value length, value
 *   3 state     u8 selector: even: hard state (u8 term, u8 vote, u16 LE
 *               commit), odd: snapshot (u16 LE index, u8 term, u8 voters,
 *               u8 learners, then one u8 id per member): well-formed
 *               values, with counts up to 255 (RAFT_MAX_MEMBERS is 16)
 * tests/fuzz/seeds_raft_lmdb.py makes the seed corpus.
 *
 *   make fuzz-raft-lmdb FUZZ_SECONDS=600
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft/raft.h"
#include "raft/raft_lmdb.h"
#include "tests/fuzz/fuzz_input.h"

#define FAIL(...) FUZZ_FAIL("fuzz_raft_lmdb", __VA_ARGS__)

static MDB_env *env;
static struct raft_lmdb *rl;
static MDB_dbi dbi_log, dbi_state;
static char dir[] = "/tmp/fuzz_raft_lmdb-XXXXXX";

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	mdb_env_close(env);
	nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!mkdtemp(dir))
		FAIL("mkdtemp");
	/* No fsync: nothing here outlives the process. */
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 16) ||
	    mdb_env_set_mapsize(env, 64u << 20) ||
	    mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOMETASYNC, 0600))
		FAIL("mdb_env_open %s", dir);
	atexit(cleanup);
	if (raft_lmdb_open(env, &rl))
		FAIL("raft_lmdb_open");
	MDB_txn *txn;
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
	    mdb_dbi_open(txn, "raft_log", 0, &dbi_log) ||
	    mdb_dbi_open(txn, "raft_state", 0, &dbi_state))
		FAIL("dbi");
	mdb_txn_abort(txn);
	return 0;
}

/* ---- input ---------------------------------------------------------------- */

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl)
{
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	(void)mdb_put(txn, dbi, &key, &val, 0); /* what LMDB refuses is skipped */
}

/* One record of the input into txn; false at the end of the input. */
static bool record(struct fuzz_in *in, MDB_txn *txn, uint64_t *index, uint64_t *term)
{
	uint8_t op, a, b, len, k[256], v[9 + 256];
	if (!fuzz_get(in, &op, 1))
		return false;
	switch (op % 4) {
	case 0: {
		uint8_t type;
		if (!fuzz_get(in, &a, 1) || !fuzz_get(in, &b, 1) || !fuzz_get(in, &type, 1) ||
		    !fuzz_get(in, &len, 1) || !fuzz_get(in, v + 9, len))
			return false;
		*index += 1 + (uint64_t)(int64_t)(int8_t)a;
		*term += (uint64_t)(int64_t)(int8_t)b;
		put64(k, *index);
		put64(v, *term);
		v[8] = type;
		put(txn, dbi_log, k, 8, v, 9 + (size_t)len);
		return true;
	}
	case 1:
		if (!fuzz_get(in, &a, 1) || !fuzz_get(in, k, a % 17) || !fuzz_get(in, &len, 1) ||
		    !fuzz_get(in, v, len))
			return false;
		put(txn, dbi_log, k, a % 17, v, len);
		return true;
	case 2: {
		const char *key = (const char *)k;
		size_t kl;
		if (!fuzz_get(in, &a, 1))
			return false;
		if (a == 0 || a == 1) {
			key = a ? "snap" : "hard";
			kl = 4;
		} else if (!fuzz_get(in, &b, 1) || !fuzz_get(in, k, b)) {
			return false;
		} else {
			kl = b;
		}
		if (!fuzz_get(in, &len, 1) || !fuzz_get(in, v, len))
			return false;
		put(txn, dbi_state, key, kl, v, len);
		return true;
	}
	default: {
		uint8_t w[24 + 8 * 510];
		if (!fuzz_get(in, &a, 1))
			return false;
		if (a % 2 == 0) {
			uint8_t t, vote, c[2];
			if (!fuzz_get(in, &t, 1) || !fuzz_get(in, &vote, 1) || !fuzz_get(in, c, 2))
				return false;
			put64(w, t);
			put64(w + 8, vote);
			put64(w + 16, (uint64_t)c[0] | (uint64_t)c[1] << 8);
			put(txn, dbi_state, "hard", 4, w, 24);
			return true;
		}
		uint8_t i2[2], t, nv, nl;
		if (!fuzz_get(in, i2, 2) || !fuzz_get(in, &t, 1) || !fuzz_get(in, &nv, 1) ||
		    !fuzz_get(in, &nl, 1))
			return false;
		put64(w, (uint64_t)i2[0] | (uint64_t)i2[1] << 8);
		put64(w + 8, t);
		put64(w + 16, (uint64_t)nv << 32 | nl);
		for (unsigned i = 0; i < (unsigned)nv + nl; i++) {
			uint8_t id;
			if (!fuzz_get(in, &id, 1))
				return false;
			put64(w + 24 + 8 * i, id);
		}
		put(txn, dbi_state, "snap", 4, w, 24 + 8 * ((size_t)nv + nl));
		return true;
	}
	}
}

static void load(struct fuzz_in *in)
{
	MDB_txn *txn;
	if (mdb_txn_begin(env, NULL, 0, &txn))
		FAIL("txn");
	if (mdb_drop(txn, dbi_log, 0) || mdb_drop(txn, dbi_state, 0))
		FAIL("drop");
	uint64_t index = 0, term = 1;
	while (record(in, txn, &index, &term))
		;
	if (mdb_txn_commit(txn))
		FAIL("commit");
}

/* ---- the storage interface ----------------------------------------------- */

struct walk {
	uint64_t next;
	struct raft_conf conf;
	size_t n;
};

static int walk_cb(void *arg, const struct raft_entry *e)
{
	struct walk *w = arg;
	if (e->index != w->next)
		FAIL("entries: index %llu where %llu was due", (unsigned long long)e->index,
		     (unsigned long long)w->next);
	w->next++;
	w->n++;
	if (e->type == RAFT_ENTRY_CONF) {
		struct raft_conf_change cc;
		if (raft_conf_change_decode(e->data.base, e->data.len, &cc) == 0)
			(void)raft_conf_apply(&w->conf, &cc);
	}
	return 0;
}

static void read_storage(struct raft_storage *s)
{
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	uint64_t last;
	if (s->initial_state(s->ctx, &hs, &snap) || s->last_index(s->ctx, &last))
		return;
	if (snap.conf.n_voters > RAFT_MAX_MEMBERS || snap.conf.n_learners > RAFT_MAX_MEMBERS)
		FAIL("snapshot configuration of %u voters, %u learners accepted",
		     (unsigned)snap.conf.n_voters, (unsigned)snap.conf.n_learners);
	if (last < snap.index)
		FAIL("last index %llu below the snapshot index %llu", (unsigned long long)last,
		     (unsigned long long)snap.index);
	for (size_t max = 0; max <= 64; max += 64) {
		struct walk w = {.next = snap.index + 1, .conf = snap.conf};
		int rv = s->entries(s->ctx, snap.index + 1, last, max, walk_cb, &w);
		if (rv == 0 && max == 0 && last > snap.index && w.next != last + 1)
			FAIL("entries [%llu, %llu] ended at %llu without an error",
			     (unsigned long long)snap.index + 1, (unsigned long long)last,
			     (unsigned long long)w.next - 1);
		if (rv == 0 && last > snap.index && w.n == 0)
			FAIL("entries gave nothing without an error");
	}
	uint64_t t;
	const uint64_t probes[] = {0, 1, snap.index, snap.index + 1, last, last + 1};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		(void)raft_lmdb_term(rl, probes[i], &t);
}

/* ---- the core over it ------------------------------------------------------ */

static void check(struct raft *r, const char *when)
{
	char buf[256];
	if (raft_check(r, buf, sizeof(buf)))
		FAIL("raft_check %s: %s", when, buf);
}

static void handle(struct raft *r, struct raft_update *up, uint64_t *applied, int depth);

/* Steps ev into r, checks r, handles the update. */
static void step(struct raft *r, const struct raft_event *ev, uint64_t *applied, int depth)
{
	struct raft_update up;
	(void)raft_step(r, ev, &up);
	check(r, ev->type == RAFT_EVENT_TICK        ? "after a tick"
	         : ev->type == RAFT_EVENT_PERSISTED ? "after PERSISTED"
	                                            : "after APPLIED");
	handle(r, &up, applied, depth);
}

/* Persists what up asks for, then steps PERSISTED and APPLIED (the last
 * index applied into *applied), and so on for what those steps return. */
static void handle(struct raft *r, struct raft_update *up, uint64_t *applied, int depth)
{
	uint64_t seq = up->persist_seq, to = 0;
	if (up->n_committed)
		to = up->committed[up->n_committed - 1].index;
	for (size_t i = 0; i < up->n_committed; i++) {
		const struct raft_entry *e = &up->committed[i];
		if (e->type == RAFT_ENTRY_CONF) {
			struct raft_conf_change cc;
			(void)raft_conf_change_decode(e->data.base, e->data.len, &cc);
		}
	}
	if (seq && up->snapshot == NULL) {
		int rv = raft_lmdb_write_own(rl, up);
		if (rv && rv != CAIRN_EMAPFULL)
			FAIL("raft_lmdb_write of the core's own update: %s", cairn_strerror(rv));
	}
	if (depth > 8)
		return;
	if (seq)
		step(r, &(struct raft_event){.type = RAFT_EVENT_PERSISTED, .persisted.seq = seq},
		     applied, depth + 1);
	if (to) {
		*applied = to;
		step(r, &(struct raft_event){.type = RAFT_EVENT_APPLIED, .applied.index = to},
		     applied, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct fuzz_in in = {data + 1, size - 1};
	load(&in);
	struct raft_storage s = raft_lmdb_storage(rl);
	read_storage(&s);

	struct raft_conf boot = {.n_voters = 1, .voters = {1, 2, 3}};
	if (data[0] & 1)
		boot.n_voters = 3;
	struct raft_config cfg = {.id = 1, .seed = 1, .pre_vote = true, .initial_conf = &boot};
	struct raft *r;
	if (raft_new(&cfg, &s, &r))
		return 0;
	check(r, "after raft_new");
	uint64_t applied = 0;
	for (int i = 0; i < 40 && !(data[0] & 2); i++)
		step(r, &(struct raft_event){.type = RAFT_EVENT_TICK}, &applied, 0);
	/* Compact what was applied when all of the log was: the configuration
	 * then is the core's current one. */
	struct raft_status st;
	raft_get_status(r, &st);
	raft_free(r);
	if (applied && applied == st.last_index && st.commit == applied &&
	    applied > st.snap_index) {
		uint64_t t;
		if (raft_lmdb_term(rl, applied, &t) == 0) {
			struct raft_snapshot_meta m = {
			    .index = applied, .term = t, .conf = st.conf};
			int rv = raft_lmdb_compact_own(rl, &m);
			if (rv && rv != CAIRN_EMAPFULL)
				FAIL("raft_lmdb_compact at %llu: %s", (unsigned long long)applied,
				     cairn_strerror(rv));
		}
	}
	int rv = raft_new(&cfg, &s, &r);
	if (rv)
		FAIL("raft_new refuses (%s) what it accepted and then wrote itself",
		     cairn_strerror(rv));
	check(r, "after raft_new on the core's own writes");
	raft_free(r);
	return 0;
}
