/*
 * cluster_api.c — etcd's Cluster service: MemberList, MemberAdd,
 * MemberRemove, MemberUpdate, MemberPromote; and the loop-side application
 * of membership entries.
 *
 * Membership entries:
 *   RAFT_ENTRY_CONF: the 9-byte raft conf change (raft_conf_change_encode)
 *     followed by a packed Cairnpb__ConfChange carrying the member's URLs;
 *     the raft core reads the first 9 bytes, the member the rest.
 *   RAFT_ENTRY_NORMAL starting with SRV_MEMBER_UPDATE_TAG: a member
 *     attribute update (peer URLs, or name + client URLs as a member
 *     publishes them after start, as etcd does), not a raft conf change.
 * Both are applied on the loop when their entry is queued for apply; the
 * new record is written in the same batch, and the client is answered when
 * that batch has committed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/ids.h"
#include "server/member.h"

enum { C_LIST, C_ADD, C_REMOVE, C_UPDATE, C_PROMOTE, C_COUNT };

struct capi_ctx {
	struct srv_member *m;
	int method[C_COUNT];
};

/* etcd's ClusterServer.header(): cluster, member and term, no revision
 * (the membership is not part of the keyspace). */
static void hdr(struct srv_member *m, Etcdserverpb__ResponseHeader *h)
{
	struct srv_header sh;
	srv_member_header(m, &sh);
	srv_header_to_pb(&sh, 0, h);
}

/* Fills pb members from the applied membership (borrowing its strings). */
static void members_pb(struct srv_member *m, Etcdserverpb__Member *mb, Etcdserverpb__Member **mp)
{
	for (int i = 0; i < m->members.n; i++) {
		struct srv_mb *src = &m->members.mb[i];
		etcdserverpb__member__init(&mb[i]);
		mb[i].id = src->id;
		mb[i].name = src->name;
		mb[i].peerurls = src->peer;
		mb[i].n_peerurls = (size_t)src->n_peer;
		mb[i].clienturls = src->client;
		mb[i].n_clienturls = (size_t)src->n_client;
		mb[i].islearner = src->learner;
		mp[i] = &mb[i];
	}
}

/* Sets message field `name` of msg (found through its descriptor) to
 * value; for a repeated field, also its count. */
static void set_field(ProtobufCMessage *msg, const char *name, void *value, size_t n)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
	memcpy((char *)msg + f->offset, &value, sizeof(value));
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		memcpy((char *)msg + f->quantifier_offset, &n, sizeof(n));
}

/* The five Cluster responses differ only in their type (and MemberAdd's
 * `member`): all carry the header and the member list. */
static void reply_list(struct srv_member *m, struct rpc_call *call, int method, int kind,
                       uint64_t member_id)
{
	static const ProtobufCMessageDescriptor *const desc[C_COUNT] = {
	    [C_LIST] = &etcdserverpb__member_list_response__descriptor,
	    [C_ADD] = &etcdserverpb__member_add_response__descriptor,
	    [C_REMOVE] = &etcdserverpb__member_remove_response__descriptor,
	    [C_UPDATE] = &etcdserverpb__member_update_response__descriptor,
	    [C_PROMOTE] = &etcdserverpb__member_promote_response__descriptor,
	};
	Etcdserverpb__Member mb[SRV_MAX_MEMBERS];
	Etcdserverpb__Member *mp[SRV_MAX_MEMBERS];
	members_pb(m, mb, mp);
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	hdr(m, &h);
	union {
		ProtobufCMessage base;
		Etcdserverpb__MemberListResponse list;
		Etcdserverpb__MemberAddResponse add;
		Etcdserverpb__MemberRemoveResponse remove;
		Etcdserverpb__MemberUpdateResponse update;
		Etcdserverpb__MemberPromoteResponse promote;
	} r;
	const ProtobufCMessageDescriptor *d = desc[kind >= 0 && kind < C_COUNT ? kind : C_LIST];
	d->message_init(&r.base);
	set_field(&r.base, "header", &h, 0);
	set_field(&r.base, "members", mp, (size_t)m->members.n);
	for (int i = 0; kind == C_ADD && i < m->members.n; i++)
		if (mb[i].id == member_id)
			set_field(&r.base, "member", &mb[i], 0);
	m->metrics.methods[method].handled[0]++;
	rpc_call_reply_msg(call, &r.base);
}

static void fail_msg(struct srv_member *m, struct rpc_call *call, int method, int status,
                     const char *msg)
{
	m->metrics.methods[method].handled[status]++;
	rpc_call_fail(call, status, msg);
}

