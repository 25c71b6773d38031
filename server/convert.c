/*
 * convert.c — etcd protobuf messages <-> store requests and responses.
 *
 * Everything here borrows: a converted request points into the protobuf
 * message it came from, a converted response into the store response. The
 * structs themselves come from a per-request arena, so one request costs a
 * handful of allocations whatever its shape, and every error path frees
 * everything with one srv_arena_free().
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "server/apply_int.h"

/* ------------------------------------------------------------------------ */
/* Arena                                                                      */

struct srv_arena_chunk {
	struct srv_arena_chunk *next;
	size_t cap;
	alignas(max_align_t) uint8_t data[];
};

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_CHUNK 4096u
/* Chunks double up to this size: a batch of a thousand entries takes a
 * handful of mallocs, not hundreds. */
#define ARENA_CHUNK_MAX (1u << 20)

void srv_arena_init(struct srv_arena *a, void *buf, size_t len)
{
	uintptr_t p = (uintptr_t)buf;
	size_t pad = (ARENA_ALIGN - p % ARENA_ALIGN) % ARENA_ALIGN;
	a->chunks = NULL;
	a->next_cap = 0;
	a->cur = buf ? (uint8_t *)buf + (pad < len ? pad : len) : NULL;
	a->left = buf && pad < len ? len - pad : 0;
}

void *srv_arena_alloc(struct srv_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size / 2)
		return NULL;
	size_t bytes = n * size;
	bytes = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
	if (bytes == 0)
		bytes = ARENA_ALIGN;
	if (bytes > a->left) {
		size_t want = a->next_cap ? a->next_cap : ARENA_CHUNK;
		size_t cap = bytes > want ? bytes : want;
		struct srv_arena_chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		if (want < ARENA_CHUNK_MAX)
			a->next_cap = want * 2;
		c->cap = cap;
		c->next = a->chunks;
		a->chunks = c;
		a->cur = c->data;
		a->left = cap;
	}
	void *p = a->cur;
	a->cur += bytes;
	a->left -= bytes;
	memset(p, 0, bytes);
	return p;
}

void srv_arena_free(struct srv_arena *a)
{
	while (a->chunks) {
		struct srv_arena_chunk *c = a->chunks;
		a->chunks = c->next;
		free(c);
	}
	a->cur = NULL;
	a->left = 0;
	a->next_cap = 0;
}

void srv_arena_rewind(struct srv_arena *a)
{
	struct srv_arena_chunk *keep = a->chunks;
	if (!keep) {
		srv_arena_free(a);
		return;
	}
	while (keep->next) {
		struct srv_arena_chunk *c = keep->next;
		keep->next = c->next;
		free(c);
	}
	if (keep->cap > ARENA_CHUNK_MAX) {
		/* one outsized entry: do not hold on to its memory */
		srv_arena_free(a);
		return;
	}
	a->cur = keep->data;
	a->left = keep->cap;
}

/* ------------------------------------------------------------------------ */
/* Public helpers shared with the watch hub                                   */

void srv_kv_to_pb(const struct store_kv *kv, Mvccpb__KeyValue *pb)
{
	*pb = (Mvccpb__KeyValue)MVCCPB__KEY_VALUE__INIT;
	/* protobuf-c types bytes as non-const; packing only reads them. */
	pb->key.data = (uint8_t *)kv->key;
	pb->key.len = kv->key_len;
	pb->value.data = (uint8_t *)kv->value;
	pb->value.len = kv->value_len;
	pb->create_revision = kv->create_revision;
	pb->mod_revision = kv->mod_revision;
	pb->version = kv->version;
	pb->lease = kv->lease;
}

