/*
 * maint.c — etcd's Maintenance and Cluster services, and HTTP/1.1
 * /health, /livez, /readyz, /version, /metrics on the client port.
 *
 * Snapshot: the store writes a consistent copy of the environment from one
 * read transaction to a temporary file on a libuv worker thread (writers are
 * not blocked); the loop then streams it in 64 KiB SnapshotResponse chunks,
 * pausing while the client's stream is full (rpc back-pressure: a send
 * refused with CAIRN_EAGAIN, then on_writable), so a slow client costs one
 * file and one chunk, not memory.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/member.h"
#include "server/sha256.h"
#include "server/watch.h"

enum { X_STATUS, X_ALARM, X_DEFRAG, X_HASH, X_HASHKV, X_MOVELEADER, X_SNAPSHOT, X_COUNT };

struct maint_ctx {
	struct srv_member *m;
	int method[X_COUNT];
	char *http_body;
	size_t http_cap;
};

static void hdr(struct srv_member *m, Etcdserverpb__ResponseHeader *h)
{
	struct srv_header sh;
	srv_member_header(m, &sh);
	srv_header_to_pb(&sh, m->revision, h);
}

#define START(idx)                                                                                 \
	struct maint_ctx *mc = ud;                                                                 \
	struct srv_member *m = mc->m;                                                              \
	int method = mc->method[idx];                                                              \
	m->metrics.methods[method].started++

static void reply_msg(struct srv_member *m, struct rpc_call *call, int method,
                      const ProtobufCMessage *msg)
{
	m->metrics.methods[method].handled[0]++;
	rpc_call_reply_msg(call, msg);
}

static void on_status(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_STATUS);
	(void)buf;
	(void)len;
	struct store_stats st;
	int rv = store_stats(m->store, &st);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	struct raft_status rs;
	raft_get_status(m->raft, &rs);
	Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr(m, &h);
	resp.header = &h;
	resp.version = SRV_VERSION;
	resp.dbsize = (int64_t)st.db_size_bytes;
	resp.dbsizeinuse = (int64_t)st.in_use_bytes;
	resp.leader = m->leader;
	resp.raftindex = rs.commit;
	resp.raftterm = rs.term;
	resp.raftappliedindex = m->applied_index;
	resp.islearner = raft_conf_is_learner(&rs.conf, m->id);
	resp.dbsizequota = m->cfg->quota_backend_bytes;
	char *errs[2];
	struct store_rtxn *r;
	if (store_rtxn_begin(m->store, &r) == 0) {
		struct srv_alarm *al = NULL;
		size_t n = 0;
		if (srv_alarms_get(r, &al, &n) == 0) {
			for (size_t i = 0; i < n; i++) {
				if (al[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE)
					errs[resp.n_errors++] = "etcdserver: mvcc: database space "
					                        "exceeded";
				if (resp.n_errors == 2)
					break;
			}
			free(al);
		}
		store_rtxn_end(r);
	}
	resp.errors = errs;
	reply_msg(m, call, method, &resp.base);
}

static void on_alarm(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_ALARM);
	Etcdserverpb__AlarmRequest *req = etcdserverpb__alarm_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	if (req->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
		struct store_rtxn *r;
		int rv = store_rtxn_begin(m->store, &r);
		struct srv_alarm *al = NULL;
		size_t n = 0;
		if (rv == 0) {
			rv = srv_alarms_get(r, &al, &n);
			store_rtxn_end(r);
		}
		if (rv) {
			srv_member_fail(m, call, method, rv);
		} else {
			Etcdserverpb__AlarmMember *am = calloc(n + 1, sizeof(*am));
			Etcdserverpb__AlarmMember **ap = calloc(n + 1, sizeof(*ap));
			Etcdserverpb__AlarmResponse resp = ETCDSERVERPB__ALARM_RESPONSE__INIT;
			/* etcd 3.5 fills the header of every Alarm answer
			 * (v3rpc/maintenance.go, Alarm); 3.4 sent none. */
			Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
			hdr(m, &h);
			resp.header = &h;
			if (am && ap) {
				for (size_t i = 0; i < n; i++) {
					etcdserverpb__alarm_member__init(&am[i]);
					am[i].memberid = al[i].member_id;
					am[i].alarm = al[i].type;
					ap[i] = &am[i];
				}
				resp.alarms = ap;
				resp.n_alarms = n;
				reply_msg(m, call, method, &resp.base);
			} else {
				srv_member_fail(m, call, method, CAIRN_ENOMEM);
			}
			free(am);
			free(ap);
			free(al);
		}
	} else {
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.id = srv_member_next_id(m);
		ir.alarm = req;
		srv_member_propose(m, call, method, &ir);
	}
	etcdserverpb__alarm_request__free_unpacked(req, NULL);
}

