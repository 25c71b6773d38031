/*
 * batch.c — the storage thread: one LMDB write transaction per batch.
 *
 * HOW IT WORKS
 * The loop fills a struct srv_batch (raft log appends and hard state from
 * raft updates, committed entries to apply) while the previous batch is on
 * the storage thread. When that one is done (uv_async), the loop hands over
 * the one it filled. So under load every fsync carries everything that
 * arrived during the previous fsync: group commit, with latency near one
 * commit at low load.
 *
 * Inside a batch, in one transaction: raft log persistence (raft_lmdb_write
 * per recorded update, in order), then the application of committed entries
 * (srv_apply_entry), the membership record, the applied index, raft log
 * compaction, a bounded store compaction step; then commit.
 *
 * ONE FLUSH PER BATCH. LMDB's commit flushes the data pages, then writes
 * the meta page that makes them current. By default that write is synced
 * too: two device flushes per commit. The member opens the store with lazy
 * meta sync (MDB_NOMETASYNC): the meta page is written, not flushed, and
 * the next commit's data flush carries it. LMDB stays intact across a
 * power loss, which can undo only the last commit. So a batch is durable
 * once a later batch's commit flushed (flushed_before) or a sync_only
 * batch ran; the loop reports persistence to raft (acknowledgements,
 * votes, the leader's own count toward commitment) only then, and sends a
 * sync_only batch when no batch follows. What a batch applies is visible
 * at once: committed entries are durable on a quorum already, and a single
 * voter's own appends are applied by the batch after the one that wrote
 * them, whose flush makes them durable before its meta page makes them
 * visible (need_prev_durable).
 *
 * FAIL-STOP: if the transaction cannot be committed (I/O error, fsync
 * failure) the member cannot know what is durable: it logs and exits. It
 * never answers a client or sends a dependent message on unsynced data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/member.h"

bool srv_batch_empty(const struct srv_batch *b)
{
	return b->n_persist == 0 && b->n_apply == 0 && !b->membership && !b->has_log_compact &&
	       !b->compact_step && b->apply_to == 0 && !b->sync_only;
}

void srv_batch_reset(struct srv_batch *b)
{
	for (size_t i = 0; i < b->n_results; i++)
		free(b->results[i].resp);
	b->n_persist = 0;
	b->persist_seq = 0;
	b->commit_only = true;
	b->n_apply = 0;
	b->apply_to = 0;
	free(b->membership);
	b->membership = NULL;
	b->membership_len = 0;
	b->has_log_compact = false;
	b->compact_step = false;
	b->sync_only = false;
	b->need_prev_durable = false;
	b->flushed_before = false;
	b->self_durable = false;
	b->err = 0;
	b->n_results = 0;
	b->n_conf_done = 0;
	b->removes_self = false;
	b->revision = 0;
	b->compact_more = false;
	b->commit_ns = 0;
	srv_arena_rewind(&b->arena);
}

void srv_batch_free(struct srv_batch *b)
{
	srv_batch_reset(b);
	srv_arena_free(&b->arena);
	free(b->persist);
	free(b->apply);
	free(b->want_response);
	free(b->results);
	free(b->conf_done);
	memset(b, 0, sizeof(*b));
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int add_result(struct srv_batch *b, struct srv_apply_result *r)
{
	if (b->n_results == b->cap_results) {
		size_t cap = b->cap_results ? b->cap_results * 2 : 64;
		struct srv_apply_result *n = realloc(b->results, cap * sizeof(*n));
		if (!n)
			return CAIRN_ENOMEM;
		b->results = n;
		b->cap_results = cap;
	}
	b->results[b->n_results++] = *r;
	return 0;
}

/* Runs one batch; 0 or a fatal error (the member stops). */
static int run_batch(struct srv_member *m, struct srv_batch *b)
{
	bool nosync = m->cfg->unsafe_no_fsync;
	b->self_durable = nosync;
	if (b->sync_only) {
		uint64_t t0 = now_ns();
		int rv = store_sync(m->store);
		b->commit_ns = now_ns() - t0;
		b->flushed_before = true;
		return rv;
	}
	struct store_wtxn *w;
	int rv = store_wtxn_begin(m->store, &w);
	if (rv)
		return rv;
	MDB_txn *txn = store_wtxn_mdb(w);
	for (size_t i = 0; i < b->n_persist; i++) {
		struct srv_persist *p = &b->persist[i];
		struct raft_update up = {0};
		up.snapshot = p->has_snapshot ? &p->snapshot : NULL;
		up.truncate_from = p->truncate_from;
		up.entries = p->entries;
		up.n_entries = p->n_entries;
		up.hard_state_changed = p->hard_state_changed;
		up.hard_state = p->hard_state;
		up.persist_seq = 1;
		if ((rv = raft_lmdb_write(m->rl, txn, &up)))
			goto fail;
	}
	for (size_t i = 0; i < b->n_apply; i++) {
		const struct raft_entry *e = &b->apply[i];
		if (e->type != RAFT_ENTRY_NORMAL || e->data.len == 0 ||
		    ((const uint8_t *)e->data.base)[0] == SRV_MEMBER_UPDATE_TAG)
			continue; /* membership: record below; leader no-ops */
		struct srv_apply_result r = {0};
		rv =
		    srv_apply_entry(w, &b->hdr, e->data.base, e->data.len, b->want_response[i], &r);
		if (rv)
			goto fail;
		if ((r.id && b->want_response[i]) || r.nospace) {
			if ((rv = add_result(b, &r))) {
				free(r.resp);
				goto fail;
			}
		} else {
			free(r.resp);
		}
	}
	if (b->membership &&
	    (rv = store_wtxn_set_meta(w, "membership", b->membership, b->membership_len)))
		goto fail;
	if (b->apply_to && (rv = store_wtxn_set_applied(w, b->apply_to)))
		goto fail;
	if (b->has_log_compact && (rv = raft_lmdb_compact(m->rl, txn, &b->log_compact)))
		goto fail;
	/* A compaction entry applied in this batch (here or on a follower, or
	 * one left unfinished before a restart) starts its sweep now: the
	 * loop's compact_step alone is set when the Compact call is proposed,
	 * before the entry is applied, so the sweep would find nothing to do
	 * and stop. Without a pending compaction this is one meta lookup. */
	if (b->compact_step || b->n_apply) {
		bool done = true;
		if ((rv = store_compact_step(w, 10000, &done)))
			goto fail;
		b->compact_more = !done;
	}
	b->revision = store_wtxn_revision(w);
	uint64_t t0 = now_ns();
	rv = store_wtxn_commit_flushed(w, &b->flushed_before);
	/* A batch that applies a single voter's own appends of the previous
	 * batch always writes (the applied index), so its flush made them
	 * durable before its meta page made them visible; should it write
	 * nothing, flush now, before anyone is answered. */
	if (!rv && b->need_prev_durable && !b->flushed_before) {
		rv = store_sync(m->store);
		b->flushed_before = true;
	}
	b->commit_ns = now_ns() - t0;
	b->flushed_before |= nosync;
	return rv;
fail:
	store_wtxn_abort(w);
	return rv;
}