void srv_header_to_pb(const struct srv_header *h, int64_t revision,
                      Etcdserverpb__ResponseHeader *pb)
{
	*pb = (Etcdserverpb__ResponseHeader)ETCDSERVERPB__RESPONSE_HEADER__INIT;
	pb->cluster_id = h->cluster_id;
	pb->member_id = h->member_id;
	pb->raft_term = h->raft_term;
	pb->revision = revision;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                   */

void srv_conv_range_req(const Etcdserverpb__RangeRequest *pb, struct store_range_req *out)
{
	*out = (struct store_range_req){
	    .key = pb->key.data,
	    .key_len = pb->key.len,
	    .range_end = pb->range_end.data,
	    .range_end_len = pb->range_end.len,
	    .revision = pb->revision,
	    .limit = pb->limit,
	    /* Same numbering as the store's enums; the store rejects others. */
	    .sort_order = (enum store_sort_order)pb->sort_order,
	    .sort_target = (enum store_sort_target)pb->sort_target,
	    .keys_only = pb->keys_only,
	    .count_only = pb->count_only,
	    .min_mod_revision = pb->min_mod_revision,
	    .max_mod_revision = pb->max_mod_revision,
	    .min_create_revision = pb->min_create_revision,
	    .max_create_revision = pb->max_create_revision,
	};
}

void srv_conv_put_req(const Etcdserverpb__PutRequest *pb, struct store_put_req *out)
{
	*out = (struct store_put_req){
	    .key = pb->key.data,
	    .key_len = pb->key.len,
	    .value = pb->value.data,
	    .value_len = pb->value.len,
	    .lease = pb->lease,
	    .prev_kv = pb->prev_kv,
	    .ignore_value = pb->ignore_value,
	    .ignore_lease = pb->ignore_lease,
	};
}

void srv_conv_delete_req(const Etcdserverpb__DeleteRangeRequest *pb, struct store_delete_req *out)
{
	*out = (struct store_delete_req){
	    .key = pb->key.data,
	    .key_len = pb->key.len,
	    .range_end = pb->range_end.data,
	    .range_end_len = pb->range_end.len,
	    .prev_kv = pb->prev_kv,
	};
}

/* etcd reads the operand from the oneof only when its case matches the
 * target (applyCompare's type assertions); otherwise it compares with 0 or
 * an empty value. */
static void conv_compare(const Etcdserverpb__Compare *pb, struct store_compare *out)
{
	*out = (struct store_compare){
	    .result = (enum store_cmp_result)pb->result,
	    .target = (enum store_cmp_target)pb->target,
	    .key = pb->key.data,
	    .key_len = pb->key.len,
	    .range_end = pb->range_end.data,
	    .range_end_len = pb->range_end.len,
	};
	switch (pb->target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		if (pb->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION)
			out->number = pb->version;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		if (pb->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
			out->number = pb->create_revision;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		if (pb->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION)
			out->number = pb->mod_revision;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		if (pb->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE)
			out->number = pb->lease;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE:
		if (pb->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) {
			out->value = pb->value.data;
			out->value_len = pb->value.len;
		}
		break;
	default:
		break;
	}
}

static int conv_ops(struct srv_arena *a, Etcdserverpb__RequestOp *const *pb, size_t n,
                    const struct store_op **out)
{
	struct store_op *ops = srv_arena_alloc(a, n, sizeof(*ops));
	if (!ops)
		return CAIRN_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const Etcdserverpb__RequestOp *op = pb[i];
		switch (op->request_case) {
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
			ops[i].type = STORE_OP_RANGE;
			srv_conv_range_req(op->request_range, &ops[i].u.range);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
			ops[i].type = STORE_OP_PUT;
			srv_conv_put_req(op->request_put, &ops[i].u.put);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
			ops[i].type = STORE_OP_DELETE;
			srv_conv_delete_req(op->request_delete_range, &ops[i].u.del);
			break;
		case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
			struct store_txn_req *t = srv_arena_alloc(a, 1, sizeof(*t));
			if (!t)
				return CAIRN_ENOMEM;
			int rc = srv_conv_txn_req(a, op->request_txn, t);
			if (rc)
				return rc;
			ops[i].type = STORE_OP_TXN;
			ops[i].u.txn = t;
			break;
		}
		default:
			return CAIRN_EKEYNOTFOUND;
		}
	}
	*out = ops;
	return 0;
}

int srv_conv_txn_req(struct srv_arena *a, const Etcdserverpb__TxnRequest *pb,
                     struct store_txn_req *out)
{
	*out = (struct store_txn_req){0};
	struct store_compare *cmps = srv_arena_alloc(a, pb->n_compare, sizeof(*cmps));
	if (!cmps)
		return CAIRN_ENOMEM;
	for (size_t i = 0; i < pb->n_compare; i++)
		conv_compare(pb->compare[i], &cmps[i]);
	out->compares = cmps;
	out->n_compares = pb->n_compare;
	int rc = conv_ops(a, pb->success, pb->n_success, &out->success);
	if (rc)
		return rc;
	out->n_success = pb->n_success;
	rc = conv_ops(a, pb->failure, pb->n_failure, &out->failure);
	if (rc)
		return rc;
	out->n_failure = pb->n_failure;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                  */

/* etcd gives the responses inside a txn a header holding only the revision. */
static Etcdserverpb__ResponseHeader *nested_header(struct srv_arena *a, int64_t revision)
{
	Etcdserverpb__ResponseHeader *h = srv_arena_alloc(a, 1, sizeof(*h));
	if (!h)
		return NULL;
	*h = (Etcdserverpb__ResponseHeader)ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h->revision = revision;
	return h;
}

/* An array of n KeyValue pointers with their structs, borrowing kvs. */
static Mvccpb__KeyValue **conv_kvs(struct srv_arena *a, const struct store_kv *kvs, size_t n)
{
	Mvccpb__KeyValue **ptrs = srv_arena_alloc(a, n, sizeof(*ptrs));
	Mvccpb__KeyValue *pbs = srv_arena_alloc(a, n, sizeof(*pbs));
	if (!ptrs || !pbs)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		srv_kv_to_pb(&kvs[i], &pbs[i]);
		ptrs[i] = &pbs[i];
	}
	return ptrs;
}

