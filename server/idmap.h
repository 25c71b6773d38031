/*
 * idmap.h — an open-addressing hash map from non-zero uint64 ids to pointers
 * (pending proposals by request id, pending reads by ctx, leases by id).
 *
 * Linear probing with backward-shift deletion (no tombstones), grows at 1/2
 * load. Not thread-safe: the loop thread owns each map. Values are borrowed.
 */
#ifndef SRV_IDMAP_H
#define SRV_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct srv_idmap {
	uint64_t *keys; /* 0 = empty slot */
	void **vals;
	size_t cap; /* power of two, or 0 */
	size_t len;
};

/* 0 or CAIRN_ENOMEM (map unchanged); CAIRN_EINVAL for id 0. Replaces an
 * existing value. */
int srv_idmap_put(struct srv_idmap *m, uint64_t id, void *val);
void *srv_idmap_get(const struct srv_idmap *m, uint64_t id);
/* Removes and returns the value (NULL if absent). */
void *srv_idmap_del(struct srv_idmap *m, uint64_t id);
void srv_idmap_free(struct srv_idmap *m);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->keys[i]) ... ;
 * do not put or delete while iterating (collect ids first). */

#endif
