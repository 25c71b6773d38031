/* test_raft_lmdb.c — the LMDB raft storage on real LMDB files in temporary
 * directories: batched append, conflicting-suffix truncation, compaction,
 * snapshot install, hard state written atomically with entries in a
 * caller-supplied transaction shared with other named DBs, and recovery
 * of a core (raft_new) from what survived a reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "raft/raft_lmdb.h"

struct fx {
	char dir[64];
	MDB_env *env;
	struct raft_lmdb *rl;
};

static void env_open(struct fx *f)
{
	assert_int_equal(mdb_env_create(&f->env), 0);
	assert_int_equal(mdb_env_set_maxdbs(f->env, 16), 0);
	assert_int_equal(mdb_env_set_mapsize(f->env, 64u << 20), 0);
	assert_int_equal(mdb_env_open(f->env, f->dir, 0, 0600), 0);
	assert_int_equal(raft_lmdb_open(f->env, &f->rl), 0);
}

static void env_close(struct fx *f)
{
	raft_lmdb_close(f->rl);
	mdb_env_close(f->env);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/raft_lmdb_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	env_open(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	env_close(f);
	char p[128];
	snprintf(p, sizeof(p), "%s/data.mdb", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void mk(struct raft_entry *e, uint64_t index, uint64_t term, const char *data)
{
	*e = (struct raft_entry){.term = term,
	                         .index = index,
	                         .type = RAFT_ENTRY_NORMAL,
	                         .data = {.base = data, .len = data ? strlen(data) : 0}};
}

struct collect {
	uint64_t terms[64];
	char data[64][16];
	unsigned n;
};

static int collect_cb(void *arg, const struct raft_entry *e)
{
	struct collect *c = arg;
	c->terms[c->n] = e->term;
	snprintf(c->data[c->n], sizeof(c->data[0]), "%.*s", (int)e->data.len,
	         (const char *)e->data.base);
	c->n++;
	return 0;
}

static uint64_t last(struct fx *f)
{
	struct raft_storage st = raft_lmdb_storage(f->rl);
	uint64_t l;
	assert_int_equal(st.last_index(st.ctx, &l), 0);
	return l;
}

static void test_append_truncate_reopen(void **state)
{
	struct fx *f = *state;
	struct raft_entry e[5];
	const char *d[] = {"a", "b", NULL, "d", "e"};
	for (int i = 0; i < 5; i++)
		mk(&e[i], (uint64_t)i + 1, 1, d[i]);
	struct raft_update up = {.n_entries = 5,
	                         .entries = e,
	                         .hard_state_changed = true,
	                         .hard_state = {.term = 1, .vote = 2, .commit = 2}};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	assert_int_equal(last(f), 5);
	/* §5.3: a conflicting suffix from index 3 is replaced. */
	struct raft_entry n[2];
	mk(&n[0], 3, 2, "X");
	mk(&n[1], 4, 2, "Y");
	struct raft_update up2 = {.truncate_from = 3, .n_entries = 2, .entries = n};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up2), 0);
	assert_int_equal(last(f), 4);
	env_close(f);
	env_open(f);
	struct raft_storage st = raft_lmdb_storage(f->rl);
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	assert_int_equal(st.initial_state(st.ctx, &hs, &snap), 0);
	assert_int_equal(hs.term, 1);
	assert_int_equal(hs.vote, 2);
	assert_int_equal(hs.commit, 2);
	assert_int_equal(snap.index, 0);
	struct collect c = {0};
	assert_int_equal(st.entries(st.ctx, 1, 4, 0, collect_cb, &c), 0);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.terms[2], 2);
	assert_string_equal(c.data[0], "a");
	assert_string_equal(c.data[3], "Y");
	assert_int_equal(st.entries(st.ctx, 1, 9, 0, collect_cb, &c), CAIRN_ELOGUNAVAILABLE);
	/* max_bytes bounds a read but always returns one entry. */
	struct collect c2 = {0};
	assert_int_equal(st.entries(st.ctx, 1, 4, 1, collect_cb, &c2), 0);
	assert_int_equal(c2.n, 1);
}

