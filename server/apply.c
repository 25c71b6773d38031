/*
 * apply.c — one committed raft entry in, one store mutation and one packed
 * etcd response out (etcdserver/apply.go's applierV3backend), plus Range for
 * reads and the alarm list.
 *
 * INVARIANTS
 *   1. Deterministic: the outcome of an entry depends only on the entry and
 *      the store state inside the batch's wtxn (alarms included), never on
 *      the member, the clock or how entries were batched — every member must
 *      reach the same state.
 *   2. A request that fails changes nothing: the store undoes a failed
 *      mutation, and the checks done here (alarm, lease TTL) come first.
 *   3. The response is built only after the mutation succeeded; if building
 *      it runs out of memory the entry IS applied, so that is a fatal error
 *      for the batch (the member must not answer "failed" for an applied
 *      write).
 *
 * ALARMS
 *   Kept in store meta "alarms" as a sorted array of 12-byte records
 *   (member id u64 BE, alarm type u32 BE), ordered by (type, member). A put,
 *   a txn containing a put (in any branch, at any depth) and a lease grant
 *   are refused with CAIRN_ENOSPACE while a NOSPACE alarm is active, as
 *   etcd's applierV3Capped does; deletes, ranges, compaction, revokes work.
 */
#include <stdlib.h>
#include <string.h>

#include "server/apply_int.h"

/* etcd's lease.MaxLeaseTTL. */
#define SRV_MAX_LEASE_TTL 9000000000LL

#define ALARMS_META "alarms"
#define ALARM_REC   12u
#define ARENA_STACK 2048u

static bool fatal(int rc)
{
	return rc == CAIRN_EIO || rc == CAIRN_ENOMEM || rc == CAIRN_ECORRUPT;
}

/* ------------------------------------------------------------------------ */
/* Alarms                                                                     */

static uint64_t get_be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = n; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
}

static int decode_alarms(const uint8_t *data, size_t len, struct srv_alarm **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (len % ALARM_REC)
		return CAIRN_ECORRUPT;
	if (len == 0)
		return 0;
	struct srv_alarm *a = malloc(len / ALARM_REC * sizeof(*a));
	if (!a)
		return CAIRN_ENOMEM;
	for (size_t i = 0; i < len / ALARM_REC; i++) {
		a[i].member_id = get_be(data + i * ALARM_REC, 8);
		a[i].type = (int)(uint32_t)get_be(data + i * ALARM_REC + 8, 4);
	}
	*out = a;
	*n = len / ALARM_REC;
	return 0;
}

int srv_alarms_get(struct store_rtxn *r, struct srv_alarm **out, size_t *n)
{
	const void *data;
	size_t len;
	*out = NULL;
	*n = 0;
	int rc = store_rtxn_get_meta(r, ALARMS_META, &data, &len);
	if (rc == CAIRN_ENOTFOUND)
		return 0;
	return rc ? rc : decode_alarms(data, len, out, n);
}

/* The alarms as the batch sees them, its own earlier alarm entries
 * included (a rtxn would miss those, breaking invariant 1). decode_alarms
 * copies them out before the next write moves the blob. */
static int alarms_get_w(struct store_wtxn *w, struct srv_alarm **out, size_t *n)
{
	const void *data;
	size_t len;
	*out = NULL;
	*n = 0;
	int rc = store_wtxn_get_meta(w, ALARMS_META, &data, &len);
	if (rc == CAIRN_ENOTFOUND)
		return 0;
	return rc ? rc : decode_alarms(data, len, out, n);
}

static bool nospace_active(const struct srv_alarm *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].type == ETCDSERVERPB__ALARM_TYPE__NOSPACE)
			return true;
	return false;
}

static int alarm_cmp(const struct srv_alarm *a, uint64_t member, int type)
{
	if (a->type != type)
		return a->type < type ? -1 : 1;
	if (a->member_id != member)
		return a->member_id < member ? -1 : 1;
	return 0;
}

