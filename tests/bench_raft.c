/*
 * bench_raft.c — entries committed per second by the raft core alone:
 * 3 members, an in-process network (messages copied, delivered in FIFO
 * order), storage that completes at once, no I/O, no invariant checks.
 * The leader takes proposals in batches of BENCH_BATCH (default 64) of
 * 128-byte entries; each member applies and compacts every 4096 entries.
 * Prints the figure; never fails on a timing (DESIGN.md §7).
 *
 *   make bench-raft [BENCH_SECONDS=3]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft/raft.h"

#define N 3

struct qmsg {
	struct raft_msg m;
	struct raft_entry *ents; /* one block: entries then data */
};

static struct qmsg *q;
static size_t qhead, qtail, qcap;
static struct raft *rafts[N + 1];
static uint64_t persist_seq[N + 1];
static unsigned long long committed_at_leader;

static void push(const struct raft_msg *m)
{
	if (qtail == qcap) {
		if (qhead) {
			memmove(q, q + qhead, (qtail - qhead) * sizeof(*q));
			qtail -= qhead;
			qhead = 0;
		} else {
			qcap = qcap ? qcap * 2 : 1024;
			q = realloc(q, qcap * sizeof(*q));
			if (!q)
				abort();
		}
	}
	struct qmsg *x = &q[qtail++];
	x->m = *m;
	x->ents = NULL;
	if (m->n_entries) {
		size_t bytes = m->n_entries * sizeof(struct raft_entry);
		for (uint32_t i = 0; i < m->n_entries; i++)
			bytes += m->entries[i].data.len;
		x->ents = malloc(bytes);
		if (!x->ents)
			abort();
		uint8_t *d = (uint8_t *)(x->ents + m->n_entries);
		for (uint32_t i = 0; i < m->n_entries; i++) {
			x->ents[i] = m->entries[i];
			memcpy(d, m->entries[i].data.base, m->entries[i].data.len);
			x->ents[i].data.base = d;
			d += m->entries[i].data.len;
		}
		x->m.entries = x->ents;
	}
}

static void handle(uint64_t id, const struct raft_update *up)
{
	for (size_t i = 0; i < up->n_msgs; i++)
		push(&up->msgs[i]);
	if (up->persist_seq)
		persist_seq[id] = up->persist_seq;
	if (up->n_committed) {
		uint64_t last = up->committed[up->n_committed - 1].index;
		if (up->role == RAFT_LEADER)
			committed_at_leader += up->n_committed;
		struct raft_event ev = {.type = RAFT_EVENT_APPLIED, .applied.index = last};
		struct raft_update up2;
		raft_step(rafts[id], &ev, &up2);
		if (last % 4096 < up->n_committed)
			raft_compact(rafts[id], last);
		handle(id, &up2);
	}
}

static void step(uint64_t id, const struct raft_event *ev)
{
	struct raft_update up;
	raft_step(rafts[id], ev, &up);
	handle(id, &up);
}

static void drain(void)
{
	for (;;) {
		if (qhead < qtail) {
			struct qmsg x = q[qhead++];
			struct raft_event ev = {.type = RAFT_EVENT_RECEIVE, .receive.msg = &x.m};
			step(x.m.to, &ev);
			free(x.ents);
			continue;
		}
		bool any = false;
		for (uint64_t i = 1; i <= N; i++) {
			if (persist_seq[i]) {
				struct raft_event ev = {.type = RAFT_EVENT_PERSISTED,
				                        .persisted.seq = persist_seq[i]};
				persist_seq[i] = 0;
				step(i, &ev);
				any = true;
			}
		}
		if (!any)
			return;
	}
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
	double secs = getenv("BENCH_SECONDS") ? atof(getenv("BENCH_SECONDS")) : 3;
	unsigned batch = getenv("BENCH_BATCH") ? (unsigned)atoi(getenv("BENCH_BATCH")) : 64;
	struct raft_conf conf = {.n_voters = N, .voters = {1, 2, 3}};
	struct raft_mem_storage *ms[N + 1];
	for (uint64_t i = 1; i <= N; i++) {
		raft_mem_storage_new(&ms[i]);
		struct raft_config cfg = {.id = i,
		                          .seed = i,
		                          .pre_vote = true,
		                          .check_quorum = true,
		                          .initial_conf = &conf};
		struct raft_storage st = raft_mem_storage_iface(ms[i]);
		if (raft_new(&cfg, &st, &rafts[i]))
			return 1;
	}
	struct raft_event c = {.type = RAFT_EVENT_CAMPAIGN};
	step(1, &c);
	drain();
	uint8_t data[128];
	memset(data, 'x', sizeof(data));
	struct raft_event p = {.type = RAFT_EVENT_PROPOSE};
	p.propose.type = RAFT_ENTRY_NORMAL;
	p.propose.data = (struct raft_buf){data, sizeof(data)};
	committed_at_leader = 0;
	double t0 = now(), t1;
	unsigned long long proposed = 0, rounds = 0;
	do {
		for (unsigned k = 0; k < batch; k++) {
			step(1, &p);
			proposed++;
		}
		drain();
		if (++rounds % 64 == 0) {
			struct raft_event t = {.type = RAFT_EVENT_TICK};
			for (uint64_t i = 1; i <= N; i++)
				step(i, &t);
			drain();
		}
		t1 = now();
	} while (t1 - t0 < secs);
	printf(
	    "bench-raft: 3 members, %u-entry batches of %zu-byte entries: %llu entries committed "
	    "in %.2fs = %.0f entries/s (%llu proposed)\n",
	    batch, sizeof(data), committed_at_leader, t1 - t0,
	    (double)committed_at_leader / (t1 - t0), proposed);
	for (uint64_t i = 1; i <= N; i++) {
		raft_free(rafts[i]);
		raft_mem_storage_free(ms[i]);
	}
	free(q);
	return 0;
}