static void test_compact_and_snapshot(void **state)
{
	struct fx *f = *state;
	struct raft_entry e[6];
	for (int i = 0; i < 6; i++)
		mk(&e[i], (uint64_t)i + 1, 1, "z");
	struct raft_update up = {.n_entries = 6, .entries = e};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	struct raft_snapshot_meta m = {.index = 4, .term = 1};
	m.conf.n_voters = 2;
	m.conf.voters[0] = 1;
	m.conf.voters[1] = 3;
	m.conf.n_learners = 1;
	m.conf.learners[0] = 7;
	assert_int_equal(raft_lmdb_compact_own(f->rl, &m), 0);
	uint64_t t;
	assert_int_equal(raft_lmdb_term(f->rl, 4, &t), CAIRN_ENOTFOUND);
	assert_int_equal(raft_lmdb_term(f->rl, 5, &t), 0);
	assert_int_equal(last(f), 6);
	struct raft_storage st = raft_lmdb_storage(f->rl);
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	assert_int_equal(st.initial_state(st.ctx, &hs, &snap), 0);
	assert_memory_equal(&snap, &m, sizeof(m));
	/* Installing a snapshot (§7) drops the whole log. */
	struct raft_snapshot_meta s2 = {.index = 40, .term = 3, .conf = m.conf};
	struct raft_update up2 = {.snapshot = &s2};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up2), 0);
	assert_int_equal(last(f), 40);
	assert_int_equal(st.initial_state(st.ctx, &hs, &snap), 0);
	assert_int_equal(snap.index, 40);
}

/* The member's group commit: log append, hard state and its own DB writes
 * in one transaction — all or nothing. */
static void test_caller_txn_is_atomic(void **state)
{
	struct fx *f = *state;
	MDB_txn *txn;
	MDB_dbi kv;
	struct raft_entry e[1];
	mk(&e[0], 1, 1, "v");
	struct raft_update up = {.n_entries = 1,
	                         .entries = e,
	                         .hard_state_changed = true,
	                         .hard_state = {.term = 1, .vote = 1}};
	for (int commit = 0; commit < 2; commit++) {
		assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
		assert_int_equal(mdb_dbi_open(txn, "kv", MDB_CREATE, &kv), 0);
		MDB_val k = {3, "key"}, v = {3, "val"};
		assert_int_equal(mdb_put(txn, kv, &k, &v, 0), 0);
		assert_int_equal(raft_lmdb_write(f->rl, txn, &up), 0);
		if (commit)
			assert_int_equal(mdb_txn_commit(txn), 0);
		else
			mdb_txn_abort(txn);
		assert_int_equal(last(f), commit ? 1 : 0);
		struct raft_storage st = raft_lmdb_storage(f->rl);
		struct raft_hard_state hs;
		struct raft_snapshot_meta snap;
		assert_int_equal(st.initial_state(st.ctx, &hs, &snap), 0);
		assert_int_equal(hs.term, commit ? 1 : 0);
	}
}

/* A core driven by events persists every update to both the in-memory and
 * the LMDB storage; cores recovered from either agree. */
