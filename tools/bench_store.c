/*
 * bench_store.c — store micro-benchmark (make bench-store). Not a test: it
 * prints figures and never fails on a timing.
 *
 *   bench_store [-n keys] [-1 single_txns] [-v value_bytes] [-S] [-d dir]
 *
 * Phase 1 writes `single_txns` keys, one put per write transaction (one
 * commit, one fsync each unless -S); phase 2 writes the rest of the n keys
 * in write transactions (batches) of 100 puts; then random single-key
 * ranges and 100-key prefix ranges at the current revision, and the
 * on-disk size. -S = nosync (no fsync at commit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, cairn_strerror(rc));
	exit(1);
}

static void key_of(uint64_t i, char *buf)
{
	/* spread keys over the key space like hashed object names */
	uint64_t h = i * 0x9E3779B97F4A7C15ull;
	snprintf(buf, 64, "/registry/pods/ns%02u/pod-%016llx", (unsigned)(h >> 58),
	         (unsigned long long)h);
}

/* Puts keys [from, to): per_txn puts per write transaction, as separate
 * store_put calls (one revision each: how the server applies a batch of raft
 * entries) or, with as_txn, as the ops of one store_txn (one revision). */
static double put_phase(struct store *s, uint64_t from, uint64_t to, unsigned per_txn, bool as_txn,
                        const uint8_t *val, size_t vlen, double cap_secs, uint64_t *done)
{
	static char keys[128][64];
	static struct store_op ops[128];
	double t0 = now();
	uint64_t i = from;
	while (i < to) {
		struct store_wtxn *w;
		int rc = store_wtxn_begin(s, &w);
		if (rc)
			die("wtxn_begin", rc);
		unsigned j;
		for (j = 0; j < per_txn && i < to; j++, i++) {
			key_of(i, keys[j]);
			struct store_put_req p = {(const uint8_t *)keys[j],
			                          strlen(keys[j]),
			                          val,
			                          vlen,
			                          0,
			                          false,
			                          false,
			                          false};
			ops[j] = (struct store_op){.type = STORE_OP_PUT, .u.put = p};
			rc = as_txn ? 0 : store_put(w, &p, NULL);
			if (rc)
				die("put", rc);
		}
		if (as_txn) {
			struct store_txn_req t = {NULL, 0, ops, j, NULL, 0};
			struct store_txn_resp tr;
			rc = store_txn(w, &t, &tr);
			if (rc)
				die("txn", rc);
			store_txn_resp_free(&tr);
		}
		rc = store_wtxn_set_applied(w, i);
		if (rc == 0)
			rc = store_wtxn_commit(w);
		else
			store_wtxn_abort(w);
		if (rc)
			die("commit", rc);
		if (cap_secs > 0 && now() - t0 > cap_secs)
			break;
	}
	*done = i - from;
	return now() - t0;
}