/* Proposes a membership entry and parks the call until it is applied. */
static void propose_change(struct srv_member *m, struct rpc_call *call, int method, int kind,
                           Cairnpb__ConfChange *cc)
{
	cc->id = srv_member_next_id(m);
	size_t plen = cairnpb__conf_change__get_packed_size(cc);
	uint8_t *buf = malloc(RAFT_CONF_CHANGE_SIZE + 1 + plen);
	if (!buf) {
		srv_member_fail(m, call, method, CAIRN_ENOMEM);
		return;
	}
	uint8_t type;
	size_t len;
	if (cc->type == CAIRNPB__CONF_CHANGE__TYPE__UPDATE) {
		type = RAFT_ENTRY_NORMAL;
		buf[0] = SRV_MEMBER_UPDATE_TAG;
		cairnpb__conf_change__pack(cc, buf + 1);
		len = 1 + plen;
	} else {
		static const uint8_t raft_type[] = {RAFT_CC_ADD_VOTER, RAFT_CC_ADD_LEARNER,
		                                    RAFT_CC_PROMOTE, RAFT_CC_REMOVE};
		struct raft_conf_change rcc = {raft_type[cc->type], cc->member->id};
		type = RAFT_ENTRY_CONF;
		raft_conf_change_encode(&rcc, buf);
		cairnpb__conf_change__pack(cc, buf + RAFT_CONF_CHANGE_SIZE);
		len = RAFT_CONF_CHANGE_SIZE + plen;
	}
	srv_member_propose_entry(m, call, method, cc->id, type, buf, len, kind, cc->member->id);
	free(buf);
}

static bool valid_urls(char **urls, size_t n)
{
	if (n == 0 || n > SRV_MAX_URLS) /* a member record keeps SRV_MAX_URLS */
		return false;
	for (size_t i = 0; i < n; i++) {
		char host[256];
		int port;
		if (srv_url_split(urls[i], host, sizeof(host), &port))
			return false;
	}
	return true;
}

#define START(idx)                                                                                 \
	struct capi_ctx *cc_ = ud;                                                                 \
	struct srv_member *m = cc_->m;                                                             \
	int method = cc_->method[idx];                                                             \
	m->metrics.methods[method].started++

static void on_list(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(C_LIST);
	(void)buf;
	(void)len;
	reply_list(m, call, method, C_LIST, 0);
}

static void on_add(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(C_ADD);
	Etcdserverpb__MemberAddRequest *req =
	    etcdserverpb__member_add_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	if (!valid_urls(req->peerurls, req->n_peerurls)) {
		fail_msg(m, call, method, RPC_INVALID_ARGUMENT,
		         "etcdserver: given member URLs are invalid");
	} else if (srv_membership_find_peer_url(&m->members, req->peerurls, req->n_peerurls)) {
		fail_msg(m, call, method, RPC_FAILED_PRECONDITION,
		         "etcdserver: Peer URLs already exists");
	} else {
		Cairnpb__Member mb = CAIRNPB__MEMBER__INIT;
		mb.id = srv_member_id((const char *const *)req->peerurls, (int)req->n_peerurls,
		                      m->cfg->initial_cluster_token, -1);
		mb.peer_urls = req->peerurls;
		mb.n_peer_urls = req->n_peerurls;
		mb.is_learner = req->islearner;
		Cairnpb__ConfChange cc = CAIRNPB__CONF_CHANGE__INIT;
		cc.type = req->islearner ? CAIRNPB__CONF_CHANGE__TYPE__ADD_LEARNER
		                         : CAIRNPB__CONF_CHANGE__TYPE__ADD_VOTER;
		cc.member = &mb;
		if (!mb.id)
			srv_member_fail(m, call, method, CAIRN_ENOMEM);
		else if (srv_membership_find(&m->members, mb.id))
			fail_msg(m, call, method, RPC_FAILED_PRECONDITION,
			         "etcdserver: member ID already exist");
		else
			propose_change(m, call, method, C_ADD, &cc);
	}
	etcdserverpb__member_add_request__free_unpacked(req, NULL);
}

static void on_remove(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(C_REMOVE);
	Etcdserverpb__MemberRemoveRequest *req =
	    etcdserverpb__member_remove_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	if (!srv_membership_find(&m->members, req->id)) {
		fail_msg(m, call, method, RPC_NOT_FOUND, "etcdserver: member not found");
	} else {
		Cairnpb__Member mb = CAIRNPB__MEMBER__INIT;
		mb.id = req->id;
		Cairnpb__ConfChange cc = CAIRNPB__CONF_CHANGE__INIT;
		cc.type = CAIRNPB__CONF_CHANGE__TYPE__REMOVE;
		cc.member = &mb;
		propose_change(m, call, method, C_REMOVE, &cc);
	}
	etcdserverpb__member_remove_request__free_unpacked(req, NULL);
}

