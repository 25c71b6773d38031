/*
 * lease.c — the etcd Lease service and lease expiry.
 *
 * Lease records live in the store and change only through raft (grant,
 * revoke). Expiry is the leader's: it keeps an in-memory table id → expiry
 * (loop clock), reconciled with the store's lease list every 500 ms, and
 * proposes a revoke for each lease past its expiry. A new leader starts
 * with an empty table, so every lease's remaining TTL restarts from its full
 * TTL: at least the "extend by an election timeout" that etcd gives.
 * KeepAlive refreshes the expiry; on a member that is not the leader it is
 * refused with etcd's "not leader" until clustering forwards it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/member.h"

#define MAX_LEASE_TTL 9000000000LL /* etcd's MaxLeaseTTL, seconds */

enum { L_GRANT, L_REVOKE, L_KEEPALIVE, L_TTL, L_LEASES, L_COUNT };

struct lease_ctx {
	struct srv_member *m;
	int method[L_COUNT];
};

struct ka_wait {
	struct rpc_stream *stream;
	int64_t lease_id;
	bool close_after; /* the client half-closed: end the stream once answered */
};

/* How many forwarded keep-alives still wait for an answer on stream s;
 * with mark, flags them to close the stream after the last answer. */
static size_t ka_waiting(struct srv_member *m, struct rpc_stream *s, bool mark)
{
	size_t n = 0;
	for (size_t i = 0; i < m->ka_pending.cap; i++) {
		struct ka_wait *kw = m->ka_pending.vals[i];
		if (m->ka_pending.keys[i] && kw->stream == s) {
			n++;
			if (mark)
				kw->close_after = true;
		}
	}
	return n;
}

static void send_keepalive(struct srv_member *m, struct rpc_stream *s, int64_t id, int64_t ttl);

static struct srv_lease_entry *table_get(struct srv_member *m, int64_t id)
{
	return srv_idmap_get(&m->leases, (uint64_t)id);
}

static struct srv_lease_entry *table_add(struct srv_member *m, int64_t id, int64_t ttl,
                                         uint64_t now)
{
	struct srv_lease_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->id = id;
	e->ttl = ttl;
	e->expiry_ms = now + (uint64_t)ttl * 1000;
	if (srv_idmap_put(&m->leases, (uint64_t)id, e)) {
		free(e);
		return NULL;
	}
	return e;
}

static void table_clear(struct srv_member *m)
{
	for (size_t i = 0; i < m->leases.cap; i++)
		if (m->leases.keys[i])
			free(m->leases.vals[i]);
	srv_idmap_free(&m->leases);
}

void srv_lease_free(struct srv_member *m)
{
	table_clear(m);
	for (size_t i = 0; i < m->ka_pending.cap; i++)
		if (m->ka_pending.keys[i])
			free(m->ka_pending.vals[i]);
	srv_idmap_free(&m->ka_pending);
	free(m->lease_ctx);
	m->lease_ctx = NULL;
}

void srv_lease_leader_changed(struct srv_member *m)
{
	table_clear(m);
	m->lease_sync_ms = 0;
}

/* Brings the table in line with the store: new leases in, revoked out. */
static void reconcile(struct srv_member *m, uint64_t now)
{
	struct store_rtxn *r;
	if (store_rtxn_begin(m->store, &r))
		return;
	struct store_lease *ls = NULL;
	size_t n = 0;
	int rv = store_lease_list(r, &ls, &n);
	store_rtxn_end(r);
	if (rv)
		return;
	struct srv_idmap seen = {0};
	for (size_t i = 0; i < n; i++) {
		if (!table_get(m, ls[i].id))
			table_add(m, ls[i].id, ls[i].ttl, now);
		srv_idmap_put(&seen, (uint64_t)ls[i].id, &seen);
	}
	free(ls);
	int64_t gone[128];
	size_t ng = 0;
	for (size_t i = 0; i < m->leases.cap && ng < 128; i++)
		if (m->leases.keys[i] && !srv_idmap_get(&seen, m->leases.keys[i]))
			gone[ng++] = (int64_t)m->leases.keys[i];
	for (size_t i = 0; i < ng; i++)
		free(srv_idmap_del(&m->leases, (uint64_t)gone[i]));
	srv_idmap_free(&seen);
}

