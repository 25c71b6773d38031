/*
 * cairnctl_inspect.c — offline inspection of a member's data directory:
 * `cairnctl inspect [summary|keys|history KEY|raft-log|check] --data-dir DIR`.
 *
 * The LMDB environment is opened read-only (store_config.read_only): no
 * lock is taken and nothing is written, so it is safe beside a running
 * cairnd — readers never block LMDB's single writer. Each command reads
 * one consistent snapshot (one read transaction) and ends it promptly, so
 * the writer's freed pages are not pinned for long.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/internal.pb-c.h"
#include "raft/raft_lmdb.h"
#include "store/store.h"
#include "tools/cairnctl.h"

static const char *data_dir = "";
static const char *insp_prefix = "";
static int64_t insp_limit;
static int64_t insp_from;

static const struct ctl_flag inspect_flags[] = {
    {"data-dir", 0, FLAG_STR, &data_dir, "", "cairnd's --data-dir (or its member/ directory)"},
    {"prefix", 0, FLAG_STR, &insp_prefix, "", "inspect keys: only keys with this prefix"},
    {"limit", 0, FLAG_INT, &insp_limit, "0", "at most this many lines (0 = all)"},
    {"from", 0, FLAG_INT, &insp_from, "0", "inspect raft-log: first index (0 = first kept)"},
    {0},
};

static struct store *open_store(void)
{
	if (!*data_dir)
		ctl_bad_args("--data-dir is required");
	char dir[4096];
	struct stat st;
	snprintf(dir, sizeof(dir), "%s/member", data_dir);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		snprintf(dir, sizeof(dir), "%s", data_dir);
	struct store_config cfg = {.dir = dir, .read_only = true};
	struct store *s;
	int rc = store_open(&cfg, &s);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "cannot open %s: %s", dir, cairn_strerror(rc));
	return s;
}

static void print_escaped(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
}

/* Lease ids as etcdctl prints them (%016x); 0 for none. */
static void print_lease(int64_t id)
{
	if (id)
		printf("%016llx", (unsigned long long)id);
	else
		putchar('0');
}

static void print_members(struct store_rtxn *r)
{
	const void *data;
	size_t len;
	if (store_rtxn_get_meta(r, "membership", &data, &len) != 0) {
		printf("members: (none recorded)\n");
		return;
	}
	Cairnpb__Membership *m = cairnpb__membership__unpack(NULL, len, data);
	if (!m) {
		printf("members: (undecodable record, %zu bytes)\n", len);
		return;
	}
	printf("cluster id: %" PRIx64 "\n", m->cluster_id);
	printf("members: %zu\n", m->n_members);
	for (size_t i = 0; i < m->n_members; i++) {
		const Cairnpb__Member *mb = m->members[i];
		printf("  %" PRIx64 " name=%s learner=%s peers=", mb->id, mb->name,
		       mb->is_learner ? "true" : "false");
		for (size_t j = 0; j < mb->n_peer_urls; j++)
			printf("%s%s", j ? "," : "", mb->peer_urls[j]);
		printf(" clients=");
		for (size_t j = 0; j < mb->n_client_urls; j++)
			printf("%s%s", j ? "," : "", mb->client_urls[j]);
		putchar('\n');
	}
	cairnpb__membership__free_unpacked(m, NULL);
}

struct last_cb {
	uint64_t last_term;
};

static int cmd_inspect(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args(
		    "inspect takes no arguments (see inspect keys|history|raft-log|check)");
	struct store *s = open_store();
	struct store_stats st;
	int rc = store_stats(s, &st);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "store stats: %s", cairn_strerror(rc));
	printf("revision: %lld\n", (long long)st.revision);
	printf("compact revision: %lld\n", (long long)st.compact_revision);
	printf("keys: %" PRIu64 "\n", st.keys);
	printf("key revisions in history: %" PRIu64 "\n", st.records);
	printf("leases: %" PRIu64 "\n", st.leases);
	printf("db size: %" PRIu64 " bytes\n", st.db_size_bytes);
	printf("in use: %" PRIu64 " bytes (%" PRIu64 " pages)\n", st.in_use_bytes, st.pages_in_use);
	printf("compaction pending: %s\n", st.compaction_pending ? "yes" : "no");
	printf("applied index: %" PRIu64 "\n", st.applied_index);

	struct raft_lmdb *rl;
	if (raft_lmdb_open(store_env(s), &rl) == 0) {
		struct raft_storage io = raft_lmdb_storage(rl);
		struct raft_hard_state hs = {0};
		struct raft_snapshot_meta snap;
		memset(&snap, 0, sizeof(snap));
		uint64_t last = 0, last_term = 0;
		if (io.initial_state(io.ctx, &hs, &snap) == 0 &&
		    io.last_index(io.ctx, &last) == 0) {
			raft_lmdb_term(rl, last, &last_term);
			printf("raft term: %" PRIu64 "\n", hs.term);
			printf("raft vote: %" PRIx64 "\n", hs.vote);
			printf("raft commit: %" PRIu64 "\n", hs.commit);
			printf("raft last index: %" PRIu64 " (term %" PRIu64 ")\n", last,
			       last_term);
			printf("raft snapshot index: %" PRIu64 " (term %" PRIu64 ")\n", snap.index,
			       snap.term);
		}
		raft_lmdb_close(rl);
	} else {
		printf("raft: (no raft log in this environment)\n");
	}
	struct store_rtxn *r;
	if (store_rtxn_begin(s, &r) == 0) {
		print_members(r);
		store_rtxn_end(r);
	}
	store_close(s);
	return 0;
}