static void on_update(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(C_UPDATE);
	Etcdserverpb__MemberUpdateRequest *req =
	    etcdserverpb__member_update_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	struct srv_mb *other =
	    srv_membership_find_peer_url(&m->members, req->peerurls, req->n_peerurls);
	if (!srv_membership_find(&m->members, req->id)) {
		fail_msg(m, call, method, RPC_NOT_FOUND, "etcdserver: member not found");
	} else if (!valid_urls(req->peerurls, req->n_peerurls)) {
		fail_msg(m, call, method, RPC_INVALID_ARGUMENT,
		         "etcdserver: given member URLs are invalid");
	} else if (other && other->id != req->id) {
		fail_msg(m, call, method, RPC_FAILED_PRECONDITION,
		         "etcdserver: Peer URLs already exists");
	} else {
		Cairnpb__Member mb = CAIRNPB__MEMBER__INIT;
		mb.id = req->id;
		mb.peer_urls = req->peerurls;
		mb.n_peer_urls = req->n_peerurls;
		Cairnpb__ConfChange cc = CAIRNPB__CONF_CHANGE__INIT;
		cc.type = CAIRNPB__CONF_CHANGE__TYPE__UPDATE;
		cc.member = &mb;
		propose_change(m, call, method, C_UPDATE, &cc);
	}
	etcdserverpb__member_update_request__free_unpacked(req, NULL);
}

static void on_promote(struct rpc_call *call, const uint8_t *buf, size_t len, void *ud)
{
	START(C_PROMOTE);
	if (m->role != RAFT_LEADER) {
		/* Only the leader knows whether the learner is in sync. */
		srv_cluster_relay_to_leader(m, call, method, buf, len);
		return;
	}
	Etcdserverpb__MemberPromoteRequest *req =
	    etcdserverpb__member_promote_request__unpack(NULL, len, buf);
	if (!req) {
		srv_member_fail(m, call, method, CAIRN_EPROTO);
		return;
	}
	struct srv_mb *mb = srv_membership_find(&m->members, req->id);
	if (!mb) {
		fail_msg(m, call, method, RPC_NOT_FOUND, "etcdserver: member not found");
	} else if (!mb->learner) {
		fail_msg(m, call, method, RPC_FAILED_PRECONDITION,
		         "etcdserver: can only promote a learner member");
	} else if (!srv_member_learner_ready(m, req->id)) {
		fail_msg(m, call, method, RPC_FAILED_PRECONDITION,
		         "etcdserver: can only promote a learner member which is in sync with "
		         "leader");
	} else {
		Cairnpb__Member pm = CAIRNPB__MEMBER__INIT;
		pm.id = req->id;
		Cairnpb__ConfChange cc = CAIRNPB__CONF_CHANGE__INIT;
		cc.type = CAIRNPB__CONF_CHANGE__TYPE__PROMOTE;
		cc.member = &pm;
		propose_change(m, call, method, C_PROMOTE, &cc);
	}
	etcdserverpb__member_promote_request__free_unpacked(req, NULL);
}

/* ---- applying membership entries (loop thread, at queue-for-apply) ---- */

bool srv_membership_entry(const struct raft_entry *e)
{
	if (e->type == RAFT_ENTRY_CONF)
		return true;
	return e->data.len > 0 && ((const uint8_t *)e->data.base)[0] == SRV_MEMBER_UPDATE_TAG;
}

