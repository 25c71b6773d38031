/*
 * kv.c — the etcd KV service: Range, Put, DeleteRange, Txn, Compact.
 *
 * Writes are checked as etcd checks them before raft (srv_check_*), wrapped
 * in an InternalRequest and proposed; the answer comes when the entry is
 * applied (member.c). Range is served from a read transaction: at once when
 * serializable, after ReadIndex otherwise. A Txn with only range ops is a
 * read too (etcd serves it without raft when serializable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/member.h"

enum { M_RANGE, M_PUT, M_DELETE, M_TXN, M_COMPACT, M_COUNT };

struct kv_ctx {
	struct srv_member *m;
	int method[M_COUNT];
};

static void serve_range(struct srv_member *m, struct rpc_call *call, int method,
                        const Etcdserverpb__RangeRequest *req)
{
	struct store_rtxn *r;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		return;
	}
	struct srv_header h;
	srv_member_header(m, &h);
	uint8_t *out = NULL;
	size_t len = 0;
	rv = srv_range(r, &h, req, &out, &len);
	store_rtxn_end(r);
	if (rv)
		srv_member_fail(m, call, method, rv);
	else
		srv_member_reply(m, call, method, out, len);
	free(out);
	m->metrics.range_total++;
}

void srv_kv_serve_read(struct srv_member *m, struct srv_pending *p)
{
	serve_range(m, p->call, p->method, p->range);
	etcdserverpb__range_request__free_unpacked(p->range, NULL);
	free(p);
}

static void on_range(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct kv_ctx *kc = ud;
	struct srv_member *m = kc->m;
	int method = kc->method[M_RANGE];
	m->metrics.methods[method].started++;
	Etcdserverpb__RangeRequest *req = etcdserverpb__range_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	int rv = srv_check_range(req);
	if (rv) {
		srv_member_fail(m, call, method, rv);
		etcdserverpb__range_request__free_unpacked(req, NULL);
		return;
	}
	if (req->serializable) {
		serve_range(m, call, method, req);
		etcdserverpb__range_request__free_unpacked(req, NULL);
		return;
	}
	struct srv_pending *p = calloc(1, sizeof(*p));
	uint64_t ctx = srv_member_next_id(m);
	if (!p || srv_idmap_put(&m->reads, ctx, p)) {
		free(p);
		etcdserverpb__range_request__free_unpacked(req, NULL);
		srv_member_fail(m, call, method, CAIRN_ENOMEM);
		return;
	}
	p->kind = SRV_PENDING_READ;
	p->id = ctx;
	p->call = call;
	p->method = method;
	p->range = req;
	p->deadline_ms = uv_now(m->loop) + m->request_timeout_ms;
	struct raft_event ev = {.type = RAFT_EVENT_READ_INDEX};
	ev.read_index.ctx = ctx;
	struct raft_update up;
	rv = raft_step(m->raft, &ev, &up);
	if (rv) {
		/* The update may still carry work (it is valid on error). */
		srv_idmap_del(&m->reads, ctx);
		srv_member_fail(m, call, method, rv == CAIRN_ENOTLEADER ? CAIRN_ENOLEADER : rv);
		etcdserverpb__range_request__free_unpacked(req, NULL);
		free(p);
	}
	srv_member_handle_update(m, &up);
}

/* Wraps one write in an InternalRequest and proposes it. */
static void propose(struct srv_member *m, struct rpc_call *call, int method,
                    Cairnpb__InternalRequest *ir)
{
	ir->id = srv_member_next_id(m);
	srv_member_propose(m, call, method, ir);
}

static void on_put(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct kv_ctx *kc = ud;
	struct srv_member *m = kc->m;
	int method = kc->method[M_PUT];
	m->metrics.methods[method].started++;
	Etcdserverpb__PutRequest *req = etcdserverpb__put_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	int rv = srv_check_put(req, &m->limits);
	if (rv) {
		srv_member_fail(m, call, method, rv);
	} else {
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.put = req;
		propose(m, call, method, &ir);
		m->metrics.put_total++;
	}
	etcdserverpb__put_request__free_unpacked(req, NULL);
}

static void on_delete(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct kv_ctx *kc = ud;
	struct srv_member *m = kc->m;
	int method = kc->method[M_DELETE];
	m->metrics.methods[method].started++;
	Etcdserverpb__DeleteRangeRequest *req =
	    etcdserverpb__delete_range_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	int rv = srv_check_delete(req);
	if (rv) {
		srv_member_fail(m, call, method, rv);
	} else {
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.delete_range = req;
		propose(m, call, method, &ir);
		m->metrics.delete_total++;
	}
	etcdserverpb__delete_range_request__free_unpacked(req, NULL);
}

static void on_txn(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct kv_ctx *kc = ud;
	struct srv_member *m = kc->m;
	int method = kc->method[M_TXN];
	m->metrics.methods[method].started++;
	Etcdserverpb__TxnRequest *req = etcdserverpb__txn_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	int rv = srv_check_txn(req, &m->limits);
	if (rv) {
		srv_member_fail(m, call, method, rv);
	} else {
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.txn = req;
		propose(m, call, method, &ir);
		m->metrics.txn_total++;
	}
	etcdserverpb__txn_request__free_unpacked(req, NULL);
}

static void on_compact(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	struct kv_ctx *kc = ud;
	struct srv_member *m = kc->m;
	int method = kc->method[M_COMPACT];
	m->metrics.methods[method].started++;
	Etcdserverpb__CompactionRequest *req =
	    etcdserverpb__compaction_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	char rev[24];
	snprintf(rev, sizeof(rev), "%lld", (long long)req->revision);
	srv_log(m->log, SRV_LOG_INFO, "compaction requested", "revision", rev, "physical",
	        req->physical ? "true" : "false", NULL);
	Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
	ir.compaction = req;
	propose(m, call, method, &ir);
	m->compact_pending = true;
	etcdserverpb__compaction_request__free_unpacked(req, NULL);
}

int srv_kv_register(struct srv_member *m)
{
	struct kv_ctx *kc = calloc(1, sizeof(*kc));
	if (!kc)
		return CAIRN_ENOMEM;
	kc->m = m;
	m->kv_ctx = kc;
	static const struct {
		const char *name;
		rpc_unary_cb cb;
	} methods[M_COUNT] = {
	    {"Range", on_range}, {"Put", on_put},         {"DeleteRange", on_delete},
	    {"Txn", on_txn},     {"Compact", on_compact},
	};
	for (int i = 0; i < M_COUNT; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/etcdserverpb.KV/%s", methods[i].name);
		kc->method[i] = srv_member_method(m, "etcdserverpb.KV", methods[i].name, "unary");
		int rv = rpc_server_register_unary(m->rpc, path, methods[i].cb, kc);
		if (rv)
			return rv;
	}
	return 0;
}