static int cmd_inspect_keys(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("inspect keys takes no arguments");
	struct store *s = open_store();
	struct store_rtxn *r;
	if (store_rtxn_begin(s, &r) != 0)
		ctl_die(EXIT_ERROR, "read transaction failed");
	struct store_range_req req = {0};
	uint8_t *end = NULL;
	size_t end_len;
	if (*insp_prefix) {
		req.key = (const uint8_t *)insp_prefix;
		req.key_len = strlen(insp_prefix);
		ctl_prefix_end(req.key, req.key_len, &end, &end_len);
		req.range_end = end;
		req.range_end_len = end_len;
	} else {
		req.key = (const uint8_t *)"\0";
		req.key_len = 1;
		req.range_end = (const uint8_t *)"\0";
		req.range_end_len = 1;
	}
	req.limit = insp_limit;
	req.keys_only = true;
	struct store_range_resp resp;
	int rc = store_range(r, &req, &resp);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "range: %s", cairn_strerror(rc));
	for (size_t i = 0; i < resp.n_kvs; i++) {
		const struct store_kv *kv = &resp.kvs[i];
		print_escaped(kv->key, kv->key_len);
		printf(" create=%lld mod=%lld version=%lld lease=", (long long)kv->create_revision,
		       (long long)kv->mod_revision, (long long)kv->version);
		print_lease(kv->lease);
		putchar('\n');
	}
	printf("%lld keys at revision %lld%s\n", (long long)resp.count, (long long)resp.revision,
	       resp.more ? " (more not shown)" : "");
	store_range_resp_free(&resp);
	store_rtxn_end(r);
	store_close(s);
	return 0;
}

static int cmd_inspect_history(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("inspect history needs one key");
	struct store *s = open_store();
	struct store_rtxn *r;
	if (store_rtxn_begin(s, &r) != 0)
		ctl_die(EXIT_ERROR, "read transaction failed");
	struct store_history_req req = {0};
	req.key = (const uint8_t *)argv[0];
	req.key_len = strlen(argv[0]);
	int64_t crev = store_rtxn_compact_revision(r);
	req.from_rev = crev > 0 ? crev : 1;
	req.limit = 1000;
	size_t n = 0;
	for (;;) {
		struct store_history_resp resp;
		int rc = store_history(r, &req, &resp);
		if (rc != 0)
			ctl_die(EXIT_ERROR, "history: %s", cairn_strerror(rc));
		for (size_t i = 0; i < resp.n_events; i++) {
			const struct store_event *e = &resp.events[i];
			if (e->type == STORE_EVENT_DELETE) {
				printf("rev=%lld.%lld DELETE\n", (long long)e->kv.mod_revision,
				       (long long)e->sub_revision);
			} else {
				printf("rev=%lld.%lld PUT create=%lld version=%lld lease=",
				       (long long)e->kv.mod_revision, (long long)e->sub_revision,
				       (long long)e->kv.create_revision, (long long)e->kv.version);
				print_lease(e->kv.lease);
				printf(" value=");
				print_escaped(e->kv.value, e->kv.value_len);
				putchar('\n');
			}
			n++;
		}
		bool more = resp.more;
		req.from_rev = resp.next_rev;
		req.from_sub = resp.next_sub;
		store_history_resp_free(&resp);
		if (!more || (insp_limit && (int64_t)n >= insp_limit))
			break;
	}
	printf("%zu revisions of ", n);
	print_escaped((const uint8_t *)argv[0], strlen(argv[0]));
	printf(" since compact revision %lld\n", (long long)crev);
	store_rtxn_end(r);
	store_close(s);
	return 0;
}

