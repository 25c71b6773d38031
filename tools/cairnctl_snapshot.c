/*
 * cairnctl_snapshot.c — `snapshot status` and `snapshot restore` for the
 * files `snapshot save` writes: a consistent copy of the member's LMDB
 * environment followed, as etcd's, by a 32-byte SHA-256 trailer (a file
 * whose size is 32 more than a multiple of the 4 KiB page has one).
 *
 * status restores into a scratch directory, opens it read-only and reports
 * revision, keys, size and the KV hash (store_hash_kv, the same number
 * `endpoint hashkv` prints for that revision; etcd's status hash is a bolt
 * checksum and cannot be compared). restore writes <data-dir>/member and
 * forgets the old cluster: the membership record and the raft log and hard
 * state are removed, so cairnd bootstraps the member from its
 * --initial-cluster flags on first start, keeping the data and revisions.
 * The SHA-256 trailer is stripped, not verified (no SHA-256 in tools/ yet).
 *
 * The store keeps its applied raft index; cairnd sees "no membership record,
 * applied index > 0" as a restored member and starts the new cluster's raft
 * log after that index (server/member.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "tools/cairnctl.h"

#define SNAP_TRAILER 32
#define SNAP_PAGE    4096

/* Copies the environment part of the snapshot at `path` into a new store
 * directory `dir` (created). Exits on error. */
static void restore_env(const char *path, const char *dir)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		ctl_die(EXIT_ERROR, "open %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0)
		ctl_die(EXIT_ERROR, "stat %s: %s", path, strerror(errno));
	off_t len = st.st_size;
	if (len % SNAP_PAGE == SNAP_TRAILER)
		len -= SNAP_TRAILER;
	if (len <= 0 || len % SNAP_PAGE != 0)
		ctl_die(EXIT_ERROR, "%s is not a cairn snapshot (size %lld)", path,
		        (long long)st.st_size);
	/* store_snapshot_restore reads to EOF: feed it exactly `len` bytes. */
	int p[2];
	if (pipe(p) != 0)
		ctl_die(EXIT_ERROR, "pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child == 0) {
		close(p[0]);
		char buf[1 << 16];
		off_t left = len;
		while (left > 0) {
			ssize_t n =
			    read(fd, buf, left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf));
			if (n <= 0 || write(p[1], buf, (size_t)n) != n)
				_exit(1);
			left -= n;
		}
		_exit(0);
	}
	close(p[1]);
	close(fd);
	int rc = store_snapshot_restore(p[0], dir);
	close(p[0]);
	int status = 0;
	if (waitpid(child, &status, 0) != child)
		status = 1;
	if (rc != 0)
		ctl_die(EXIT_ERROR, "restore into %s: %s", dir, cairn_strerror(rc));
	if (status != 0)
		ctl_die(EXIT_ERROR, "reading %s failed", path);
}