void srv_cluster_apply_entry(struct srv_member *m, const struct raft_entry *e, uint64_t *id,
                             int *err)
{
	const uint8_t *p = e->data.base;
	size_t len = e->data.len;
	Cairnpb__ConfChange *cc = NULL;
	*id = 0;
	*err = 0;
	if (e->type == RAFT_ENTRY_CONF && len > RAFT_CONF_CHANGE_SIZE)
		cc = cairnpb__conf_change__unpack(NULL, len - RAFT_CONF_CHANGE_SIZE,
		                                  p + RAFT_CONF_CHANGE_SIZE);
	else if (e->type == RAFT_ENTRY_NORMAL && len > 1)
		cc = cairnpb__conf_change__unpack(NULL, len - 1, p + 1);
	if (!cc || !cc->member) {
		if (cc)
			cairnpb__conf_change__free_unpacked(cc, NULL);
		*err = CAIRN_EPROTO;
		return;
	}
	*id = cc->id;
	*err = srv_membership_apply(&m->members, cc);
	if (!*err) {
		uint8_t *packed;
		size_t plen;
		if (srv_membership_pack(&m->members, &packed, &plen) == 0) {
			free(m->filling->membership);
			m->filling->membership = packed;
			m->filling->membership_len = plen;
		}
		uint64_t who = cc->member->id;
		char idbuf[20];
		snprintf(idbuf, sizeof(idbuf), "%" PRIx64, who);
		static const char *const what[] = {"member added", "learner added",
		                                   "member promoted", "member removed",
		                                   "member updated"};
		srv_log(m->log, SRV_LOG_INFO, what[cc->type < 5 ? cc->type : 4], "member-id", idbuf,
		        NULL);
		if (cc->type == CAIRNPB__CONF_CHANGE__TYPE__REMOVE && m->peers && who != m->id)
			rpc_peer_net_remove_peer(m->peers, who);
		/* Not m->removed yet: a batch already in flight completing first
		 * would stop the member before the one applying this entry has
		 * answered the MemberRemove (the leader removed through itself
		 * answered "server stopped"). */
		if (cc->type == CAIRNPB__CONF_CHANGE__TYPE__REMOVE && who == m->id)
			m->filling->removes_self = true;
		srv_cluster_sync_peers(m);
	}
	cairnpb__conf_change__free_unpacked(cc, NULL);
}

void srv_cluster_api_reply(struct srv_member *m, struct srv_pending *p, int err)
{
	if (err == CAIRN_ENOTFOUND)
		fail_msg(m, p->call, p->method, RPC_NOT_FOUND, "etcdserver: member not found");
	else if (err == CAIRN_EEXIST)
		fail_msg(m, p->call, p->method, RPC_FAILED_PRECONDITION,
		         "etcdserver: member ID already exist");
	else if (err)
		srv_member_fail(m, p->call, p->method, err);
	else
		reply_list(m, p->call, p->method, p->kind_api, p->member_id);
}

/* Publishes this member's name and client URLs once it has a leader, as
 * etcd does, so MemberList shows them on every member. */
void srv_cluster_publish(struct srv_member *m, uint64_t now)
{
	if (m->leader == RAFT_NONE || now < m->publish_ms)
		return;
	struct srv_mb *self = srv_membership_find(&m->members, m->id);
	if (!self)
		return;
	const struct srv_url_list *cl = &m->cfg->advertise_client_urls;
	bool same = !strcmp(self->name, m->cfg->name) && self->n_client == cl->n;
	for (int i = 0; same && i < cl->n; i++)
		same = !strcmp(self->client[i], cl->url[i]);
	if (same)
		return;
	m->publish_ms = now + 3000; /* retried until it shows in the record */
	Cairnpb__Member mb = CAIRNPB__MEMBER__INIT;
	mb.id = m->id;
	mb.name = (char *)m->cfg->name;
	mb.client_urls = (char **)cl->url;
	mb.n_client_urls = (size_t)cl->n;
	Cairnpb__ConfChange cc = CAIRNPB__CONF_CHANGE__INIT;
	cc.type = CAIRNPB__CONF_CHANGE__TYPE__UPDATE;
	cc.member = &mb;
	size_t plen = cairnpb__conf_change__get_packed_size(&cc);
	uint8_t *buf = malloc(1 + plen);
	if (!buf)
		return;
	buf[0] = SRV_MEMBER_UPDATE_TAG;
	cairnpb__conf_change__pack(&cc, buf + 1);
	srv_member_propose_entry(m, NULL, -1, 0, RAFT_ENTRY_NORMAL, buf, 1 + plen, 0, 0);
	free(buf);
}

int srv_cluster_api_register(struct srv_member *m)
{
	struct capi_ctx *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return CAIRN_ENOMEM;
	cc->m = m;
	m->capi_ctx = cc;
	static const struct {
		const char *name;
		rpc_unary_cb cb;
	} methods[C_COUNT] = {
	    {"MemberList", on_list},     {"MemberAdd", on_add},         {"MemberRemove", on_remove},
	    {"MemberUpdate", on_update}, {"MemberPromote", on_promote},
	};
	for (int i = 0; i < C_COUNT; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/etcdserverpb.Cluster/%s", methods[i].name);
		cc->method[i] =
		    srv_member_method(m, "etcdserverpb.Cluster", methods[i].name, "unary");
		int rv = rpc_server_register_unary(m->rpc, path, methods[i].cb, cc);
		if (rv)
			return rv;
	}
	return 0;
}