void srv_lease_tick(struct srv_member *m, uint64_t now)
{
	if (m->role != RAFT_LEADER || now < m->lease_sync_ms + 500)
		return;
	m->lease_sync_ms = now;
	reconcile(m, now);
	int64_t expired[256];
	size_t n = 0;
	for (size_t i = 0; i < m->leases.cap && n < 256; i++) {
		struct srv_lease_entry *e = m->leases.vals[i];
		if (!m->leases.keys[i] || e->expiry_ms > now)
			continue;
		if (e->revoke_sent_ms && now < e->revoke_sent_ms + 3000)
			continue; /* a revoke is on its way */
		e->revoke_sent_ms = now;
		expired[n++] = e->id;
	}
	for (size_t i = 0; i < n; i++) {
		Etcdserverpb__LeaseRevokeRequest rr = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
		rr.id = expired[i];
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.lease_revoke = &rr;
		srv_member_propose(m, NULL, -1, &ir);
	}
}

static void header_pb(struct srv_member *m, Etcdserverpb__ResponseHeader *h)
{
	struct srv_header sh;
	srv_member_header(m, &sh);
	srv_header_to_pb(&sh, m->revision, h);
}

static void on_grant(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct lease_ctx *lc = ud;
	struct srv_member *m = lc->m;
	int method = lc->method[L_GRANT];
	m->metrics.methods[method].started++;
	Etcdserverpb__LeaseGrantRequest *req =
	    etcdserverpb__lease_grant_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	if (req->ttl > MAX_LEASE_TTL) {
		srv_member_fail(m, call, method, CAIRN_ELEASETTLTOOLARGE);
	} else {
		if (req->ttl < m->min_lease_ttl)
			req->ttl = m->min_lease_ttl;
		if (req->id == 0) /* positive, unique per member like etcd's */
			req->id = (int64_t)(srv_member_next_id(m) & (uint64_t)INT64_MAX);
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.id = srv_member_next_id(m);
		ir.lease_grant = req;
		srv_member_propose(m, call, method, &ir);
	}
	etcdserverpb__lease_grant_request__free_unpacked(req, NULL);
}

static void on_revoke(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct lease_ctx *lc = ud;
	struct srv_member *m = lc->m;
	int method = lc->method[L_REVOKE];
	m->metrics.methods[method].started++;
	Etcdserverpb__LeaseRevokeRequest *req =
	    etcdserverpb__lease_revoke_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
	ir.id = srv_member_next_id(m);
	ir.lease_revoke = req;
	srv_member_propose(m, call, method, &ir);
	etcdserverpb__lease_revoke_request__free_unpacked(req, NULL);
}

/* Remaining TTL in whole seconds (rounded up), or the granted TTL when the
 * lease is not in the table (not the leader, or just granted). */
static int64_t remaining(struct srv_member *m, int64_t id, int64_t granted)
{
	struct srv_lease_entry *e = table_get(m, id);
	if (!e)
		return granted;
	uint64_t now = uv_now(m->loop);
	if (e->expiry_ms <= now)
		return 0;
	return (int64_t)((e->expiry_ms - now + 999) / 1000);
}

static void on_ttl(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct lease_ctx *lc = ud;
	struct srv_member *m = lc->m;
	int method = lc->method[L_TTL];
	m->metrics.methods[method].started++;
	Etcdserverpb__LeaseTimeToLiveRequest *req =
	    etcdserverpb__lease_time_to_live_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	Etcdserverpb__LeaseTimeToLiveResponse resp =
	    ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	resp.header = &h;
	resp.id = req->id;
	struct store_rtxn *r = NULL;
	struct store_lease_keys keys = {0};
	ProtobufCBinaryData *kb = NULL;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv)
		goto fail;
	h.revision = store_rtxn_revision(r);
	struct srv_header sh;
	srv_member_header(m, &sh);
	srv_header_to_pb(&sh, store_rtxn_revision(r), &h);
	struct store_lease l;
	rv = store_lease_lookup(r, req->id, &l);
	if (rv == CAIRN_ELEASENOTFOUND) {
		resp.ttl = -1; /* etcd answers a missing lease with TTL -1, no error */
		rv = 0;
	} else if (rv) {
		goto fail;
	} else {
		resp.grantedttl = l.ttl;
		resp.ttl = remaining(m, l.id, l.ttl);
		if (req->keys) {
			if ((rv = store_lease_keys(r, req->id, &keys)))
				goto fail;
			kb = calloc(keys.n_keys + 1, sizeof(*kb));
			if (!kb) {
				rv = CAIRN_ENOMEM;
				goto fail;
			}
			for (size_t i = 0; i < keys.n_keys; i++) {
				kb[i].data = (uint8_t *)keys.keys[i].key;
				kb[i].len = keys.keys[i].key_len;
			}
			resp.keys = kb;
			resp.n_keys = keys.n_keys;
		}
	}
	size_t n = etcdserverpb__lease_time_to_live_response__get_packed_size(&resp);
	uint8_t *out = malloc(n ? n : 1);
	if (!out) {
		rv = CAIRN_ENOMEM;
		goto fail;
	}
	etcdserverpb__lease_time_to_live_response__pack(&resp, out);
	srv_member_reply(m, call, method, out, n);
	free(out);
	goto done;