static void rm_store_dir(const char *dir)
{
	const char *files[] = {"data.mdb", "lock.mdb", "cairn.lock"};
	char path[4200];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

static int cmd_snapshot_status(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("snapshot status requires exactly one argument");
	char tmpl[] = "/tmp/cairnctl-snapshot-XXXXXX";
	char *top = mkdtemp(tmpl);
	if (!top)
		ctl_die(EXIT_ERROR, "mkdtemp: %s", strerror(errno));
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/member", top);
	restore_env(argv[0], dir);
	struct store_config cfg = {.dir = dir, .read_only = true};
	struct store *s;
	int rc = store_open(&cfg, &s);
	struct store_stats st;
	uint32_t hash = 0;
	if (rc == 0)
		rc = store_stats(s, &st);
	if (rc == 0) {
		struct store_rtxn *r;
		int64_t hrev, crev;
		rc = store_rtxn_begin(s, &r);
		if (rc == 0) {
			rc = store_hash_kv(r, 0, &hash, &hrev, &crev);
			store_rtxn_end(r);
		}
	}
	store_close(s);
	rm_store_dir(dir);
	rmdir(top);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "snapshot status: %s", cairn_strerror(rc));
	char size[32], hx[16], rv[32], keys[32];
	ctl_humanize_bytes(st.db_size_bytes, size, sizeof(size));
	snprintf(hx, sizeof(hx), "%x", hash);
	snprintf(rv, sizeof(rv), "%lld", (long long)st.revision);
	snprintf(keys, sizeof(keys), "%" PRIu64, st.keys);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("%s, %s, %s, %s\n", hx, rv, keys, size);
		break;
	case OUT_JSON:
		printf("{\"hash\":%u,\"revision\":%s,\"totalKey\":%s,\"totalSize\":%" PRIu64 "}\n",
		       hash, rv, keys, st.db_size_bytes);
		break;
	case OUT_TABLE: {
		static const char *const hdr[] = {"hash", "revision", "total keys", "total size"};
		char *cells[] = {hx, rv, keys, size};
		ctl_print_table(hdr, 4, cells, 1);
		break;
	}
	case OUT_FIELDS:
		printf("\"Hash\" : %u\n\"Revision\" : %s\n\"Keys\" : %s\n\"Size\" : %" PRIu64 "\n",
		       hash, rv, keys, st.db_size_bytes);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

static struct {
	const char *data_dir, *wal_dir, *initial_cluster, *token, *peer_urls, *name;
	bool skip_hash_check;
} ro = {"",        "",   "default=http://localhost:2380", "etcd-cluster", "http://localhost:2380",
        "default", false};

static const struct ctl_flag restore_flags[] = {
    {"data-dir", 0, FLAG_STR, &ro.data_dir, "", "Path to the data directory"},
    {"wal-dir", 0, FLAG_STR, &ro.wal_dir, "",
     "Path to the WAL directory (use --data-dir if none given)"},
    {"initial-cluster", 0, FLAG_STR, &ro.initial_cluster, "default=http://localhost:2380",
     "Initial cluster configuration for restore bootstrap (given to cairnd)"},
    {"initial-cluster-token", 0, FLAG_STR, &ro.token, "etcd-cluster",
     "Initial cluster token for the etcd cluster during restore bootstrap"},
    {"initial-advertise-peer-urls", 0, FLAG_STR, &ro.peer_urls, "http://localhost:2380",
     "List of this member's peer URLs to advertise to the rest of the cluster"},
    {"name", 0, FLAG_STR, &ro.name, "default", "Human-readable name for this member"},
    {"skip-hash-check", 0, FLAG_BOOL, &ro.skip_hash_check, "false",
     "Ignore snapshot integrity hash value (required if copied from data directory)"},
    {0},
};

static int cmd_snapshot_restore(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("snapshot restore requires exactly one argument");
	char top[2048], dir[4096];
	if (*ro.data_dir)
		snprintf(top, sizeof(top), "%s", ro.data_dir);
	else
		snprintf(top, sizeof(top), "%s.etcd", ro.name);
	struct stat st;
	if (stat(top, &st) == 0)
		ctl_die(EXIT_ERROR, "data-dir \"%s\" exists", top);
	if (mkdir(top, 0700) != 0)
		ctl_die(EXIT_ERROR, "mkdir %s: %s", top, strerror(errno));
	snprintf(dir, sizeof(dir), "%s/member", top);
	restore_env(argv[0], dir);
	/* Forget the old cluster: cairnd bootstraps membership and raft from
	 * its flags when there is no membership record. */
	struct store_config cfg = {.dir = dir};
	struct store *s;
	int rc = store_open(&cfg, &s);
	struct store_wtxn *w = NULL;
	if (rc == 0)
		rc = store_wtxn_begin(s, &w);
	if (rc == 0)
		rc = store_wtxn_set_meta(w, "membership", NULL, 0);
	const char *dbs[] = {"raft_log", "raft_state"};
	for (size_t i = 0; rc == 0 && i < 2; i++) {
		MDB_dbi dbi;
		int mrc = mdb_dbi_open(store_wtxn_mdb(w), dbs[i], 0, &dbi);
		if (mrc == 0)
			mrc = mdb_drop(store_wtxn_mdb(w), dbi, 0);
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			rc = CAIRN_EIO;
	}
	if (rc == 0) {
		rc = store_wtxn_commit(w);
		w = NULL;
	}
	store_wtxn_abort(w);
	store_close(s);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "restore: %s", cairn_strerror(rc));
	printf("restored snapshot %s into %s; start cairnd with --data-dir %s --name %s "
	       "--initial-cluster %s --initial-advertise-peer-urls %s\n",
	       argv[0], top, top, ro.name, ro.initial_cluster, ro.peer_urls);
	return 0;
}

const struct ctl_cmd ctl_snapshot_cmds[] = {
    {"snapshot status", cmd_snapshot_status, "snapshot status <filename>",
     "Gets backend snapshot status of a given file", NULL},
    {"snapshot restore", cmd_snapshot_restore, "snapshot restore <filename> [options]",
     "Restores an etcd member snapshot to an etcd directory", restore_flags},
};
const size_t ctl_n_snapshot_cmds = sizeof(ctl_snapshot_cmds) / sizeof(ctl_snapshot_cmds[0]);