static int alarms_put_w(struct store_wtxn *w, const struct srv_alarm *a, size_t n)
{
	if (n == 0)
		return store_wtxn_set_meta(w, ALARMS_META, NULL, 0);
	uint8_t *buf = malloc(n * ALARM_REC);
	if (!buf)
		return CAIRN_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		put_be(buf + i * ALARM_REC, a[i].member_id, 8);
		put_be(buf + i * ALARM_REC + 8, (uint32_t)a[i].type, 4);
	}
	int rc = store_wtxn_set_meta(w, ALARMS_META, buf, n * ALARM_REC);
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Apply                                                                      */

struct apply_ctx {
	struct store_wtxn *w;
	const struct srv_header *hdr;
	bool want;
	struct srv_apply_result *out;
	struct srv_arena arena;
	Etcdserverpb__ResponseHeader header;
	bool capped; /* refused because a NOSPACE alarm is already up */
	bool quota;  /* set by capped(): a write the quota applies to */
};

/* Gives msg (any etcd response: all have a "header" field) the top-level
 * header and packs it into out->resp. msg NULL: building it ran out of
 * memory. */
static int finish(struct apply_ctx *c, void *msg, int64_t revision)
{
	ProtobufCMessage *m = msg;
	if (!m)
		return CAIRN_ENOMEM;
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "header");
	srv_header_to_pb(c->hdr, revision, &c->header);
	*(Etcdserverpb__ResponseHeader **)((uint8_t *)m + f->offset) = &c->header;
	return srv_conv_pack(m, &c->out->resp, &c->out->resp_len);
}

static bool txn_has_put(const Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp *const *br[2] = {t->success, t->failure};
	size_t nb[2] = {t->n_success, t->n_failure};
	for (int b = 0; b < 2; b++) {
		for (size_t i = 0; i < nb[b]; i++) {
			const Etcdserverpb__RequestOp *op = br[b][i];
			if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
				return true;
			if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
			    txn_has_put(op->request_txn))
				return true;
		}
	}
	return false;
}

/* For the writes etcd's quota applies to (put, txn with a put, lease
 * grant): CAIRN_ENOSPACE when a NOSPACE alarm is up (0 otherwise), or a
 * fatal code. */
static int capped(struct apply_ctx *c)
{
	struct srv_alarm *a;
	size_t n;
	int rc = alarms_get_w(c->w, &a, &n);
	if (rc)
		return rc;
	c->quota = true;
	c->capped = nospace_active(a, n);
	free(a);
	return c->capped ? CAIRN_ENOSPACE : 0;
}

static int apply_put(struct apply_ctx *c, const Etcdserverpb__PutRequest *pb)
{
	struct store_put_req req;
	struct store_put_resp resp;
	int rc = capped(c);
	if (rc)
		return rc;
	srv_conv_put_req(pb, &req);
	rc = store_put(c->w, &req, &resp);
	if (rc)
		return rc;
	if (c->want)
		rc = finish(c, srv_conv_put_resp(&c->arena, &resp), resp.revision);
	store_put_resp_free(&resp);
	return rc;
}

static int apply_delete(struct apply_ctx *c, const Etcdserverpb__DeleteRangeRequest *pb)
{
	struct store_delete_req req;
	struct store_delete_resp resp;
	srv_conv_delete_req(pb, &req);
	int rc = store_delete_range(c->w, &req, &resp);
	if (rc)
		return rc;
	if (c->want)
		rc = finish(c, srv_conv_delete_resp(&c->arena, &resp), resp.revision);
	store_delete_resp_free(&resp);
	return rc;
}

static int apply_txn(struct apply_ctx *c, const Etcdserverpb__TxnRequest *pb)
{
	struct store_txn_req req;
	struct store_txn_resp resp;
	int rc = txn_has_put(pb) ? capped(c) : 0;
	if (!rc)
		rc = srv_conv_txn_req(&c->arena, pb, &req);
	if (rc)
		return rc;
	rc = store_txn(c->w, &req, &resp);
	if (rc)
		return rc;
	if (c->want)
		rc = finish(c, srv_conv_txn_resp(&c->arena, &resp), resp.revision);
	store_txn_resp_free(&resp);
	return rc;
}