int main(int argc, char **argv)
{
	uint64_t n = 200000, single = 2000;
	size_t vlen = 256;
	bool nosync = false;
	const char *dir = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "n:1:v:Sd:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case '1':
			single = strtoull(optarg, NULL, 10);
			break;
		case 'v':
			vlen = strtoull(optarg, NULL, 10);
			break;
		case 'S':
			nosync = true;
			break;
		case 'd':
			dir = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: %s [-n keys] [-1 single_txns] [-v bytes] [-S] [-d dir]\n",
			        argv[0]);
			return 2;
		}
	}
	if (single > n)
		single = n;
	char tmpl[] = "/tmp/cairn-bench-XXXXXX";
	if (!dir && !(dir = mkdtemp(tmpl))) {
		perror("mkdtemp");
		return 1;
	}
	struct store_config cfg = {
	    .dir = dir, .nosync = nosync, .map_size = 16ull << 30, .quota_bytes = 8ull << 30};
	struct store *s;
	int rc = store_open(&cfg, &s);
	if (rc)
		die("open", rc);
	uint8_t *val = malloc(vlen ? vlen : 1);
	memset(val, 'x', vlen);
	printf("store bench: %llu keys, %zu-byte values, %s, dir %s\n", (unsigned long long)n, vlen,
	       nosync ? "nosync" : "fsync per commit", dir);

	uint64_t done1, done100, donetx;
	double t1 = put_phase(s, 0, single, 1, false, val, vlen, 20.0, &done1);
	printf("  wtxn of 1 put:      %8.0f puts/s  (%llu commits, %.2f s, %.3f ms/commit)\n",
	       (double)done1 / t1, (unsigned long long)done1, t1, t1 * 1e3 / (double)done1);
	uint64_t ntx = (n - done1) / 10;
	double t3 = put_phase(s, done1, done1 + ntx, 100, true, val, vlen, 0, &donetx);
	printf("  store_txn of 100 puts (1 revision, 1 commit each): %8.0f puts/s  (%llu puts, "
	       "%.2f s)\n",
	       (double)donetx / t3, (unsigned long long)donetx, t3);
	double t2 = put_phase(s, done1 + donetx, n, 100, false, val, vlen, 0, &done100);
	printf("  wtxn of 100 puts (100 revisions, 1 commit each): %8.0f puts/s  (%llu puts, "
	       "%.2f s)\n",
	       (double)done100 / t2, (unsigned long long)done100, t2);
	uint64_t total = done1 + donetx + done100;

	/* ranges */
	struct store_rtxn *r;
	char key[64];
	uint64_t seed = 1, found = 0;
	int nr = 0;
	double t0 = now();
	if ((rc = store_rtxn_begin(s, &r)))
		die("rtxn", rc);
	for (nr = 0; now() - t0 < 3.0; nr++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		key_of((seed >> 20) % total, key);
		struct store_range_req q = {.key = (const uint8_t *)key, .key_len = strlen(key)};
		struct store_range_resp resp;
		if ((rc = store_range(r, &q, &resp)))
			die("range", rc);
		found += resp.n_kvs;
		store_range_resp_free(&resp);
	}
	double tg = now() - t0;
	printf("  range 1 key:     %8.0f ranges/s (%d, %llu found)\n", nr / tg,
	       (unsigned long long)found == (unsigned long long)nr ? nr : -1,
	       (unsigned long long)found);
	t0 = now();
	int np;
	for (np = 0; now() - t0 < 3.0; np++) {
		char pfx[40];
		snprintf(pfx, sizeof(pfx), "/registry/pods/ns%02d/", np % 64);
		char end[40];
		snprintf(end, sizeof(end), "/registry/pods/ns%02d0", np % 64);
		struct store_range_req q = {.key = (const uint8_t *)pfx,
		                            .key_len = strlen(pfx),
		                            .range_end = (const uint8_t *)end,
		                            .range_end_len = strlen(end),
		                            .limit = 100};
		struct store_range_resp resp;
		if ((rc = store_range(r, &q, &resp)))
			die("range", rc);
		store_range_resp_free(&resp);
	}
	double tp = now() - t0;
	printf("  range prefix, limit 100 (count over ~%llu keys): %8.0f ranges/s\n",
	       (unsigned long long)(total / 64), np / tp);
	store_rtxn_end(r);

	struct store_stats st;
	store_stats(s, &st);
	char path[600];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	struct stat fs;
	stat(path, &fs);
	printf("  on disk: data.mdb %.1f MiB allocated (%.1f MiB high-water), store pages in use "
	       "%.1f MiB, %.0f bytes/key\n",
	       (double)fs.st_blocks * 512 / 1048576.0, (double)st.db_size_bytes / 1048576.0,
	       (double)st.in_use_bytes / 1048576.0, (double)st.in_use_bytes / (double)total);
	store_close(s);
	free(val);
	if (dir == tmpl) {
		unlink(path);
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/cairn.lock", dir);
		unlink(path);
		rmdir(dir);
	}
	return 0;
}