Etcdserverpb__RangeResponse *srv_conv_range_resp(struct srv_arena *a,
                                                 const struct store_range_resp *r)
{
	Etcdserverpb__RangeResponse *pb = srv_arena_alloc(a, 1, sizeof(*pb));
	if (!pb)
		return NULL;
	*pb = (Etcdserverpb__RangeResponse)ETCDSERVERPB__RANGE_RESPONSE__INIT;
	pb->header = nested_header(a, r->revision);
	pb->kvs = conv_kvs(a, r->kvs, r->n_kvs);
	if (!pb->header || !pb->kvs)
		return NULL;
	pb->n_kvs = r->n_kvs;
	pb->more = r->more;
	pb->count = r->count;
	return pb;
}

Etcdserverpb__PutResponse *srv_conv_put_resp(struct srv_arena *a, const struct store_put_resp *r)
{
	Etcdserverpb__PutResponse *pb = srv_arena_alloc(a, 1, sizeof(*pb));
	if (!pb)
		return NULL;
	*pb = (Etcdserverpb__PutResponse)ETCDSERVERPB__PUT_RESPONSE__INIT;
	pb->header = nested_header(a, r->revision);
	if (!pb->header)
		return NULL;
	if (r->has_prev) {
		Mvccpb__KeyValue **prev = conv_kvs(a, &r->prev_kv, 1);
		if (!prev)
			return NULL;
		pb->prev_kv = prev[0];
	}
	return pb;
}

Etcdserverpb__DeleteRangeResponse *srv_conv_delete_resp(struct srv_arena *a,
                                                        const struct store_delete_resp *r)
{
	Etcdserverpb__DeleteRangeResponse *pb = srv_arena_alloc(a, 1, sizeof(*pb));
	if (!pb)
		return NULL;
	*pb = (Etcdserverpb__DeleteRangeResponse)ETCDSERVERPB__DELETE_RANGE_RESPONSE__INIT;
	pb->header = nested_header(a, r->revision);
	pb->prev_kvs = conv_kvs(a, r->prev_kvs, r->n_prev_kvs);
	if (!pb->header || !pb->prev_kvs)
		return NULL;
	pb->n_prev_kvs = r->n_prev_kvs;
	pb->deleted = r->deleted;
	return pb;
}

static int conv_op_resp(struct srv_arena *a, const struct store_op_resp *r,
                        Etcdserverpb__ResponseOp *pb)
{
	*pb = (Etcdserverpb__ResponseOp)ETCDSERVERPB__RESPONSE_OP__INIT;
	void *msg = NULL;
	switch (r->type) {
	case STORE_OP_RANGE:
		pb->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
		msg = pb->response_range = srv_conv_range_resp(a, &r->u.range);
		break;
	case STORE_OP_PUT:
		pb->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
		msg = pb->response_put = srv_conv_put_resp(a, &r->u.put);
		break;
	case STORE_OP_DELETE:
		pb->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
		msg = pb->response_delete_range = srv_conv_delete_resp(a, &r->u.del);
		break;
	case STORE_OP_TXN:
		pb->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
		msg = pb->response_txn = srv_conv_txn_resp(a, r->u.txn);
		break;
	}
	return msg ? 0 : CAIRN_ENOMEM;
}

Etcdserverpb__TxnResponse *srv_conv_txn_resp(struct srv_arena *a, const struct store_txn_resp *r)
{
	Etcdserverpb__TxnResponse *pb = srv_arena_alloc(a, 1, sizeof(*pb));
	Etcdserverpb__ResponseOp **ptrs = srv_arena_alloc(a, r->n_responses, sizeof(*ptrs));
	Etcdserverpb__ResponseOp *ops = srv_arena_alloc(a, r->n_responses, sizeof(*ops));
	if (!pb || !ptrs || !ops)
		return NULL;
	*pb = (Etcdserverpb__TxnResponse)ETCDSERVERPB__TXN_RESPONSE__INIT;
	/* etcd leaves a nested txn's header empty (revision 0; checked against
	 * etcd 3.4.23); the top-level one is overwritten by the caller. */
	pb->header = nested_header(a, 0);
	if (!pb->header)
		return NULL;
	for (size_t i = 0; i < r->n_responses; i++) {
		if (conv_op_resp(a, &r->responses[i], &ops[i]))
			return NULL;
		ptrs[i] = &ops[i];
	}
	pb->succeeded = r->succeeded;
	pb->responses = ptrs;
	pb->n_responses = r->n_responses;
	return pb;
}

int srv_conv_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	/* malloc(0) may return NULL: an empty message still gets a buffer. */
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return CAIRN_ENOMEM;
	*out_len = protobuf_c_message_pack(msg, buf);
	*out = buf;
	return 0;
}