static int apply_compaction(struct apply_ctx *c, const Etcdserverpb__CompactionRequest *pb)
{
	int rc = store_compact(c->w, pb->revision);
	if (rc || !c->want)
		return rc;
	Etcdserverpb__CompactionResponse m = ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
	return finish(c, &m, store_wtxn_revision(c->w));
}

static int apply_lease_grant(struct apply_ctx *c, const Etcdserverpb__LeaseGrantRequest *pb)
{
	if (pb->ttl > SRV_MAX_LEASE_TTL)
		return CAIRN_ELEASETTLTOOLARGE;
	int rc = capped(c);
	if (!rc)
		rc = store_lease_grant(c->w, pb->id, pb->ttl);
	if (rc || !c->want)
		return rc;
	Etcdserverpb__LeaseGrantResponse m = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
	m.id = pb->id;
	m.ttl = pb->ttl;
	return finish(c, &m, store_wtxn_revision(c->w));
}

static int apply_lease_revoke(struct apply_ctx *c, const Etcdserverpb__LeaseRevokeRequest *pb)
{
	int64_t rev;
	int rc = store_lease_revoke(c->w, pb->id, &rev);
	if (rc || !c->want)
		return rc;
	Etcdserverpb__LeaseRevokeResponse m = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
	return finish(c, &m, rev);
}

/* etcd's alarmStore: GET lists the alarms of a type (all for NONE);
 * ACTIVATE adds (member, type) if missing; DEACTIVATE removes it. The
 * response lists the alarms read, or the one activated / deactivated. */
static int apply_alarm(struct apply_ctx *c, const Etcdserverpb__AlarmRequest *pb)
{
	struct srv_alarm *a;
	size_t n, pos = 0;
	int rc = alarms_get_w(c->w, &a, &n);
	if (rc)
		return rc;
	while (pos < n && alarm_cmp(&a[pos], pb->memberid, (int)pb->alarm) < 0)
		pos++;
	bool found = pos < n && alarm_cmp(&a[pos], pb->memberid, (int)pb->alarm) == 0;
	/* Which records of the (possibly updated) list the response shows. */
	size_t from = pos, to = pos + 1;
	switch (pb->action) {
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET:
		from = 0;
		to = n;
		break;
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE:
		if (!found) {
			struct srv_alarm *b = realloc(a, (n + 1) * sizeof(*a));
			if (!b) {
				rc = CAIRN_ENOMEM;
				break;
			}
			a = b;
			memmove(a + pos + 1, a + pos, (n - pos) * sizeof(*a));
			a[pos] = (struct srv_alarm){pb->memberid, (int)pb->alarm};
			n++;
			rc = alarms_put_w(c->w, a, n);
		}
		break;
	case ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE:
		if (found) {
			struct srv_alarm gone = a[pos];
			memmove(a + pos, a + pos + 1, (n - pos - 1) * sizeof(*a));
			rc = alarms_put_w(c->w, a, n - 1);
			a[n - 1] = gone; /* shown in the response */
			from = n - 1;
			to = n;
		} else {
			to = from;
		}
		break;
	default:
		to = from;
		break;
	}
	if (!rc && c->want) {
		Etcdserverpb__AlarmResponse m = ETCDSERVERPB__ALARM_RESPONSE__INIT;
		size_t cnt = 0;
		Etcdserverpb__AlarmMember **ptrs =
		    srv_arena_alloc(&c->arena, to - from, sizeof(*ptrs));
		Etcdserverpb__AlarmMember *ms = srv_arena_alloc(&c->arena, to - from, sizeof(*ms));
		if (!ptrs || !ms)
			rc = CAIRN_ENOMEM;
		for (size_t i = from; i < to && !rc; i++) {
			if (pb->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET &&
			    pb->alarm != ETCDSERVERPB__ALARM_TYPE__NONE &&
			    a[i].type != (int)pb->alarm)
				continue;
			ms[cnt] = (Etcdserverpb__AlarmMember)ETCDSERVERPB__ALARM_MEMBER__INIT;
			ms[cnt].memberid = a[i].member_id;
			ms[cnt].alarm = (Etcdserverpb__AlarmType)a[i].type;
			ptrs[cnt] = &ms[cnt];
			cnt++;
		}
		m.alarms = ptrs;
		m.n_alarms = cnt;
		if (!rc)
			rc = finish(c, &m, store_wtxn_revision(c->w));
	}
	free(a);
	return rc;
}

