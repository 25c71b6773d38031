/*
 * raft_mem.c — struct raft_storage in memory: what the simulator treats as
 * the disk (a crash keeps exactly what was applied here) and what unit
 * tests recover from. Copies everything it is given.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

struct raft_mem_storage {
	struct raft_hard_state hs;
	struct raft_snapshot_meta snap;
	struct raft_entry *ents; /* snap.index+1 .. */
	size_t n, cap;
};

int raft_mem_storage_new(struct raft_mem_storage **out)
{
	struct raft_mem_storage *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return CAIRN_ENOMEM;
	*out = ms;
	return 0;
}

static void drop_from(struct raft_mem_storage *ms, size_t k)
{
	for (size_t i = k; i < ms->n; i++)
		free((void *)ms->ents[i].data.base);
	if (k < ms->n)
		ms->n = k;
}

void raft_mem_storage_free(struct raft_mem_storage *ms)
{
	if (!ms)
		return;
	drop_from(ms, 0);
	free(ms->ents);
	free(ms);
}

static int append(struct raft_mem_storage *ms, const struct raft_entry *e)
{
	if (e->index != ms->snap.index + ms->n + 1)
		return CAIRN_EINVAL;
	if (ms->n == ms->cap) {
		size_t nc = ms->cap ? ms->cap * 2 : 64;
		struct raft_entry *ne = realloc(ms->ents, nc * sizeof(*ne));
		if (!ne)
			return CAIRN_ENOMEM;
		ms->ents = ne;
		ms->cap = nc;
	}
	void *copy = NULL;
	if (e->data.len) {
		copy = malloc(e->data.len);
		if (!copy)
			return CAIRN_ENOMEM;
		memcpy(copy, e->data.base, e->data.len);
	}
	ms->ents[ms->n] = *e;
	ms->ents[ms->n].data.base = copy;
	ms->n++;
	return 0;
}

int raft_mem_storage_apply(struct raft_mem_storage *ms, const struct raft_update *up)
{
	if (up->snapshot) {
		drop_from(ms, 0);
		ms->snap = *up->snapshot;
	}
	if (up->truncate_from && up->truncate_from > ms->snap.index)
		drop_from(ms, (size_t)(up->truncate_from - ms->snap.index - 1));
	if (up->n_entries && up->entries[0].index <= ms->snap.index + ms->n)
		drop_from(ms, (size_t)(up->entries[0].index - ms->snap.index - 1));
	for (size_t i = 0; i < up->n_entries; i++) {
		int rv = append(ms, &up->entries[i]);
		if (rv)
			return rv;
	}
	if (up->hard_state_changed)
		ms->hs = up->hard_state;
	return 0;
}

int raft_mem_storage_compact(struct raft_mem_storage *ms, const struct raft_snapshot_meta *meta)
{
	if (meta->index <= ms->snap.index)
		return 0;
	size_t drop = (size_t)(meta->index - ms->snap.index);
	if (drop > ms->n)
		drop = ms->n;
	for (size_t i = 0; i < drop; i++)
		free((void *)ms->ents[i].data.base);
	memmove(ms->ents, ms->ents + drop, (ms->n - drop) * sizeof(*ms->ents));
	ms->n -= drop;
	if (ms->n && ms->ents[0].index != meta->index + 1) {
		drop_from(ms, 0);
	}
	ms->snap = *meta;
	return 0;
}

static int mem_initial_state(void *ctx, struct raft_hard_state *hs, struct raft_snapshot_meta *snap)
{
	struct raft_mem_storage *ms = ctx;
	*hs = ms->hs;
	*snap = ms->snap;
	return 0;
}

static int mem_last_index(void *ctx, uint64_t *out)
{
	struct raft_mem_storage *ms = ctx;
	*out = ms->snap.index + ms->n;
	return 0;
}

static int mem_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                       int (*cb)(void *arg, const struct raft_entry *e), void *arg)
{
	struct raft_mem_storage *ms = ctx;
	size_t bytes = 0;
	if (lo <= ms->snap.index || hi > ms->snap.index + ms->n)
		return CAIRN_ELOGUNAVAILABLE;
	for (uint64_t i = lo; i <= hi; i++) {
		const struct raft_entry *e = &ms->ents[i - ms->snap.index - 1];
		if (max_bytes && i > lo && bytes + e->data.len > max_bytes)
			break;
		bytes += e->data.len;
		int rv = cb(arg, e);
		if (rv)
			return rv;
	}
	return 0;
}

struct raft_storage raft_mem_storage_iface(struct raft_mem_storage *ms)
{
	return (struct raft_storage){.ctx = ms,
	                             .initial_state = mem_initial_state,
	                             .last_index = mem_last_index,
	                             .entries = mem_entries};
}

uint64_t raft_mem_storage_term(const struct raft_mem_storage *ms, uint64_t index)
{
	if (index == ms->snap.index)
		return ms->snap.term;
	if (index < ms->snap.index || index > ms->snap.index + ms->n)
		return 0;
	return ms->ents[index - ms->snap.index - 1].term;
}

uint64_t raft_mem_storage_last(const struct raft_mem_storage *ms)
{
	return ms->snap.index + ms->n;
}

uint64_t raft_mem_storage_snap_index(const struct raft_mem_storage *ms)
{
	return ms->snap.index;
}

struct raft_hard_state raft_mem_storage_hard_state(const struct raft_mem_storage *ms)
{
	return ms->hs;
}