static void on_defrag(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_DEFRAG);
	(void)buf;
	(void)len;
	/* LMDB reuses freed pages in place: there is nothing to defragment and
	 * nothing stops the world. */
	Etcdserverpb__DefragmentResponse resp = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
	/* etcd answers Defragment (and Alarm GET) without a header. */
	reply_msg(m, call, method, &resp.base);
}

static int hash_at(struct srv_member *m, int64_t rev, uint32_t *hash, int64_t *hash_rev,
                   int64_t *compact, int64_t *cur)
{
	struct store_rtxn *r;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv)
		return rv;
	*cur = store_rtxn_revision(r);
	rv = store_hash_kv(r, rev, hash, hash_rev, compact);
	store_rtxn_end(r);
	return rv;
}

static void on_hash(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_HASH);
	(void)buf;
	(void)len;
	uint32_t hash;
	int64_t hrev, compact, cur;
	int rv = hash_at(m, 0, &hash, &hrev, &compact, &cur);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	Etcdserverpb__HashResponse resp = ETCDSERVERPB__HASH_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr(m, &h);
	h.revision = cur;
	resp.header = &h;
	resp.hash = hash;
	reply_msg(m, call, method, &resp.base);
}

static void on_hashkv(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_HASHKV);
	Etcdserverpb__HashKVRequest *req = etcdserverpb__hash_kvrequest__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	uint32_t hash;
	int64_t hrev, compact, cur;
	int rv = hash_at(m, req->revision, &hash, &hrev, &compact, &cur);
	etcdserverpb__hash_kvrequest__free_unpacked(req, NULL);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	Etcdserverpb__HashKVResponse resp = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr(m, &h);
	h.revision = cur;
	resp.header = &h;
	resp.hash = hash;
	/* mvcc's compactMainRev is -1 until the first compaction; the store
	 * says 0 (no revision 0 is ever compacted). */
	resp.compact_revision = compact > 0 ? compact : -1;
	resp.hash_revision = hrev;
	reply_msg(m, call, method, &resp.base);
}