/* Exactly one request must be set; an entry carrying only lease_extend_ms
 * is the member's (it has no store effect) and applies as a no-op. */
static int dispatch(struct apply_ctx *c, const Cairnpb__InternalRequest *req)
{
	int set = !!req->put + !!req->delete_range + !!req->txn + !!req->compaction +
	          !!req->lease_grant + !!req->lease_revoke + !!req->alarm;
	if (set == 0 && req->lease_extend_ms != 0)
		return 0;
	if (set != 1)
		return CAIRN_EPROTO;
	if (req->put)
		return apply_put(c, req->put);
	if (req->delete_range)
		return apply_delete(c, req->delete_range);
	if (req->txn)
		return apply_txn(c, req->txn);
	if (req->compaction)
		return apply_compaction(c, req->compaction);
	if (req->lease_grant)
		return apply_lease_grant(c, req->lease_grant);
	if (req->lease_revoke)
		return apply_lease_revoke(c, req->lease_revoke);
	return apply_alarm(c, req->alarm);
}

int srv_apply_entry(struct store_wtxn *w, const struct srv_header *hdr, const uint8_t *data,
                    size_t len, bool want_response, struct srv_apply_result *out)
{
	*out = (struct srv_apply_result){0};
	Cairnpb__InternalRequest *req = cairnpb__internal_request__unpack(NULL, len, data);
	if (!req) {
		out->err = CAIRN_EPROTO;
		out->revision = store_wtxn_revision(w);
		return 0;
	}
	out->id = req->id;
	uint8_t stack[ARENA_STACK];
	struct apply_ctx c = {.w = w, .hdr = hdr, .want = want_response, .out = out};
	srv_arena_init(&c.arena, stack, sizeof(stack));
	int rc = dispatch(&c, req);
	srv_arena_free(&c.arena);
	cairnpb__internal_request__free_unpacked(req, NULL);
	out->revision = store_wtxn_revision(w);
	if (rc && out->resp) {
		free(out->resp);
		out->resp = NULL;
		out->resp_len = 0;
	}
	if (fatal(rc))
		return rc;
	out->err = rc;
	/* Only a quota-checked write the store refused for space raises the
	 * alarm: not one refused because the alarm is already up, nor an alarm
	 * record that did not fit (that would loop proposing the alarm). */
	out->nospace = rc == CAIRN_ENOSPACE && c.quota && !c.capped;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Range                                                                      */

int srv_range(struct store_rtxn *r, const struct srv_header *hdr,
              const Etcdserverpb__RangeRequest *req, uint8_t **out, size_t *out_len)
{
	struct store_range_req sreq;
	struct store_range_resp resp;
	*out = NULL;
	*out_len = 0;
	srv_conv_range_req(req, &sreq);
	int rc = store_range(r, &sreq, &resp);
	if (rc)
		return rc;
	uint8_t stack[ARENA_STACK];
	struct srv_arena a;
	srv_arena_init(&a, stack, sizeof(stack));
	Etcdserverpb__RangeResponse *m = srv_conv_range_resp(&a, &resp);
	if (m) {
		srv_header_to_pb(hdr, resp.revision, m->header);
		rc = srv_conv_pack(&m->base, out, out_len);
	} else {
		rc = CAIRN_ENOMEM;
	}
	srv_arena_free(&a);
	store_range_resp_free(&resp);
	return rc;
}