static void test_core_recovers_from_lmdb(void **state)
{
	struct fx *f = *state;
	struct raft_mem_storage *ms;
	assert_int_equal(raft_mem_storage_new(&ms), 0);
	struct raft_conf conf = {.n_voters = 3, .voters = {1, 2, 3}};
	struct raft_config cfg = {.id = 1, .seed = 3, .initial_conf = &conf};
	struct raft_storage mst = raft_mem_storage_iface(ms), lst = raft_lmdb_storage(f->rl);
	struct raft *r;
	assert_int_equal(raft_new(&cfg, &lst, &r), 0);
	struct raft_update up;
	for (uint64_t k = 0; k < 6; k++) {
		/* Leader 2 of term 1 + k/3 sends entries; term 2 overwrites. */
		uint64_t term = 1 + k / 3;
		struct raft_entry e[2];
		uint64_t prev = term == 1 ? 2 * k : 2;
		mk(&e[0], prev + 1, term, "p");
		mk(&e[1], prev + 2, term, "q");
		struct raft_msg m = {.type = RAFT_MSG_APPEND,
		                     .from = 2,
		                     .to = 1,
		                     .term = term,
		                     .index = prev,
		                     .log_term = prev ? 1 : 0,
		                     .commit = 2,
		                     .n_entries = 2,
		                     .entries = e};
		struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .receive.msg = &m};
		assert_int_equal(raft_step(r, &ev, &up), 0);
		assert_int_equal(raft_mem_storage_apply(ms, &up), 0);
		assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
		struct raft_event p = {.type = RAFT_EVENT_PERSISTED,
		                       .persisted.seq = up.persist_seq};
		if (up.persist_seq)
			assert_int_equal(raft_step(r, &p, &up), 0);
	}
	raft_free(r);
	struct raft *a, *b;
	assert_int_equal(raft_new(&cfg, &mst, &a), 0);
	assert_int_equal(raft_new(&cfg, &lst, &b), 0);
	struct raft_status sa, sb;
	raft_get_status(a, &sa);
	raft_get_status(b, &sb);
	assert_int_equal(sa.last_index, 4);
	assert_int_equal(sb.last_index, sa.last_index);
	assert_int_equal(sb.term, sa.term);
	assert_int_equal(sb.commit, sa.commit);
	for (uint64_t i = 1; i <= sa.last_index; i++) {
		uint64_t ta, tb;
		assert_int_equal(raft_log_term(a, i, &ta), 0);
		assert_int_equal(raft_log_term(b, i, &tb), 0);
		assert_int_equal(ta, tb);
	}
	raft_free(a);
	raft_free(b);
	raft_mem_storage_free(ms);
}

/* A term reaches the hard state before or with any entry of it: a log (or
 * snapshot) of a later term than the stored hard state is corrupt, and
 * raft_new refuses it rather than run at the older term (it would forget
 * a vote). Found by fuzz_raft_lmdb: the core ran on a term-1 log with no
 * hard state and failed raft_check (I2). */
static void test_core_refuses_hard_state_behind_log(void **state)
{
	struct fx *f = *state;
	struct raft_conf conf = {.n_voters = 1, .voters = {1}};
	struct raft_config cfg = {.id = 1, .seed = 3, .initial_conf = &conf};
	struct raft_storage lst = raft_lmdb_storage(f->rl);
	struct raft *r;
	struct raft_entry e[2];
	mk(&e[0], 1, 1, "a");
	mk(&e[1], 2, 2, "b");
	struct raft_update up = {.n_entries = 2, .entries = e, .persist_seq = 1};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	assert_int_equal(raft_new(&cfg, &lst, &r), CAIRN_ECORRUPT); /* no hard state */
	up = (struct raft_update){.hard_state_changed = true,
	                          .hard_state = {.term = 1, .vote = 1, .commit = 1},
	                          .persist_seq = 2};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	assert_int_equal(raft_new(&cfg, &lst, &r), CAIRN_ECORRUPT); /* term 1, entry of 2 */
	/* a snapshot of term 3 with an emptied log, hard state at term 2 */
	struct raft_snapshot_meta meta = {.index = 5, .term = 3, .conf = conf};
	up = (struct raft_update){.snapshot = &meta,
	                          .hard_state_changed = true,
	                          .hard_state = {.term = 2, .vote = 1, .commit = 5},
	                          .persist_seq = 3};
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	assert_int_equal(raft_new(&cfg, &lst, &r), CAIRN_ECORRUPT);
	up.hard_state.term = 3;
	assert_int_equal(raft_lmdb_write_own(f->rl, &up), 0);
	assert_int_equal(raft_new(&cfg, &lst, &r), 0);
	raft_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_append_truncate_reopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compact_and_snapshot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_caller_txn_is_atomic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_recovers_from_lmdb, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_refuses_hard_state_behind_log, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