static void *storage_main(void *arg)
{
	struct srv_member *m = arg;
	struct srv_batch_queue *q = &m->q;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (!q->submitted && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->submitted && q->stop)
			break;
		struct srv_batch *b = q->submitted;
		q->submitted = NULL;
		pthread_mutex_unlock(&q->mu);
		b->err = run_batch(m, b);
		if (b->err) {
			char code[16];
			snprintf(code, sizeof(code), "%d", b->err);
			srv_log(m->log, SRV_LOG_FATAL,
			        "storage batch failed: stopping so nothing unsynced is served",
			        "error", cairn_strerror(b->err), "code", code, NULL);
			_exit(2);
		}
		pthread_mutex_lock(&q->mu);
		q->done = b;
		pthread_cond_signal(&q->done_cv);
		uv_async_send(&q->async);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

void srv_batch_submit(struct srv_member *m, struct srv_batch *b)
{
	pthread_mutex_lock(&m->q.mu);
	m->q.submitted = b;
	pthread_cond_signal(&m->q.cv);
	pthread_mutex_unlock(&m->q.mu);
}

int srv_batch_start(struct srv_member *m)
{
	pthread_mutex_init(&m->q.mu, NULL);
	pthread_cond_init(&m->q.cv, NULL);
	pthread_cond_init(&m->q.done_cv, NULL);
	if (pthread_create(&m->q.thread, NULL, storage_main, m))
		return CAIRN_ENOMEM;
	return 0;
}

void srv_batch_stop(struct srv_member *m)
{
	pthread_mutex_lock(&m->q.mu);
	m->q.stop = true;
	pthread_cond_signal(&m->q.cv);
	pthread_mutex_unlock(&m->q.mu);
	pthread_join(m->q.thread, NULL);
	pthread_mutex_destroy(&m->q.mu);
	pthread_cond_destroy(&m->q.cv);
	pthread_cond_destroy(&m->q.done_cv);
}