fail:
	srv_member_fail(m, call, method, rv);
done:
	free(kb);
	store_lease_keys_free(&keys);
	store_rtxn_end(r);
	etcdserverpb__lease_time_to_live_request__free_unpacked(req, NULL);
}

static void on_leases(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct lease_ctx *lc = ud;
	struct srv_member *m = lc->m;
	int method = lc->method[L_LEASES];
	m->metrics.methods[method].started++;
	(void)buf;
	(void)len;
	struct store_rtxn *r;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	struct store_lease *ls = NULL;
	size_t n = 0;
	rv = store_lease_list(r, &ls, &n);
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	struct srv_header sh;
	srv_member_header(m, &sh);
	srv_header_to_pb(&sh, store_rtxn_revision(r), &h);
	store_rtxn_end(r);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	Etcdserverpb__LeaseStatus *st = calloc(n + 1, sizeof(*st));
	Etcdserverpb__LeaseStatus **sp = calloc(n + 1, sizeof(*sp));
	if (!st || !sp) {
		free(st);
		free(sp);
		free(ls);
		srv_member_fail(m, call, method, CAIRN_ENOMEM);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		etcdserverpb__lease_status__init(&st[i]);
		st[i].id = ls[i].id;
		sp[i] = &st[i];
	}
	Etcdserverpb__LeaseLeasesResponse resp = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
	resp.header = &h;
	resp.leases = sp;
	resp.n_leases = n;
	rpc_call_reply_msg(call, &resp.base);
	m->metrics.methods[method].handled[0]++;
	free(st);
	free(sp);
	free(ls);
}

/* ---- KeepAlive: a bidi stream of LeaseKeepAliveRequest ---- */

static void ka_open(struct rpc_stream *s, void *ud)
{
	struct lease_ctx *lc = ud;
	rpc_stream_set_data(s, lc);
	lc->m->metrics.methods[lc->method[L_KEEPALIVE]].started++;
}

static void ka_message(struct rpc_stream *s, const uint8_t *buf, size_t len)
{
	struct lease_ctx *lc = rpc_stream_data(s);
	struct srv_member *m = lc->m;
	Etcdserverpb__LeaseKeepAliveRequest *req =
	    etcdserverpb__lease_keep_alive_request__unpack(NULL, len, buf);
	if (!req) {
		rpc_stream_close(s, RPC_INVALID_ARGUMENT, "etcdserver: invalid keepalive request");
		return;
	}
	if (m->role != RAFT_LEADER) {
		/* Keep-alives are the leader's: forward, answer when it replies. */
		struct ka_wait *kw = calloc(1, sizeof(*kw));
		uint64_t ctx = srv_member_next_id(m);
		int rv = kw ? 0 : CAIRN_ENOMEM;
		if (!rv) {
			kw->stream = s;
			kw->lease_id = req->id;
			rv = srv_idmap_put(&m->ka_pending, ctx, kw);
		}
		if (!rv && (rv = srv_cluster_keepalive(m, ctx, req->id)))
			srv_idmap_del(&m->ka_pending, ctx);
		if (rv) {
			free(kw);
			int status;
			const char *msg;
			srv_grpc_error(rv == CAIRN_ENOLEADER ? rv : CAIRN_ETIMEOUT, &status, &msg);
			rpc_stream_close(s, status, msg);
		}
		etcdserverpb__lease_keep_alive_request__free_unpacked(req, NULL);
		return;
	}
	send_keepalive(m, s, req->id, srv_lease_renew(m, req->id));
	etcdserverpb__lease_keep_alive_request__free_unpacked(req, NULL);
}