static void describe_request(const uint8_t *data, size_t len)
{
	Cairnpb__InternalRequest *q = cairnpb__internal_request__unpack(NULL, len, data);
	if (!q) {
		printf(" (undecodable, %zu bytes)", len);
		return;
	}
	printf(" id=%" PRIx64, q->id);
	if (q->put) {
		printf(" put key=");
		print_escaped(q->put->key.data, q->put->key.len);
		printf(" value_len=%zu", q->put->value.len);
		if (q->put->lease)
			printf(" lease=%016llx", (unsigned long long)q->put->lease);
	}
	if (q->delete_range) {
		printf(" delete key=");
		print_escaped(q->delete_range->key.data, q->delete_range->key.len);
		if (q->delete_range->range_end.len) {
			printf(" range_end=");
			print_escaped(q->delete_range->range_end.data,
			              q->delete_range->range_end.len);
		}
	}
	if (q->txn)
		printf(" txn compares=%zu success=%zu failure=%zu", q->txn->n_compare,
		       q->txn->n_success, q->txn->n_failure);
	if (q->compaction)
		printf(" compaction rev=%lld", (long long)q->compaction->revision);
	if (q->lease_grant)
		printf(" lease-grant id=%016llx ttl=%lld", (unsigned long long)q->lease_grant->id,
		       (long long)q->lease_grant->ttl);
	if (q->lease_revoke)
		printf(" lease-revoke id=%016llx", (unsigned long long)q->lease_revoke->id);
	if (q->alarm)
		printf(" alarm action=%d type=%d", q->alarm->action, q->alarm->alarm);
	if (q->lease_extend_ms)
		printf(" lease-extend=%lldms", (long long)q->lease_extend_ms);
	cairnpb__internal_request__free_unpacked(q, NULL);
}

struct walk {
	size_t n;
};

static int print_entry(void *arg, const struct raft_entry *e)
{
	struct walk *w = arg;
	printf("index=%" PRIu64 " term=%" PRIu64 " type=%s len=%zu", e->index, e->term,
	       e->type == RAFT_ENTRY_CONF ? "conf" : "normal", e->data.len);
	if (e->type == RAFT_ENTRY_NORMAL) {
		if (e->data.len == 0)
			printf(" (leader no-op)");
		else
			describe_request(e->data.base, e->data.len);
	}
	putchar('\n');
	w->n++;
	return insp_limit && (int64_t)w->n >= insp_limit ? 1 : 0;
}

static int cmd_inspect_raft_log(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("inspect raft-log takes no arguments");
	struct store *s = open_store();
	struct raft_lmdb *rl;
	if (raft_lmdb_open(store_env(s), &rl) != 0)
		ctl_die(EXIT_ERROR, "no raft log in this data directory");
	struct raft_storage io = raft_lmdb_storage(rl);
	struct raft_hard_state hs = {0};
	struct raft_snapshot_meta snap;
	memset(&snap, 0, sizeof(snap));
	uint64_t last = 0;
	if (io.initial_state(io.ctx, &hs, &snap) != 0 || io.last_index(io.ctx, &last) != 0)
		ctl_die(EXIT_ERROR, "cannot read raft state");
	uint64_t lo = snap.index + 1;
	if (insp_from > 0 && (uint64_t)insp_from > lo)
		lo = (uint64_t)insp_from;
	struct walk w = {0};
	if (lo <= last)
		io.entries(io.ctx, lo, last, 0, print_entry, &w);
	printf("%zu entries shown; log holds %" PRIu64 "..%" PRIu64 ", term %" PRIu64
	       ", commit %" PRIu64 "\n",
	       w.n, snap.index + 1, last, hs.term, hs.commit);
	raft_lmdb_close(rl);
	store_close(s);
	return 0;
}

static int cmd_inspect_check(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("inspect check takes no arguments");
	struct store *s = open_store();
	char msg[1024] = "";
	int rc = store_check(s, msg, sizeof(msg));
	store_close(s);
	if (rc != 0)
		ctl_die(EXIT_ERROR, "store check failed: %s (%s)", cairn_strerror(rc), msg);
	printf("store check passed\n");
	return 0;
}

const struct ctl_cmd ctl_inspect_cmds[] = {
    {"inspect summary", cmd_inspect, "inspect summary --data-dir DIR",
     "Offline: revision, compaction, keys, db size, raft state, members", inspect_flags},
    {"inspect keys", cmd_inspect_keys, "inspect keys --data-dir DIR [--prefix P] [--limit N]",
     "Offline: live keys with their revisions", inspect_flags},
    {"inspect history", cmd_inspect_history, "inspect history --data-dir DIR <key>",
     "Offline: every revision of a key since the compact revision", inspect_flags},
    {"inspect raft-log", cmd_inspect_raft_log,
     "inspect raft-log --data-dir DIR [--from N] [--limit N]",
     "Offline: raft log entries with their types and requests", inspect_flags},
    {"inspect check", cmd_inspect_check, "inspect check --data-dir DIR",
     "Offline: full invariant check of the store (store_check)", inspect_flags},
};
const size_t ctl_n_inspect_cmds = sizeof(ctl_inspect_cmds) / sizeof(ctl_inspect_cmds[0]);
