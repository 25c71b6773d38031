/*
 * store_test_util.h — helpers shared by the store tests: temp directories,
 * one-call put/delete/get. Header-only (static functions) so each test binary
 * stays a single object.
 */
#ifndef CAIRN_STORE_TEST_UTIL_H
#define CAIRN_STORE_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static inline void tu_rmrf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[512];
	snprintf(tmpl, sizeof(tmpl), "%s/cairn-store-XXXXXX", base ? base : "/tmp");
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

/* Index items the tests' stores keep in "recent" after a commit: tiny, so
 * commits move slices of keys to "index" all the time and reads see keys
 * split over both (store_index.c). A test may change it before tu_open. */
static size_t tu_recent_items = 3;

static inline int tu_open(const char *dir, struct store **s)
{
	struct store_config cfg = {.dir = dir,
	                           .nosync = true,
	                           .map_size = 256u << 20,
	                           .quota_bytes = 128u << 20,
	                           .index_recent_items = tu_recent_items};
	return store_open(&cfg, s);
}

/* A fuzz target's store: small, no fsync, in a fresh temp dir (*dir,
 * malloc'd); aborts with `who` in the message when it cannot. */
static inline struct store *tu_fuzz_store(const char *who, char **dir)
{
	struct store *s = NULL;
	*dir = tu_tmpdir();
	struct store_config cfg = {.dir = *dir,
	                           .nosync = true,
	                           .map_size = 64u << 20,
	                           .quota_bytes = 32u << 20,
	                           .index_recent_items = 2};
	if (!*dir || store_open(&cfg, &s)) {
		fprintf(stderr, "%s: cannot open a store\n", who);
		abort();
	}
	return s;
}

#define B(str) ((const uint8_t *)(str))

static inline int tu_put_lease(struct store *s, const char *k, const char *v, int64_t lease)
{
	struct store_wtxn *w;
	int rc = store_wtxn_begin(s, &w);
	if (rc)
		return rc;
	struct store_put_req req = {B(k), strlen(k), B(v), strlen(v), lease, false, false, false};
	rc = store_put(w, &req, NULL);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	return store_wtxn_commit(w);
}

static inline int tu_put(struct store *s, const char *k, const char *v)
{
	return tu_put_lease(s, k, v, 0);
}

/* Deletes [k, end) (end NULL: the single key); returns the deleted count or
 * a negative error. */
static inline int64_t tu_del(struct store *s, const char *k, const char *end)
{
	struct store_wtxn *w;
	int rc = store_wtxn_begin(s, &w);
	if (rc)
		return rc;
	struct store_delete_req req = {B(k), strlen(k), B(end), end ? strlen(end) : 0, false};
	if (end && !*end)
		req.range_end_len = 1; /* "" means "\0": from key */
	struct store_delete_resp resp;
	rc = store_delete_range(w, &req, &resp);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	int64_t n = resp.deleted;
	store_delete_resp_free(&resp);
	rc = store_wtxn_commit(w);
	return rc ? rc : n;
}

static inline int64_t tu_rev(struct store *s)
{
	struct store_rtxn *r;
	if (store_rtxn_begin(s, &r))
		return -1;
	int64_t rev = store_rtxn_revision(r);
	store_rtxn_end(r);
	return rev;
}

/* Value of key k at revision rev into buf (NUL-terminated); the kv into *kv
 * (pointers cleared). 0, CAIRN_ENOTFOUND or an error. */
static inline int tu_get(struct store *s, const char *k, int64_t rev, char *buf, size_t bl,
                         struct store_kv *kv)
{
	struct store_rtxn *r;
	int rc = store_rtxn_begin(s, &r);
	if (rc)
		return rc;
	struct store_range_req req = {.key = B(k), .key_len = strlen(k), .revision = rev};
	struct store_range_resp resp;
	rc = store_range(r, &req, &resp);
	if (rc == 0 && resp.n_kvs == 0)
		rc = CAIRN_ENOTFOUND;
	if (rc == 0) {
		size_t n = resp.kvs[0].value_len < bl - 1 ? resp.kvs[0].value_len : bl - 1;
		if (n)
			memcpy(buf, resp.kvs[0].value, n);
		buf[n] = 0;
		if (kv) {
			*kv = resp.kvs[0];
			kv->key = kv->value = NULL;
		}
	}
	store_range_resp_free(&resp);
	store_rtxn_end(r);
	return rc;
}

static inline int tu_compact(struct store *s, int64_t rev, bool sweep)
{
	struct store_wtxn *w;
	int rc = store_wtxn_begin(s, &w);
	if (rc)
		return rc;
	rc = store_compact(w, rev);
	if (rc) {
		store_wtxn_abort(w);
		return rc;
	}
	rc = store_wtxn_commit(w);
	while (rc == 0 && sweep) {
		bool done;
		rc = store_wtxn_begin(s, &w);
		if (rc)
			return rc;
		rc = store_compact_step(w, 7, &done);
		if (rc) {
			store_wtxn_abort(w);
			return rc;
		}
		rc = store_wtxn_commit(w);
		if (done)
			break;
	}
	return rc;
}

static inline int tu_check(struct store *s)
{
	char msg[256];
	int rc = store_check(s, msg, sizeof(msg));
	if (rc)
		fprintf(stderr, "store_check: %s (%s)\n", cairn_strerror(rc), msg);
	return rc;
}

#endif
