/* idmap.c — see idmap.h. */
#include "server/idmap.h"

#include <stdlib.h>

#include "common/cairn_error.h"

static size_t slot(uint64_t id, size_t cap)
{
	/* Fibonacci hashing: request ids are sequential, so spread them. */
	return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

static int grow(struct srv_idmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	uint64_t *nk = calloc(ncap, sizeof(*nk));
	void **nv = calloc(ncap, sizeof(*nv));
	if (!nk || !nv) {
		free(nk);
		free(nv);
		return CAIRN_ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = slot(m->keys[i], ncap);
		while (nk[j])
			j = (j + 1) & (ncap - 1);
		nk[j] = m->keys[i];
		nv[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = nk;
	m->vals = nv;
	m->cap = ncap;
	return 0;
}

int srv_idmap_put(struct srv_idmap *m, uint64_t id, void *val)
{
	if (!id)
		return CAIRN_EINVAL;
	if ((m->len + 1) * 2 > m->cap) {
		int rv = grow(m);
		if (rv)
			return rv;
	}
	size_t i = slot(id, m->cap);
	while (m->keys[i] && m->keys[i] != id)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->len++;
	m->keys[i] = id;
	m->vals[i] = val;
	return 0;
}

void *srv_idmap_get(const struct srv_idmap *m, uint64_t id)
{
	if (!m->cap || !id)
		return NULL;
	for (size_t i = slot(id, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == id)
			return m->vals[i];
	return NULL;
}

void *srv_idmap_del(struct srv_idmap *m, uint64_t id)
{
	if (!m->cap || !id)
		return NULL;
	size_t i = slot(id, m->cap);
	while (m->keys[i] && m->keys[i] != id)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		return NULL;
	void *val = m->vals[i];
	m->keys[i] = 0;
	m->len--;
	/* Backward-shift: move later entries of the probe run into the hole. */
	size_t hole = i;
	for (size_t j = (i + 1) & (m->cap - 1); m->keys[j]; j = (j + 1) & (m->cap - 1)) {
		size_t home = slot(m->keys[j], m->cap);
		/* Entry j may move to hole if home is not in (hole, j]. */
		if (((j - home) & (m->cap - 1)) >= ((j - hole) & (m->cap - 1))) {
			m->keys[hole] = m->keys[j];
			m->vals[hole] = m->vals[j];
			m->keys[j] = 0;
			hole = j;
		}
	}
	return val;
}

void srv_idmap_free(struct srv_idmap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->len = 0;
}