int64_t srv_lease_renew(struct srv_member *m, int64_t lease_id)
{
	/* The store decides whether the lease exists: the table may still hold
	 * a lease whose revoke was just applied (it is reconciled every 500
	 * ms), and a keep-alive must not revive it. */
	uint64_t now = uv_now(m->loop);
	struct store_rtxn *r;
	struct store_lease l;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv == 0) {
		rv = store_lease_lookup(r, lease_id, &l);
		store_rtxn_end(r);
	}
	struct srv_lease_entry *e = table_get(m, lease_id);
	if (rv) {
		if (e)
			free(srv_idmap_del(&m->leases, (uint64_t)lease_id));
		return 0; /* etcd: TTL 0 says the lease is gone */
	}
	if (!e)
		e = table_add(m, l.id, l.ttl, now);
	if (!e || e->revoke_sent_ms)
		return 0;
	e->expiry_ms = now + (uint64_t)e->ttl * 1000;
	return e->ttl;
}

void srv_lease_keepalive_answer(struct srv_member *m, uint64_t ctx, int64_t ttl)
{
	struct ka_wait *kw = srv_idmap_del(&m->ka_pending, ctx);
	if (!kw)
		return; /* its stream went away meanwhile */
	send_keepalive(m, kw->stream, kw->lease_id, ttl);
	if (kw->close_after && ka_waiting(m, kw->stream, false) == 0)
		rpc_stream_close(kw->stream, RPC_OK, NULL);
	free(kw);
}

static void send_keepalive(struct srv_member *m, struct rpc_stream *s, int64_t id, int64_t ttl)
{
	Etcdserverpb__LeaseKeepAliveResponse resp = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	header_pb(m, &h);
	resp.header = &h;
	resp.id = id;
	resp.ttl = ttl;
	rpc_stream_send_msg(s, &resp.base);
}

static void ka_half_close(struct rpc_stream *s)
{
	/* etcd answers every keep-alive it read before it ends the stream:
	 * wait for the ones forwarded to the leader. */
	struct lease_ctx *lc = rpc_stream_data(s);
	if (lc && ka_waiting(lc->m, s, true))
		return;
	rpc_stream_close(s, RPC_OK, NULL);
}

static void ka_close(struct rpc_stream *s, int reason)
{
	struct lease_ctx *lc = rpc_stream_data(s);
	struct srv_member *m = lc ? lc->m : NULL;
	uint64_t gone[64];
	size_t n;
	do { /* forget forwarded keep-alives still waiting for this stream */
		n = 0;
		for (size_t i = 0; m && i < m->ka_pending.cap && n < 64; i++) {
			struct ka_wait *kw = m->ka_pending.vals[i];
			if (m->ka_pending.keys[i] && kw->stream == s)
				gone[n++] = m->ka_pending.keys[i];
		}
		for (size_t i = 0; i < n; i++)
			free(srv_idmap_del(&m->ka_pending, gone[i]));
	} while (n == 64);
	if (lc)
		lc->m->metrics.methods[lc->method[L_KEEPALIVE]].handled[reason ? 1 : 0]++;
}

static const struct rpc_stream_cbs ka_cbs = {
    .on_open = ka_open,
    .on_message = ka_message,
    .on_half_close = ka_half_close,
    .on_close = ka_close,
};

int srv_lease_register(struct srv_member *m)
{
	struct lease_ctx *lc = calloc(1, sizeof(*lc));
	if (!lc)
		return CAIRN_ENOMEM;
	lc->m = m;
	m->lease_ctx = lc;
	static const struct {
		const char *name;
		rpc_unary_cb cb;
	} unary[] = {
	    {"LeaseGrant", on_grant},
	    {"LeaseRevoke", on_revoke},
	    {"LeaseTimeToLive", on_ttl},
	    {"LeaseLeases", on_leases},
	};
	static const int rows[] = {L_GRANT, L_REVOKE, L_TTL, L_LEASES};
	for (size_t i = 0; i < sizeof(unary) / sizeof(unary[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "/etcdserverpb.Lease/%s", unary[i].name);
		lc->method[rows[i]] =
		    srv_member_method(m, "etcdserverpb.Lease", unary[i].name, "unary");
		int rv = rpc_server_register_unary(m->rpc, path, unary[i].cb, lc);
		if (rv)
			return rv;
	}
	lc->method[L_KEEPALIVE] =
	    srv_member_method(m, "etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream");
	return rpc_server_register_stream(m->rpc, "/etcdserverpb.Lease/LeaseKeepAlive", &ka_cbs,
	                                  lc);
}