static void on_move_leader(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(X_MOVELEADER);
	Etcdserverpb__MoveLeaderRequest *req =
	    etcdserverpb__move_leader_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	uint64_t target = req->targetid;
	etcdserverpb__move_leader_request__free_unpacked(req, NULL);
	struct raft_status rs;
	raft_get_status(m->raft, &rs);
	if (m->role != RAFT_LEADER) {
		srv_member_fail(m, call, method, CAIRN_ENOTLEADER);
		return;
	}
	if (!raft_conf_is_voter(&rs.conf, target)) {
		rpc_call_fail(call, RPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee");
		m->metrics.methods[method].handled[RPC_FAILED_PRECONDITION]++;
		return;
	}
	if (target == m->id) {
		srv_maint_move_done(m, call, method, 0);
		return;
	}
	if (m->move_call) {
		srv_member_fail(m, call, method, CAIRN_EBUSY);
		return;
	}
	/* etcd answers once the target leads (or the request times out). */
	m->move_call = call;
	m->move_method = method;
	m->move_target = target;
	m->move_deadline_ms = uv_now(m->loop) + m->request_timeout_ms;
	struct raft_event ev = {.type = RAFT_EVENT_TRANSFER};
	ev.transfer.to = target;
	struct raft_update up;
	int rv = raft_step(m->raft, &ev, &up);
	srv_member_handle_update(m, &up);
	if (rv && m->move_call == call) {
		m->move_call = NULL;
		srv_member_fail(m, call, method, rv);
	}
}

void srv_maint_move_done(struct srv_member *m, struct rpc_call *call, int method, int err)
{
	if (err) {
		srv_member_fail(m, call, method, err);
		return;
	}
	/* Without a header: etcd answers an empty MoveLeaderResponse
	 * (v3rpc/maintenance.go, MoveLeader, 3.4 and 3.5 alike). */
	Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
	reply_msg(m, call, method, &resp.base);
}

/* ---- Snapshot ---- */

struct snap {
	uv_work_t work;
	struct maint_ctx *mc;
	struct rpc_stream *stream; /* NULL once closed by the peer */
	char path[4096];
	int fd;
	int err;
	off_t size, sent;
	bool working;
	bool trailer;  /* chunk holds the SHA-256 trailer */
	bool sum_sent; /* the trailer is queued: close next */
	struct srv_sha256 sum;
	size_t pending; /* bytes in chunk read and not yet queued */
	uint8_t chunk[64 * 1024];
};

static void snap_free(struct snap *sn)
{
	if (sn->fd >= 0)
		close(sn->fd);
	unlink(sn->path);
	free(sn);
}

/* Sends chunks until the file and its trailer are out or the stream's queue
 * is full. A chunk refused with CAIRN_EAGAIN stays pending in sn->chunk: the
 * refusal is what arms on_writable (rpc.h), which calls back here to send
 * it, and it enters the SHA-256 only once it is queued. */
static void snap_pump(struct snap *sn)
{
	while (sn->stream) {
		if (sn->sum_sent) {
			rpc_stream_close(sn->stream, RPC_OK, NULL);
			return;
		}
		if (sn->pending == 0) {
			ssize_t n = read(sn->fd, sn->chunk, sizeof(sn->chunk));
			if (n < 0) {
				rpc_stream_close(sn->stream, RPC_INTERNAL,
				                 "etcdserver: snapshot read failed");
				return;
			}
			if (n == 0) {
				/* etcd ends the stream with the SHA-256 of the
				 * database; etcdctl snapshot save checks it. */
				srv_sha256_final(&sn->sum, sn->chunk);
				sn->trailer = true;
				n = 32;
			}
			sn->pending = (size_t)n;
		}
		Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
		Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
		hdr(sn->mc->m, &h);
		resp.header = &h;
		resp.remaining_bytes =
		    sn->trailer ? 0 : (uint64_t)(sn->size - sn->sent) - sn->pending + 32;
		resp.blob.data = sn->chunk;
		resp.blob.len = sn->pending;
		resp.version = SRV_VERSION;
		int rv = rpc_stream_send_msg(sn->stream, &resp.base);
		if (rv == CAIRN_EAGAIN)
			return;
		if (rv) {
			/* CAIRN_ECLOSED: the peer is gone and on_close is coming. */
			if (rv != CAIRN_ECLOSED)
				rpc_stream_close(sn->stream, RPC_INTERNAL,
				                 "etcdserver: snapshot send failed");
			return;
		}
		if (sn->trailer) {
			sn->sum_sent = true;
		} else {
			srv_sha256_update(&sn->sum, sn->chunk, sn->pending);
			sn->sent += (off_t)sn->pending;
		}
		sn->pending = 0;
	}
}

static void snap_work(uv_work_t *w)
{
	struct snap *sn = w->data;
	sn->err = store_snapshot_write(sn->mc->m->store, sn->fd);
	if (!sn->err) {
		sn->size = lseek(sn->fd, 0, SEEK_END);
		lseek(sn->fd, 0, SEEK_SET);
	}
}

static void snap_after(uv_work_t *w, int status)
{
	struct snap *sn = w->data;
	sn->working = false;
	if (!sn->stream) { /* the client left meanwhile */
		snap_free(sn);
		return;
	}
	if (status || sn->err) {
		rpc_stream_close(sn->stream, RPC_INTERNAL, "etcdserver: snapshot failed");
		return;
	}
	snap_pump(sn);
}

static void snap_open(struct rpc_stream *s, void *ud)
{
	struct maint_ctx *mc = ud;
	mc->m->metrics.methods[mc->method[X_SNAPSHOT]].started++;
	struct snap *sn = calloc(1, sizeof(*sn));
	if (!sn) {
		rpc_stream_close(s, RPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
		return;
	}
	sn->mc = mc;
	sn->stream = s;
	sn->fd = -1;
	srv_sha256_init(&sn->sum);
	rpc_stream_set_data(s, sn);
}

static void snap_message(struct rpc_stream *s, const uint8_t *buf, size_t len)
{
	(void)buf;
	(void)len;
	struct snap *sn = rpc_stream_data(s);
	if (!sn || sn->working || sn->fd >= 0)
		return;
	snprintf(sn->path, sizeof(sn->path), "%s/snapshot.XXXXXX", sn->mc->m->cfg->data_dir);
	sn->fd = mkstemp(sn->path);
	if (sn->fd < 0) {
		rpc_stream_close(s, RPC_INTERNAL, "etcdserver: cannot create snapshot file");
		return;
	}
	sn->work.data = sn;
	sn->working = true;
	if (uv_queue_work(sn->mc->m->loop, &sn->work, snap_work, snap_after)) {
		sn->working = false;
		rpc_stream_close(s, RPC_INTERNAL, "etcdserver: cannot start snapshot");
	}
}

static void snap_writable(struct rpc_stream *s)
{
	struct snap *sn = rpc_stream_data(s);
	if (sn && !sn->working && sn->fd >= 0)
		snap_pump(sn);
}

static void snap_close(struct rpc_stream *s, int reason)
{
	struct snap *sn = rpc_stream_data(s);
	if (!sn)
		return;
	sn->mc->m->metrics.methods[sn->mc->method[X_SNAPSHOT]].handled[reason ? 1 : 0]++;
	sn->stream = NULL;
	if (!sn->working)
		snap_free(sn);
}

static const struct rpc_stream_cbs snap_cbs = {
    .on_open = snap_open,
    .on_message = snap_message,
    .on_writable = snap_writable,
    .on_close = snap_close,
};

/* ---- HTTP/1.1 ---- */

static void refresh_metrics(struct srv_member *m)
{
	struct store_stats st;
	if (store_stats(m->store, &st) == 0) {
		m->metrics.db_total_size_bytes = (int64_t)st.db_size_bytes;
		m->metrics.db_total_size_in_use_bytes = (int64_t)st.in_use_bytes;
		m->metrics.keys_total = (int64_t)st.keys;
		m->metrics.current_revision = st.revision;
		m->metrics.compact_revision = st.compact_revision;
	}
	if (m->hub) {
		struct srv_watch_stats ws;
		srv_watch_hub_stats(m->hub, &ws);
		m->metrics.watch_streams = ws.streams;
		m->metrics.watchers = ws.watchers;
		m->metrics.slow_watchers = ws.unsynced;
	}
	struct rpc_server_stats rs;
	rpc_server_get_stats(m->rpc, &rs);
	m->metrics.grpc_received_bytes = rs.bytes_received;
	m->metrics.grpc_sent_bytes = rs.bytes_sent;
}

/* The next name=value of a query string (url.Values, undecoded: alarm names
 * and "true" need no escaping); false at its end. */
static bool query_next(const char **q, const char **name, size_t *nlen, const char **val,
                       size_t *vlen)
{
	if (*q == NULL || **q == '\0')
		return false;
	const char *amp = strchr(*q, '&');
	size_t len = amp ? (size_t)(amp - *q) : strlen(*q);
	const char *eq = memchr(*q, '=', len);
	*name = *q;
	*nlen = eq ? (size_t)(eq - *q) : len;
	*val = eq ? eq + 1 : *q + len;
	*vlen = eq ? len - *nlen - 1 : 0;
	*q = amp ? amp + 1 : NULL;
	return true;
}

static bool query_is(const char *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* etcd 3.5's /health (etcdhttp/health.go): unhealthy for the first active
 * alarm whose name no ?exclude= lists ("ALARM NOSPACE"), then, unless
 * ?serializable=true, for no leader ("RAFT NO LEADER"), then if a read of
 * one key fails ("RANGE ERROR:<etcd's message>"). etcd's read is
 * linearizable unless serializable; ours is a local read (an HTTP answer
 * here cannot wait for a ReadIndex round), so a member cut off from its
 * quorum reports unhealthy once it has lost its leader, not at once.
 * etcd writes the healthy JSON bare (Go sniffs text/plain) and the
 * unhealthy one through http.Error (text/plain, a newline, 503). */
static void health(struct srv_member *m, const char *query, char *buf, size_t cap,
                   struct rpc_http_reply *reply)
{
	bool serializable = false, seen = false;
	const char *q = query, *name, *val;
	size_t nlen, vlen;
	while (query_next(&q, &name, &nlen, &val, &vlen)) {
		if (!seen && query_is(name, nlen, "serializable")) {
			serializable = query_is(val, vlen, "true");
			seen = true;
		}
	}
	char reason[96] = "";
	struct store_rtxn *r = NULL;
	int rv = m->stopping ? CAIRN_ESTOPPED : store_rtxn_begin(m->store, &r);
	struct srv_alarm *al = NULL;
	size_t n = 0;
	if (rv == 0)
		rv = srv_alarms_get(r, &al, &n);
	for (size_t i = 0; rv == 0 && i < n && !reason[0]; i++) {
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
		    &etcdserverpb__alarm_type__descriptor, al[i].type);
		const char *an = ev ? ev->name : "";
		bool excluded = false;
		q = query;
		while (!excluded && query_next(&q, &name, &nlen, &val, &vlen))
			excluded =
			    query_is(name, nlen, "exclude") && vlen > 0 && query_is(val, vlen, an);
		if (!excluded)
			snprintf(reason, sizeof(reason), "ALARM %s",
			         al[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE   ? "NOSPACE"
			         : al[i].type == ETCDSERVERPB__ALARM_TYPE__CORRUPT ? "CORRUPT"
			                                                           : "UNKNOWN");
	}
	free(al);
	if (!reason[0] && !serializable && m->leader == RAFT_NONE)
		snprintf(reason, sizeof(reason), "RAFT NO LEADER");
	if (!reason[0] && rv == 0) {
		/* One key, as etcd reads one (a range of every key would count
		 * them all: ~0.1 s on a loop thread for 1M keys, per probe). */
		struct store_range_req rq = {
		    .key = (const uint8_t *)"health", .key_len = 6, .limit = 1, .keys_only = true};
		struct store_range_resp rs;
		rv = store_range(r, &rq, &rs);
		if (rv == 0)
			store_range_resp_free(&rs);
	}
	if (r)
		store_rtxn_end(r);
	if (!reason[0] && rv) {
		int status;
		const char *msg;
		srv_grpc_error(rv, &status, &msg);
		snprintf(reason, sizeof(reason), "RANGE ERROR:%s", msg);
	}
	reply->content_type = "text/plain; charset=utf-8";
	reply->status = reason[0] ? 503 : 200;
	snprintf(buf, cap, "{\"health\":\"%s\",\"reason\":\"%s\"}%s", reason[0] ? "false" : "true",
	         reason, reason[0] ? "\n" : "");
	reply->body = buf;
	reply->body_len = strlen(buf);
}

static int on_http(const char *method, const char *path, struct rpc_http_reply *reply, void *ud)
{
	struct maint_ctx *mc = ud;
	struct srv_member *m = mc->m;
	static char small[256];
	reply->content_type = "application/json";
	const char *query = strchr(path, '?');
	size_t plen = query ? (size_t)(query - path) : strlen(path);
	if (query_is(path, plen, "/health")) {
		if (strcmp(method, "GET") != 0) { /* etcd refuses HEAD too */
			reply->status = 405;
			reply->content_type = "text/plain; charset=utf-8";
			reply->body = "Method Not Allowed\n";
			reply->body_len = strlen(reply->body);
			return 0;
		}
		health(m, query ? query + 1 : NULL, small, sizeof(small), reply);
		return 0;
	}
	if (!strncmp(path, "/readyz", 7) || !strncmp(path, "/livez", 6)) {
		bool ok = m->leader != RAFT_NONE && !m->stopping;
		reply->content_type = "text/plain; charset=utf-8";
		snprintf(small, sizeof(small), "%s\n", ok ? "ok" : "not ok: no leader");
		reply->status = ok ? 200 : 503;
		reply->body = small;
		reply->body_len = strlen(small);
		return 0;
	}
	if (!strcmp(path, "/version")) {
		snprintf(small, sizeof(small), "{\"etcdserver\":\"%s\",\"etcdcluster\":\"%s\"}",
		         SRV_VERSION, SRV_CLUSTER_VERSION);
		reply->body = small;
		reply->body_len = strlen(small);
		return 0;
	}
	if (!strcmp(path, "/metrics")) {
		refresh_metrics(m);
		size_t need;
		while ((need = srv_metrics_render(&m->metrics, SRV_VERSION, mc->http_body,
		                                  mc->http_cap)) >= mc->http_cap) {
			char *n = realloc(mc->http_body, need + 1);
			if (!n)
				return -1;
			mc->http_body = n;
			mc->http_cap = need + 1;
		}
		reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
		reply->body = mc->http_body;
		reply->body_len = need;
		return 0;
	}
	reply->status = 404;
	reply->content_type = "text/plain; charset=utf-8";
	reply->body = "404 page not found\n";
	reply->body_len = strlen(reply->body);
	return 0;
}

void srv_maint_free(struct srv_member *m)
{
	struct maint_ctx *mc = m->maint_ctx;
	if (mc)
		free(mc->http_body);
	free(mc);
	m->maint_ctx = NULL;
}

int srv_maint_register(struct srv_member *m)
{
	struct maint_ctx *mc = calloc(1, sizeof(*mc));
	if (!mc)
		return CAIRN_ENOMEM;
	mc->m = m;
	m->maint_ctx = mc;
	static const struct {
		const char *name;
		rpc_unary_cb cb;
		int row;
	} unary[] = {
	    {"Status", on_status, X_STATUS},     {"Alarm", on_alarm, X_ALARM},
	    {"Defragment", on_defrag, X_DEFRAG}, {"Hash", on_hash, X_HASH},
	    {"HashKV", on_hashkv, X_HASHKV},     {"MoveLeader", on_move_leader, X_MOVELEADER},
	};
	for (size_t i = 0; i < sizeof(unary) / sizeof(unary[0]); i++) {
		char path[96];
		snprintf(path, sizeof(path), "/etcdserverpb.Maintenance/%s", unary[i].name);
		mc->method[unary[i].row] =
		    srv_member_method(m, "etcdserverpb.Maintenance", unary[i].name, "unary");
		int rv = rpc_server_register_unary(m->rpc, path, unary[i].cb, mc);
		if (rv)
			return rv;
	}
	mc->method[X_SNAPSHOT] =
	    srv_member_method(m, "etcdserverpb.Maintenance", "Snapshot", "server_stream");
	int rv =
	    rpc_server_register_stream(m->rpc, "/etcdserverpb.Maintenance/Snapshot", &snap_cbs, mc);
	if (rv)
		return rv;
	rpc_server_set_http_handler(m->rpc, on_http, mc);
	return 0;
}
