/*
 * test_apply.c — server/apply.h on a real store: InternalRequests are built
 * and packed with protobuf-c, applied with srv_apply_entry in a wtxn, and the
 * packed etcd responses decoded and checked; the pre-raft checks and the
 * gRPC error mapping against etcd's messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rpc/rpc.h"
#include "server/apply.h"
#include "tests/store_test_util.h"

#define BIN(str) ((ProtobufCBinaryData){strlen(str), (uint8_t *)(str)})
#define FROM_KEY ((ProtobufCBinaryData){1, (uint8_t *)""})

static const struct srv_header H = {.cluster_id = 11, .member_id = 22, .raft_term = 3};

struct fx {
	char *dir;
	struct store *s;
};

static int open_fx(void **state, uint64_t quota)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tu_tmpdir();
	struct store_config cfg = {
	    .dir = f->dir, .nosync = true, .map_size = 256u << 20, .quota_bytes = quota};
	if (!f->dir || store_open(&cfg, &f->s) != 0)
		return -1;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return open_fx(state, 128u << 20);
}

static int setup_small(void **state)
{
	return open_fx(state, 1u << 20);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char msg[256] = "";
	assert_int_equal(store_check(f->s, msg, sizeof(msg)), 0);
	store_close(f->s);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

#define S (((struct fx *)*state)->s)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */

static uint8_t *pack_req(const Cairnpb__InternalRequest *req, size_t *len)
{
	*len = cairnpb__internal_request__get_packed_size(req);
	uint8_t *buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	cairnpb__internal_request__pack(req, buf);
	return buf;
}

/* Applies one request in a batch of its own. */
static struct srv_apply_result apply_in(struct store_wtxn *w, Cairnpb__InternalRequest *req,
                                        bool want)
{
	size_t len;
	uint8_t *buf = pack_req(req, &len);
	struct srv_apply_result r;
	assert_int_equal(srv_apply_entry(w, &H, buf, len, want, &r), 0);
	free(buf);
	assert_int_equal(r.id, req->id);
	if (r.err || !want)
		assert_null(r.resp);
	else
		assert_non_null(r.resp);
	return r;
}

static struct srv_apply_result apply(struct store *s, Cairnpb__InternalRequest *req)
{
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	struct srv_apply_result r = apply_in(w, req, true);
	assert_int_equal(store_wtxn_commit(w), 0);
	return r;
}

/* Applies and returns only the error (the response, if any, is dropped). */
static int apply_err(struct store *s, Cairnpb__InternalRequest *req)
{
	struct srv_apply_result r = apply(s, req);
	free(r.resp);
	return r.err;
}

static void check_header(const Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	assert_non_null(h);
	assert_int_equal(h->cluster_id, H.cluster_id);
	assert_int_equal(h->member_id, H.member_id);
	assert_int_equal(h->raft_term, H.raft_term);
	assert_int_equal(h->revision, rev);
}

static void assert_bytes(ProtobufCBinaryData b, const char *want)
{
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data, want, b.len);
}

static int put_full(struct store *s, Etcdserverpb__PutRequest *p, Etcdserverpb__PutResponse **out)
{
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	req.id = 42;
	req.put = p;
	struct srv_apply_result r = apply(s, &req);
	if (r.err)
		return r.err;
	Etcdserverpb__PutResponse *m = etcdserverpb__put_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_non_null(m);
	check_header(m->header, r.revision);
	if (out)
		*out = m;
	else
		etcdserverpb__put_response__free_unpacked(m, NULL);
	return 0;
}

static int put(struct store *s, const char *k, const char *v)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN(k);
	p.value = BIN(v);
	return put_full(s, &p, NULL);
}

static int range_full(struct store *s, Etcdserverpb__RangeRequest *q,
                      Etcdserverpb__RangeResponse **out)
{
	struct store_rtxn *r;
	uint8_t *buf;
	size_t len;
	assert_int_equal(store_rtxn_begin(s, &r), 0);
	int rc = srv_range(r, &H, q, &buf, &len);
	int64_t rev = store_rtxn_revision(r);
	store_rtxn_end(r);
	if (rc) {
		assert_null(buf);
		return rc;
	}
	*out = etcdserverpb__range_response__unpack(NULL, len, buf);
	free(buf);
	assert_non_null(*out);
	check_header((*out)->header, rev);
	return 0;
}

/* Value of key k at rev (0: current); NULL-terminated copy in buf, or the
 * error / CAIRN_ENOTFOUND. */
static int get(struct store *s, const char *k, int64_t rev, char *buf, size_t cap)
{
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *m;
	q.key = BIN(k);
	q.revision = rev;
	int rc = range_full(s, &q, &m);
	if (rc)
		return rc;
	rc = CAIRN_ENOTFOUND;
	if (m->n_kvs == 1) {
		assert_true(m->kvs[0]->value.len < cap);
		memcpy(buf, m->kvs[0]->value.data, m->kvs[0]->value.len);
		buf[m->kvs[0]->value.len] = 0;
		rc = 0;
	}
	etcdserverpb__range_response__free_unpacked(m, NULL);
	return rc;
}

static void expect_val(struct store *s, const char *k, const char *want)
{
	char buf[256];
	int rc = get(s, k, 0, buf, sizeof(buf));
	if (!want) {
		assert_int_equal(rc, CAIRN_ENOTFOUND);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(buf, want);
}

static int64_t cur_rev(struct store *s)
{
	struct store_rtxn *r;
	assert_int_equal(store_rtxn_begin(s, &r), 0);
	int64_t rev = store_rtxn_revision(r);
	store_rtxn_end(r);
	return rev;
}

static void expect_grpc(int err, int status, const char *msg)
{
	int st;
	const char *m;
	srv_grpc_error(err, &st, &m);
	assert_int_equal(st, status);
	assert_string_equal(m, msg);
}

/* RequestOps live in caller-provided storage so tests build txns on the stack. */
static Etcdserverpb__RequestOp op_put(Etcdserverpb__PutRequest *p, const char *k, const char *v)
{
	*p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	p->key = BIN(k);
	p->value = BIN(v);
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op.request_put = p;
	return op;
}

static Etcdserverpb__RequestOp op_del(Etcdserverpb__DeleteRangeRequest *d, const char *k,
                                      ProtobufCBinaryData end)
{
	*d = (Etcdserverpb__DeleteRangeRequest)ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d->key = BIN(k);
	d->range_end = end;
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	op.request_delete_range = d;
	return op;
}

static Etcdserverpb__RequestOp op_range(Etcdserverpb__RangeRequest *q, const char *k)
{
	*q = (Etcdserverpb__RangeRequest)ETCDSERVERPB__RANGE_REQUEST__INIT;
	q->key = BIN(k);
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	op.request_range = q;
	return op;
}

static Etcdserverpb__RequestOp op_txn(Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	op.request_txn = t;
	return op;
}

static int apply_txn(struct store *s, Etcdserverpb__TxnRequest *t, Etcdserverpb__TxnResponse **out)
{
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	req.txn = t;
	struct srv_apply_result r = apply(s, &req);
	if (r.err)
		return r.err;
	*out = etcdserverpb__txn_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_non_null(*out);
	check_header((*out)->header, r.revision);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Errors and checks                                                          */

static void test_grpc_error_messages(void **state)
{
	(void)state;
	expect_grpc(CAIRN_EKEYEMPTY, RPC_INVALID_ARGUMENT, "etcdserver: key is not provided");
	expect_grpc(CAIRN_EKEYNOTFOUND, RPC_INVALID_ARGUMENT, "etcdserver: key not found");
	expect_grpc(CAIRN_EVALUEPROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: value is provided");
	expect_grpc(CAIRN_ELEASEPROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: lease is provided");
	expect_grpc(CAIRN_ETOOMANYOPS, RPC_INVALID_ARGUMENT,
	            "etcdserver: too many operations in txn request");
	expect_grpc(CAIRN_EDUPKEY, RPC_INVALID_ARGUMENT,
	            "etcdserver: duplicate key given in txn request");
	expect_grpc(CAIRN_ECOMPACTED, RPC_OUT_OF_RANGE,
	            "etcdserver: mvcc: required revision has been compacted");
	expect_grpc(CAIRN_EFUTUREREV, RPC_OUT_OF_RANGE,
	            "etcdserver: mvcc: required revision is a future revision");
	expect_grpc(CAIRN_ELEASETTLTOOLARGE, RPC_OUT_OF_RANGE, "etcdserver: too large lease TTL");
	expect_grpc(CAIRN_ENOSPACE, RPC_RESOURCE_EXHAUSTED,
	            "etcdserver: mvcc: database space exceeded");
	expect_grpc(CAIRN_ELEASENOTFOUND, RPC_NOT_FOUND, "etcdserver: requested lease not found");
	expect_grpc(CAIRN_ELEASEEXIST, RPC_FAILED_PRECONDITION, "etcdserver: lease already exists");
	expect_grpc(CAIRN_EVALUETOOLARGE, RPC_INVALID_ARGUMENT, "etcdserver: request is too large");
	expect_grpc(CAIRN_EKEYTOOLARGE, RPC_INVALID_ARGUMENT, "etcdserver: key is too large");
	expect_grpc(CAIRN_ENOLEADER, RPC_UNAVAILABLE, "etcdserver: no leader");
	expect_grpc(CAIRN_ELEADERCHANGED, RPC_UNAVAILABLE, "etcdserver: leader changed");
	expect_grpc(CAIRN_ETIMEOUT, RPC_UNAVAILABLE, "etcdserver: request timed out");
	expect_grpc(CAIRN_ENOTLEADER, RPC_FAILED_PRECONDITION, "etcdserver: not leader");
	expect_grpc(CAIRN_ESTOPPED, RPC_UNAVAILABLE, "etcdserver: server stopped");
	expect_grpc(0, RPC_OK, "");
	expect_grpc(CAIRN_EADDR, RPC_UNKNOWN, cairn_strerror(CAIRN_EADDR));
	expect_grpc(-12345, RPC_UNKNOWN, "unknown error");
}

static void test_kv_and_header_to_pb(void **state)
{
	(void)state;
	struct store_kv kv = {B("key"), 3, B("value"), 5, 4, 9, 2, 77};
	Mvccpb__KeyValue pb;
	srv_kv_to_pb(&kv, &pb);
	assert_ptr_equal(pb.key.data, kv.key); /* borrowed, not copied */
	assert_bytes(pb.key, "key");
	assert_bytes(pb.value, "value");
	assert_int_equal(pb.create_revision, 4);
	assert_int_equal(pb.mod_revision, 9);
	assert_int_equal(pb.version, 2);
	assert_int_equal(pb.lease, 77);
	Etcdserverpb__ResponseHeader h;
	srv_header_to_pb(&H, 123, &h);
	check_header(&h, 123);
	assert_int_equal(etcdserverpb__response_header__get_packed_size(&h) > 0, 1);
}

static void test_check_single_requests(void **state)
{
	(void)state;
	struct srv_limits lim = {.max_request_bytes = 64, .max_txn_ops = 4};
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	assert_int_equal(srv_check_range(&q), CAIRN_EKEYEMPTY);
	q.key = BIN("a");
	assert_int_equal(srv_check_range(&q), 0);

	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	assert_int_equal(srv_check_delete(&d), CAIRN_EKEYEMPTY);
	d.key = BIN("a");
	assert_int_equal(srv_check_delete(&d), 0);

	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	assert_int_equal(srv_check_put(&p, &lim), CAIRN_EKEYEMPTY);
	p.key = BIN("a");
	p.value = BIN("v");
	assert_int_equal(srv_check_put(&p, &lim), 0);
	assert_int_equal(srv_check_put(&p, NULL), 0); /* NULL: etcd defaults */
	p.ignore_value = true;
	assert_int_equal(srv_check_put(&p, &lim), CAIRN_EVALUEPROVIDED);
	p.value = BIN("");
	assert_int_equal(srv_check_put(&p, &lim), 0);
	p.ignore_lease = true;
	p.lease = 5;
	assert_int_equal(srv_check_put(&p, &lim), CAIRN_ELEASEPROVIDED);
	p.lease = 0;
	assert_int_equal(srv_check_put(&p, &lim), 0);

	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN("k");
	p.value = BIN(big + sizeof(big) - 64); /* 63 bytes + key + framing > 64 */
	assert_int_equal(srv_check_put(&p, &lim), CAIRN_EVALUETOOLARGE);
	p.value = BIN(big);
	assert_int_equal(srv_check_put(&p, NULL), 0);
	p.key = BIN(big); /* 599 > 511 */
	assert_int_equal(srv_check_put(&p, NULL), CAIRN_EKEYTOOLARGE);
}

static void test_check_txn_ops(void **state)
{
	(void)state;
	struct srv_limits lim = {.max_request_bytes = 1 << 20, .max_txn_ops = 4};
	Etcdserverpb__PutRequest p[8];
	Etcdserverpb__RequestOp ops[8], *opp[8];
	const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
	for (int i = 0; i < 8; i++) {
		ops[i] = op_put(&p[i], keys[i], "v");
		opp[i] = &ops[i];
	}
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = opp;
	t.n_success = 4;
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	t.n_success = 5;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_ETOOMANYOPS);
	t.n_success = 0;
	t.failure = opp;
	t.n_failure = 5;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_ETOOMANYOPS);

	/* Compares count too, and their keys must be set. */
	Etcdserverpb__Compare c[5], *cp[5];
	for (int i = 0; i < 5; i++) {
		c[i] = (Etcdserverpb__Compare)ETCDSERVERPB__COMPARE__INIT;
		c[i].key = BIN(keys[i]);
		cp[i] = &c[i];
	}
	t = (Etcdserverpb__TxnRequest)ETCDSERVERPB__TXN_REQUEST__INIT;
	t.compare = cp;
	t.n_compare = 5;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_ETOOMANYOPS);
	t.n_compare = 2;
	c[1].key = BIN("");
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EKEYEMPTY);

	/* A nested txn gets the parent's leftover budget: 4 - 2 = 2. */
	Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
	inner.success = &opp[4];
	inner.n_success = 3;
	Etcdserverpb__RequestOp nested[2] = {op_txn(&inner), ops[0]};
	Etcdserverpb__RequestOp *np[2] = {&nested[0], &nested[1]};
	t = (Etcdserverpb__TxnRequest)ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = np;
	t.n_success = 2;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_ETOOMANYOPS);
	inner.n_success = 2;
	assert_int_equal(srv_check_txn(&t, &lim), 0);

	/* Bad ops inside: empty key, empty op (etcd: "key not found"). */
	p[4].key = BIN("");
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EKEYEMPTY);
	p[4].key = BIN("e");
	Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
	np[1] = &empty;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EKEYNOTFOUND);

	/* Too large as a whole. */
	struct srv_limits small = {.max_request_bytes = 16, .max_txn_ops = 4};
	t = (Etcdserverpb__TxnRequest)ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = opp;
	t.n_success = 4;
	assert_int_equal(srv_check_txn(&t, &small), CAIRN_EVALUETOOLARGE);
}

static void test_check_txn_duplicate_keys(void **state)
{
	(void)state;
	struct srv_limits lim = {0};
	Etcdserverpb__PutRequest p[6];
	Etcdserverpb__DeleteRangeRequest d[4];
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp ops[6], *opp[6];
	for (int i = 0; i < 6; i++)
		opp[i] = &ops[i];
	t.success = opp;

	/* Same level: put twice, put inside a deleted range or key. */
	ops[0] = op_put(&p[0], "k", "1");
	ops[1] = op_put(&p[1], "k", "2");
	t.n_success = 2;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	ops[1] = op_put(&p[1], "l", "2");
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	ops[2] = op_del(&d[0], "a", BIN("m"));
	t.n_success = 3;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	ops[2] = op_del(&d[0], "l", BIN(""));
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	ops[2] = op_del(&d[0], "l0", BIN("z"));
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	/* etcd quirk kept: a from-key delete ("\0" end) collides with nothing. */
	ops[2] = op_del(&d[0], "a", FROM_KEY);
	assert_int_equal(srv_check_txn(&t, &lim), 0);

	/* The success and failure branches are checked separately. */
	t.failure = &opp[0];
	t.n_failure = 1;
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	t.n_failure = 0;

	/* Nested: then and else of one txn may share a key ... */
	Etcdserverpb__TxnRequest in1 = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__TxnRequest in2 = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp a[2], b[2], *ap[2] = {&a[0], &a[1]}, *bp[2] = {&b[0], &b[1]};
	a[0] = op_put(&p[2], "x", "then");
	b[0] = op_put(&p[3], "x", "else");
	in1.success = ap;
	in1.n_success = 1;
	in1.failure = bp;
	in1.n_failure = 1;
	ops[0] = op_txn(&in1);
	t.n_success = 1;
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	/* ... but not with the parent ... */
	ops[1] = op_put(&p[1], "x", "top");
	t.n_success = 2;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	/* ... nor with another nested txn. */
	in2.success = &bp[0];
	in2.n_success = 1;
	ops[1] = op_txn(&in2);
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	/* Nor twice within one branch. */
	a[1] = op_put(&p[4], "x", "again");
	in1.n_success = 2;
	t.n_success = 1;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	in1.n_success = 1;

	/* A nested put under a delete of the parent, or of an earlier nested
	 * txn, collides; under a later nested txn's delete it does not
	 * (etcd merges those deletes only after checking). */
	ops[1] = op_del(&d[1], "w", BIN("y"));
	t.n_success = 2;
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	Etcdserverpb__RequestOp c0, *cp0 = &c0;
	c0 = op_del(&d[2], "x", BIN(""));
	in2.success = &cp0;
	in2.n_success = 1;
	ops[0] = op_txn(&in2); /* deletes x */
	ops[1] = op_txn(&in1); /* puts x */
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	ops[0] = op_txn(&in1);
	ops[1] = op_txn(&in2);
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	/* The parent's own put is checked against every nested delete. */
	ops[2] = op_put(&p[5], "x", "top");
	t.n_success = 2;
	ops[0] = op_txn(&in2);
	ops[1] = ops[2];
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
}

/* A literal transcription of etcd's checkIntervals (maps and lists, linear
 * scans) as the reference for random txns. */
struct ref_key {
	const uint8_t *k;
	size_t l;
};
struct ref_del {
	struct ref_key b, e;
	bool point;
};
struct ref_set {
	struct ref_key puts[512];
	size_t np;
	struct ref_del dels[512];
	size_t nd;
};

static bool ref_eq(struct ref_key a, const uint8_t *k, size_t l)
{
	return a.l == l && memcmp(a.k, k, l) == 0;
}

static int ref_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al < bl ? -1 : al > bl);
}

static bool ref_has(const struct ref_set *s, const uint8_t *k, size_t l)
{
	for (size_t i = 0; i < s->np; i++)
		if (ref_eq(s->puts[i], k, l))
			return true;
	return false;
}

static bool ref_intersects(const struct ref_set *s, const uint8_t *k, size_t l)
{
	for (size_t i = 0; i < s->nd; i++) {
		const struct ref_del *d = &s->dels[i];
		if (d->point
		        ? ref_eq(d->b, k, l)
		        : ref_cmp(d->b.k, d->b.l, k, l) <= 0 && ref_cmp(k, l, d->e.k, d->e.l) < 0)
			return true;
	}
	return false;
}

static bool ref_check(Etcdserverpb__RequestOp **ops, size_t n, struct ref_set *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
			continue;
		Etcdserverpb__DeleteRangeRequest *d = ops[i]->request_delete_range;
		out->dels[out->nd++] = (struct ref_del){{d->key.data, d->key.len},
		                                        {d->range_end.data, d->range_end.len},
		                                        d->range_end.len == 0};
	}
	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			continue;
		Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
		struct ref_set *th = malloc(sizeof(*th)), *el = malloc(sizeof(*el));
		bool ok = ref_check(t->success, t->n_success, th) &&
		          ref_check(t->failure, t->n_failure, el);
		for (size_t j = 0; ok && j < th->np; j++) {
			struct ref_key k = th->puts[j];
			if (ref_has(out, k.k, k.l) || ref_intersects(out, k.k, k.l))
				ok = false;
			else
				out->puts[out->np++] = k;
		}
		for (size_t j = 0; ok && j < el->np; j++) {
			struct ref_key k = el->puts[j];
			bool in = ref_has(out, k.k, k.l);
			if ((in && !ref_has(th, k.k, k.l)) || ref_intersects(out, k.k, k.l))
				ok = false;
			else if (!in)
				out->puts[out->np++] = k;
		}
		for (size_t j = 0; ok && j < th->nd; j++)
			out->dels[out->nd++] = th->dels[j];
		for (size_t j = 0; ok && j < el->nd; j++)
			out->dels[out->nd++] = el->dels[j];
		free(th);
		free(el);
		if (!ok)
			return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
			continue;
		ProtobufCBinaryData k = ops[i]->request_put->key;
		if (ref_has(out, k.data, k.len) || ref_intersects(out, k.data, k.len))
			return false;
		out->puts[out->np++] = (struct ref_key){k.data, k.len};
	}
	return true;
}

/* Random txns over a tiny key space, so collisions are common. */
struct gen {
	unsigned seed;
	Etcdserverpb__RequestOp ops[64], *opp[64];
	Etcdserverpb__PutRequest puts[64];
	Etcdserverpb__DeleteRangeRequest dels[64];
	Etcdserverpb__TxnRequest txns[64];
	size_t n_ops, n_txns;
};

static const char *const gen_keys[] = {"a", "a\x01", "b", "ba", "c", "\x00"};
#define GEN_KEY(g, i)                                                                              \
	((ProtobufCBinaryData){(i) == 5 ? 1 : strlen(gen_keys[i]), (uint8_t *)gen_keys[i]})

static unsigned gen_next(struct gen *g, unsigned n)
{
	g->seed = g->seed * 1103515245u + 12345u;
	return (g->seed >> 16) % n;
}

static void gen_branch(struct gen *g, int depth, Etcdserverpb__RequestOp ***out, size_t *n_out)
{
	size_t n = gen_next(g, 4);
	if (g->n_ops + n > 64)
		n = 64 - g->n_ops;
	*out = &g->opp[g->n_ops];
	*n_out = n;
	size_t base = g->n_ops;
	g->n_ops += n;
	for (size_t i = base; i < base + n; i++) {
		unsigned kind = gen_next(g, depth > 0 && g->n_txns < 64 ? 3 : 2);
		g->opp[i] = &g->ops[i];
		if (kind == 0) {
			g->ops[i] = op_put(&g->puts[i], "", "v");
			g->puts[i].key = GEN_KEY(g, gen_next(g, 5));
		} else if (kind == 1) {
			unsigned r = gen_next(g, 3);
			g->ops[i] = op_del(&g->dels[i], "", BIN(""));
			g->dels[i].key = GEN_KEY(g, gen_next(g, 5));
			if (r == 1)
				g->dels[i].range_end = GEN_KEY(g, gen_next(g, 6));
			else if (r == 2)
				g->dels[i].range_end = FROM_KEY;
		} else {
			Etcdserverpb__TxnRequest *t = &g->txns[g->n_txns++];
			*t = (Etcdserverpb__TxnRequest)ETCDSERVERPB__TXN_REQUEST__INIT;
			gen_branch(g, depth - 1, &t->success, &t->n_success);
			gen_branch(g, depth - 1, &t->failure, &t->n_failure);
			g->ops[i] = op_txn(t);
		}
	}
}

static void test_check_txn_matches_etcd_reference(void **state)
{
	(void)state;
	struct srv_limits lim = {.max_txn_ops = 1000};
	int dups = 0;
	for (unsigned seed = 1; seed <= 5000; seed++) {
		struct gen *g = calloc(1, sizeof(*g));
		g->seed = seed;
		Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
		gen_branch(g, 3, &t.success, &t.n_success);
		gen_branch(g, 3, &t.failure, &t.n_failure);
		struct ref_set *r = malloc(sizeof(*r));
		bool ok =
		    ref_check(t.success, t.n_success, r) && ref_check(t.failure, t.n_failure, r);
		free(r);
		int rc = srv_check_txn(&t, &lim);
		if (rc != (ok ? 0 : CAIRN_EDUPKEY))
			fail_msg("seed %u: srv_check_txn %d, etcd's algorithm says %s", seed, rc,
			         ok ? "ok" : "duplicate");
		dups += !ok;
		free(g);
	}
	assert_true(dups > 250 && dups < 4750); /* both outcomes well exercised */
}

/* 10^5 ops in one request (what --max-request-bytes allows with nesting):
 * the check must stay O(n log n), not puts x deletes. */
static void test_check_txn_large_is_fast(void **state)
{
	(void)state;
	enum { N = 60000 };
	struct srv_limits lim = {.max_request_bytes = 64u << 20, .max_txn_ops = 2 * N + 1};
	char(*keys)[16] = malloc(2 * N * sizeof(*keys));
	char(*ends)[16] = malloc(N * sizeof(*ends));
	Etcdserverpb__PutRequest *p = malloc(N * sizeof(*p));
	Etcdserverpb__DeleteRangeRequest *d = malloc(N * sizeof(*d));
	Etcdserverpb__RequestOp *ops = malloc(2 * N * sizeof(*ops)),
	                        **opp = malloc(2 * N * sizeof(*opp));
	for (int i = 0; i < N; i++) {
		snprintf(keys[2 * i], 16, "p%06d", i);
		snprintf(keys[2 * i + 1], 16, "d%06d", i);
		snprintf(ends[i], 16, "d%06d0", i);
		ops[2 * i] = op_put(&p[i], keys[2 * i], "v");
		ops[2 * i + 1] = op_del(&d[i], keys[2 * i + 1], BIN(ends[i]));
		opp[2 * i] = &ops[2 * i];
		opp[2 * i + 1] = &ops[2 * i + 1];
	}
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = opp;
	t.n_success = 2 * N;
	assert_int_equal(srv_check_txn(&t, &lim), 0);
	p[N - 1].key = BIN("d000123"); /* inside [d000123, d0001230) */
	assert_int_equal(srv_check_txn(&t, &lim), CAIRN_EDUPKEY);
	free(keys);
	free(ends);
	free(p);
	free(d);
	free(ops);
	free(opp);
}

/* ------------------------------------------------------------------------ */
/* Put / Range / Delete                                                       */

static void test_put_prev_kv_and_range(void **state)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__PutResponse *m;
	p.key = BIN("a");
	p.value = BIN("1");
	p.prev_kv = true;
	assert_int_equal(put_full(S, &p, &m), 0);
	/* the first write: the empty store is at revision 1 */
	assert_int_equal(m->header->revision, 2);
	assert_null(m->prev_kv); /* key did not exist */
	etcdserverpb__put_response__free_unpacked(m, NULL);

	p.value = BIN("2");
	assert_int_equal(put_full(S, &p, &m), 0);
	assert_int_equal(m->header->revision, 3);
	assert_non_null(m->prev_kv);
	assert_bytes(m->prev_kv->key, "a");
	assert_bytes(m->prev_kv->value, "1");
	assert_int_equal(m->prev_kv->create_revision, 2);
	assert_int_equal(m->prev_kv->mod_revision, 2);
	assert_int_equal(m->prev_kv->version, 1);
	etcdserverpb__put_response__free_unpacked(m, NULL);

	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *r;
	q.key = BIN("a");
	assert_int_equal(range_full(S, &q, &r), 0);
	assert_int_equal(r->count, 1);
	assert_int_equal(r->n_kvs, 1);
	assert_false(r->more);
	assert_bytes(r->kvs[0]->value, "2");
	assert_int_equal(r->kvs[0]->create_revision, 2);
	assert_int_equal(r->kvs[0]->mod_revision, 3);
	assert_int_equal(r->kvs[0]->version, 2);
	etcdserverpb__range_response__free_unpacked(r, NULL);

	char buf[16];
	assert_int_equal(get(S, "a", 1, buf, sizeof(buf)), CAIRN_ENOTFOUND);
	assert_int_equal(get(S, "a", 2, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1");
	assert_int_equal(get(S, "a", 4, buf, sizeof(buf)), CAIRN_EFUTUREREV);
	Etcdserverpb__RangeRequest empty = ETCDSERVERPB__RANGE_REQUEST__INIT;
	uint8_t *out = (uint8_t *)&empty;
	size_t len = 1;
	struct store_rtxn *rt;
	assert_int_equal(store_rtxn_begin(S, &rt), 0);
	assert_int_equal(srv_range(rt, &H, &empty, &out, &len), CAIRN_EKEYEMPTY);
	store_rtxn_end(rt);
	assert_null(out);
}

static void test_range_options(void **state)
{
	const char *keys[] = {"k1", "k2", "k3", "k4", "z"};
	for (int i = 0; i < 5; i++)
		assert_int_equal(put(S, keys[i], keys[4 - i]), 0);
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *r;
	q.key = BIN("k");
	q.range_end = BIN("l");
	q.limit = 2;
	assert_int_equal(range_full(S, &q, &r), 0);
	assert_int_equal(r->count, 4);
	assert_int_equal(r->n_kvs, 2);
	assert_true(r->more);
	assert_bytes(r->kvs[0]->key, "k1");
	etcdserverpb__range_response__free_unpacked(r, NULL);

	q.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	q.keys_only = true;
	assert_int_equal(range_full(S, &q, &r), 0);
	assert_bytes(r->kvs[0]->key, "k4");
	assert_int_equal(r->kvs[0]->value.len, 0);
	etcdserverpb__range_response__free_unpacked(r, NULL);

	q = (Etcdserverpb__RangeRequest)ETCDSERVERPB__RANGE_REQUEST__INIT;
	q.key = BIN("\0");
	q.key.len = 1;
	q.range_end = FROM_KEY;
	q.count_only = true;
	assert_int_equal(range_full(S, &q, &r), 0);
	assert_int_equal(r->count, 5);
	assert_int_equal(r->n_kvs, 0);
	etcdserverpb__range_response__free_unpacked(r, NULL);

	q.count_only = false;
	q.min_mod_revision = 5;
	assert_int_equal(range_full(S, &q, &r), 0);
	assert_int_equal(r->count, 5);
	assert_int_equal(r->n_kvs, 2);
	etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void test_put_ignore_value_lease(void **state)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN("a");
	p.ignore_value = true;
	assert_int_equal(put_full(S, &p, NULL), CAIRN_EKEYNOTFOUND);
	assert_int_equal(cur_rev(S), 1);
	assert_int_equal(put(S, "a", "keep"), 0);
	assert_int_equal(put_full(S, &p, NULL), 0);
	expect_val(S, "a", "keep");
	/* The store checks too, should a bad request reach apply. */
	p.value = BIN("x");
	assert_int_equal(put_full(S, &p, NULL), CAIRN_EVALUEPROVIDED);
	p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN("b");
	p.ignore_lease = true;
	assert_int_equal(put_full(S, &p, NULL), CAIRN_EKEYNOTFOUND);
	p.key = BIN("a");
	p.value = BIN("new");
	assert_int_equal(put_full(S, &p, NULL), 0);
	expect_val(S, "a", "new");
	assert_int_equal(cur_rev(S), 4);
	p.key = BIN("");
	assert_int_equal(put_full(S, &p, NULL), CAIRN_EKEYEMPTY);
	assert_int_equal(cur_rev(S), 4);
}

static void test_delete_prev_kv(void **state)
{
	assert_int_equal(put(S, "a", "1"), 0);
	assert_int_equal(put(S, "b", "2"), 0);
	assert_int_equal(put(S, "c", "3"), 0);
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	d.key = BIN("a");
	d.range_end = BIN("c");
	d.prev_kv = true;
	req.delete_range = &d;
	req.id = 7;
	struct srv_apply_result r = apply(S, &req);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.revision, 5);
	Etcdserverpb__DeleteRangeResponse *m =
	    etcdserverpb__delete_range_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_non_null(m);
	check_header(m->header, 5);
	assert_int_equal(m->deleted, 2);
	assert_int_equal(m->n_prev_kvs, 2);
	assert_bytes(m->prev_kvs[0]->key, "a");
	assert_bytes(m->prev_kvs[1]->value, "2");
	etcdserverpb__delete_range_response__free_unpacked(m, NULL);
	expect_val(S, "a", NULL);
	expect_val(S, "c", "3");

	/* Deleting nothing: no revision, deleted 0. */
	r = apply(S, &req);
	assert_int_equal(r.err, 0);
	m = etcdserverpb__delete_range_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_int_equal(m->deleted, 0);
	check_header(m->header, 5);
	etcdserverpb__delete_range_response__free_unpacked(m, NULL);
}

/* ------------------------------------------------------------------------ */
/* Txn                                                                        */

static void test_txn_branches_nested(void **state)
{
	assert_int_equal(put(S, "a", "1"), 0); /* rev 2 */
	Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT, *cp = &c;
	c.key = BIN("a");
	c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
	c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	c.value = BIN("1");

	/* success: put b, range a, nested txn { compare version(b) == 0 (as
	 * before the txn) -> put c; range b }. */
	Etcdserverpb__PutRequest pb, pc, pf;
	Etcdserverpb__RangeRequest qa, qb;
	Etcdserverpb__Compare ic = ETCDSERVERPB__COMPARE__INIT, *icp = &ic;
	ic.key = BIN("b");
	ic.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
	ic.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
	ic.version = 0;
	Etcdserverpb__RequestOp iops[2] = {op_put(&pc, "c", "3"), op_range(&qb, "b")};
	Etcdserverpb__RequestOp *iopp[2] = {&iops[0], &iops[1]};
	Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
	inner.compare = &icp;
	inner.n_compare = 1;
	inner.success = iopp;
	inner.n_success = 2;
	Etcdserverpb__RequestOp ops[3] = {op_put(&pb, "b", "2"), op_range(&qa, "a"),
	                                  op_txn(&inner)};
	Etcdserverpb__RequestOp *opp[3] = {&ops[0], &ops[1], &ops[2]};
	Etcdserverpb__RequestOp fop = op_put(&pf, "f", "failed"), *fopp = &fop;
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.compare = &cp;
	t.n_compare = 1;
	t.success = opp;
	t.n_success = 3;
	t.failure = &fopp;
	t.n_failure = 1;
	assert_int_equal(srv_check_txn(&t, NULL), 0);

	Etcdserverpb__TxnResponse *m;
	assert_int_equal(apply_txn(S, &t, &m), 0);
	assert_true(m->succeeded);
	assert_int_equal(m->header->revision, 3);
	assert_int_equal(m->n_responses, 3);
	assert_int_equal(m->responses[0]->response_case,
	                 ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
	assert_int_equal(m->responses[0]->response_put->header->revision, 3);
	assert_int_equal(m->responses[0]->response_put->header->member_id, 0);
	assert_int_equal(m->responses[1]->response_case,
	                 ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE);
	Etcdserverpb__RangeResponse *ra = m->responses[1]->response_range;
	assert_int_equal(ra->n_kvs, 1);
	assert_bytes(ra->kvs[0]->value, "1");
	assert_int_equal(m->responses[2]->response_case,
	                 ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN);
	Etcdserverpb__TxnResponse *in = m->responses[2]->response_txn;
	assert_true(in->succeeded);
	assert_non_null(in->header); /* present but empty, as etcd sends it */
	assert_int_equal(in->header->revision, 0);
	assert_int_equal(in->responses[0]->response_put->header->revision, 3);
	assert_int_equal(in->n_responses, 2);
	/* The nested range sees the txn's earlier put of b. */
	Etcdserverpb__RangeResponse *rb = in->responses[1]->response_range;
	assert_int_equal(rb->n_kvs, 1);
	assert_bytes(rb->kvs[0]->value, "2");
	assert_int_equal(rb->kvs[0]->mod_revision, 3);
	etcdserverpb__txn_response__free_unpacked(m, NULL);
	expect_val(S, "c", "3");
	expect_val(S, "f", NULL);

	/* Compare now fails: the failure branch runs. */
	c.value = BIN("nope");
	assert_int_equal(apply_txn(S, &t, &m), 0);
	assert_false(m->succeeded);
	assert_int_equal(m->n_responses, 1);
	assert_int_equal(m->header->revision, 4);
	etcdserverpb__txn_response__free_unpacked(m, NULL);
	expect_val(S, "f", "failed");

	/* A read-only txn takes no revision. */
	t.n_failure = 0;
	assert_int_equal(apply_txn(S, &t, &m), 0);
	assert_int_equal(m->header->revision, 4);
	etcdserverpb__txn_response__free_unpacked(m, NULL);
}

static void test_txn_apply_errors_change_nothing(void **state)
{
	assert_int_equal(put(S, "a", "1"), 0);
	Etcdserverpb__PutRequest p[3];
	Etcdserverpb__RequestOp ops[3] = {op_put(&p[0], "x", "1"), op_put(&p[1], "x", "2"),
	                                  op_put(&p[2], "y", "3")};
	Etcdserverpb__RequestOp *opp[3] = {&ops[0], &ops[1], &ops[2]};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = opp;
	t.n_success = 3;
	Etcdserverpb__TxnResponse *m;
	assert_int_equal(srv_check_txn(&t, NULL), CAIRN_EDUPKEY);
	assert_int_equal(apply_txn(S, &t, &m), CAIRN_EDUPKEY);

	/* A failing op late in the branch undoes the earlier ones. */
	ops[1] = op_put(&p[1], "z", "2");
	p[1].lease = 99;
	assert_int_equal(apply_txn(S, &t, &m), CAIRN_ELEASENOTFOUND);
	/* An empty op (possible only from a bad proposer). */
	Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
	opp[1] = &empty;
	assert_int_equal(apply_txn(S, &t, &m), CAIRN_EKEYNOTFOUND);
	expect_val(S, "x", NULL);
	expect_val(S, "y", NULL);
	assert_int_equal(cur_rev(S), 2);
}

/* ------------------------------------------------------------------------ */
/* Compaction, leases                                                         */

static void test_compaction(void **state)
{
	assert_int_equal(put(S, "a", "1"), 0);
	assert_int_equal(put(S, "a", "2"), 0);
	assert_int_equal(put(S, "a", "3"), 0);
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	cr.revision = 3;
	req.compaction = &cr;
	struct srv_apply_result r = apply(S, &req);
	assert_int_equal(r.err, 0);
	Etcdserverpb__CompactionResponse *m =
	    etcdserverpb__compaction_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_non_null(m);
	check_header(m->header, 4);
	etcdserverpb__compaction_response__free_unpacked(m, NULL);

	char buf[16];
	int rc = get(S, "a", 2, buf, sizeof(buf));
	assert_int_equal(rc, CAIRN_ECOMPACTED);
	expect_grpc(rc, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
	assert_int_equal(get(S, "a", 3, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2");

	r = apply(S, &req);
	assert_int_equal(r.err, CAIRN_ECOMPACTED);
	cr.revision = 10;
	r = apply(S, &req);
	assert_int_equal(r.err, CAIRN_EFUTUREREV);
	assert_false(r.nospace);
}

static void test_lease_grant_revoke(void **state)
{
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	g.id = 5;
	g.ttl = 60;
	req.lease_grant = &g;
	struct srv_apply_result r = apply(S, &req);
	assert_int_equal(r.err, 0);
	Etcdserverpb__LeaseGrantResponse *gm =
	    etcdserverpb__lease_grant_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	assert_non_null(gm);
	assert_int_equal(gm->id, 5);
	assert_int_equal(gm->ttl, 60);
	check_header(gm->header, 1); /* no revision taken: the empty store's */
	etcdserverpb__lease_grant_response__free_unpacked(gm, NULL);

	assert_int_equal(apply_err(S, &req), CAIRN_ELEASEEXIST);
	g.id = 6;
	g.ttl = 9000000001LL;
	assert_int_equal(apply_err(S, &req), CAIRN_ELEASETTLTOOLARGE);
	g.ttl = 9000000000LL;
	assert_int_equal(apply_err(S, &req), 0);

	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN("held");
	p.value = BIN("v");
	p.lease = 5;
	assert_int_equal(put_full(S, &p, NULL), 0);
	p.key = BIN("held2");
	assert_int_equal(put_full(S, &p, NULL), 0);
	p.lease = 99;
	assert_int_equal(put_full(S, &p, NULL), CAIRN_ELEASENOTFOUND);
	assert_int_equal(put(S, "free", "v"), 0);
	assert_int_equal(cur_rev(S), 4);

	Etcdserverpb__LeaseRevokeRequest rv = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	req = (Cairnpb__InternalRequest)CAIRNPB__INTERNAL_REQUEST__INIT;
	rv.id = 5;
	req.lease_revoke = &rv;
	r = apply(S, &req);
	assert_int_equal(r.err, 0);
	Etcdserverpb__LeaseRevokeResponse *rm =
	    etcdserverpb__lease_revoke_response__unpack(NULL, r.resp_len, r.resp);
	free(r.resp);
	check_header(rm->header, 5); /* both keys in one revision */
	etcdserverpb__lease_revoke_response__free_unpacked(rm, NULL);
	expect_val(S, "held", NULL);
	expect_val(S, "held2", NULL);
	expect_val(S, "free", "v");
	assert_int_equal(apply_err(S, &req), CAIRN_ELEASENOTFOUND);
	expect_grpc(CAIRN_ELEASENOTFOUND, RPC_NOT_FOUND, "etcdserver: requested lease not found");
}

/* ------------------------------------------------------------------------ */
/* Alarms                                                                     */

static struct srv_apply_result alarm_req(struct store_wtxn *w, int action, uint64_t member,
                                         int type, Etcdserverpb__AlarmResponse **out)
{
	Etcdserverpb__AlarmRequest a = ETCDSERVERPB__ALARM_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	a.action = (Etcdserverpb__AlarmRequest__AlarmAction)action;
	a.memberid = member;
	a.alarm = (Etcdserverpb__AlarmType)type;
	req.alarm = &a;
	struct srv_apply_result r = apply_in(w, &req, true);
	*out = NULL;
	if (!r.err) {
		*out = etcdserverpb__alarm_response__unpack(NULL, r.resp_len, r.resp);
		assert_non_null(*out);
		check_header((*out)->header, r.revision);
	}
	free(r.resp);
	return r;
}

static void do_alarm(struct store *s, int action, uint64_t member, int type, size_t n_resp)
{
	struct store_wtxn *w;
	Etcdserverpb__AlarmResponse *m;
	assert_int_equal(store_wtxn_begin(s, &w), 0);
	assert_int_equal(alarm_req(w, action, member, type, &m).err, 0);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(m->n_alarms, n_resp);
	for (size_t i = 0; i < n_resp && action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET;
	     i++) {
		assert_int_equal(m->alarms[i]->memberid, member);
		assert_int_equal(m->alarms[i]->alarm, type);
	}
	etcdserverpb__alarm_response__free_unpacked(m, NULL);
}

static size_t alarms_now(struct store *s, struct srv_alarm *first)
{
	struct store_rtxn *r;
	struct srv_alarm *a;
	size_t n;
	assert_int_equal(store_rtxn_begin(s, &r), 0);
	assert_int_equal(srv_alarms_get(r, &a, &n), 0);
	store_rtxn_end(r);
	if (n && first)
		*first = a[0];
	free(a);
	return n;
}

static void test_alarm_nospace_caps_writes(void **state)
{
	enum {
		GET = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET,
		ON = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE,
		OFF = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE,
		NOSPACE = ETCDSERVERPB__ALARM_TYPE__NOSPACE,
		CORRUPT = ETCDSERVERPB__ALARM_TYPE__CORRUPT,
	};
	assert_int_equal(put(S, "a", "1"), 0);
	assert_int_equal(put(S, "b", "1"), 0);
	assert_int_equal(alarms_now(S, NULL), 0);
	do_alarm(S, GET, 0, 0, 0);
	do_alarm(S, ON, 22, NOSPACE, 1);
	do_alarm(S, ON, 22, NOSPACE, 1); /* idempotent */
	do_alarm(S, ON, 33, CORRUPT, 1);
	do_alarm(S, GET, 0, 0, 2);
	do_alarm(S, GET, 0, NOSPACE, 1);
	struct srv_alarm first;
	assert_int_equal(alarms_now(S, &first), 2);
	assert_int_equal(first.member_id, 22);
	assert_int_equal(first.type, NOSPACE);
	do_alarm(S, OFF, 33, CORRUPT, 1);
	do_alarm(S, OFF, 33, CORRUPT, 0); /* not there any more */

	/* Puts, txns with a put (even nested), lease grants: refused. */
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = BIN("c");
	p.value = BIN("v");
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	req.put = &p;
	struct srv_apply_result r = apply(S, &req);
	assert_int_equal(r.err, CAIRN_ENOSPACE);
	assert_false(r.nospace); /* already raised: nothing to propose */
	Etcdserverpb__PutRequest ip;
	Etcdserverpb__RequestOp iop = op_put(&ip, "d", "v"), *iopp = &iop;
	Etcdserverpb__TxnRequest inner = ETCDSERVERPB__TXN_REQUEST__INIT;
	inner.failure = &iopp;
	inner.n_failure = 1;
	Etcdserverpb__RangeRequest q;
	Etcdserverpb__RequestOp ops[2] = {op_range(&q, "a"), op_txn(&inner)};
	Etcdserverpb__RequestOp *opp[2] = {&ops[0], &ops[1]};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.success = opp;
	t.n_success = 2;
	Etcdserverpb__TxnResponse *m;
	assert_int_equal(apply_txn(S, &t, &m), CAIRN_ENOSPACE);
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	g.id = 1;
	g.ttl = 10;
	req = (Cairnpb__InternalRequest)CAIRNPB__INTERNAL_REQUEST__INIT;
	req.lease_grant = &g;
	assert_int_equal(apply_err(S, &req), CAIRN_ENOSPACE);

	/* Reads, read-only txns, deletes and compaction still work. */
	t.n_success = 1;
	assert_int_equal(apply_txn(S, &t, &m), 0);
	etcdserverpb__txn_response__free_unpacked(m, NULL);
	expect_val(S, "a", "1");
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = BIN("a");
	req = (Cairnpb__InternalRequest)CAIRNPB__INTERNAL_REQUEST__INIT;
	req.delete_range = &d;
	r = apply(S, &req);
	assert_int_equal(r.err, 0);
	free(r.resp);
	expect_val(S, "a", NULL);
	Etcdserverpb__CompactionRequest cr = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	cr.revision = 3;
	req = (Cairnpb__InternalRequest)CAIRNPB__INTERNAL_REQUEST__INIT;
	req.compaction = &cr;
	r = apply(S, &req);
	assert_int_equal(r.err, 0);
	free(r.resp);

	/* Disarmed: writes work again. */
	do_alarm(S, OFF, 22, NOSPACE, 1);
	assert_int_equal(alarms_now(S, NULL), 0);
	assert_int_equal(put(S, "c", "v"), 0);
}

/* Every member must decide the same: an alarm raised earlier in the same
 * batch caps the writes after it. */
static void test_alarm_seen_within_batch(void **state)
{
	struct store_wtxn *w;
	Etcdserverpb__AlarmResponse *m;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(alarm_req(w, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE, 1,
	                           ETCDSERVERPB__ALARM_TYPE__NOSPACE, &m)
	                     .err,
	                 0);
	etcdserverpb__alarm_response__free_unpacked(m, NULL);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	p.key = BIN("k");
	req.put = &p;
	assert_int_equal(apply_in(w, &req, true).err, CAIRN_ENOSPACE);
	assert_int_equal(store_wtxn_commit(w), 0);
	assert_int_equal(alarms_now(S, NULL), 1);
	expect_val(S, "k", NULL);
}

/* The store's own quota: the failed write reports nospace. */
static void test_store_quota_sets_nospace(void **state)
{
	size_t vlen = 100000;
	char *v = malloc(vlen + 1);
	memset(v, 'v', vlen);
	v[vlen] = 0;
	char key[32];
	struct srv_apply_result r = {0};
	int i;
	for (i = 0; i < 200; i++) {
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
		snprintf(key, sizeof(key), "key%03d", i);
		p.key = BIN(key);
		p.value = BIN(v);
		req.put = &p;
		r = apply(S, &req);
		if (r.err)
			break;
		free(r.resp);
	}
	free(v);
	assert_int_equal(r.err, CAIRN_ENOSPACE);
	assert_true(r.nospace);
	assert_int_equal(cur_rev(S), 1 + i);
	/* Deletes still work with the quota full. */
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	d.key = BIN("key000");
	req.delete_range = &d;
	r = apply(S, &req);
	assert_int_equal(r.err, 0);
	free(r.resp);
}

/* ------------------------------------------------------------------------ */
/* Bad entries, no response                                                   */

static void test_undecodable_and_malformed(void **state)
{
	assert_int_equal(put(S, "a", "1"), 0);
	struct store_wtxn *w;
	struct srv_apply_result r;
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x22, 0x99};
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	assert_int_equal(srv_apply_entry(w, &H, junk, sizeof(junk), true, &r), 0);
	assert_int_equal(r.err, CAIRN_EPROTO);
	assert_null(r.resp);
	assert_int_equal(r.revision, 2);
	/* Empty: no request at all. */
	assert_int_equal(srv_apply_entry(w, &H, junk, 0, true, &r), 0);
	assert_int_equal(r.err, CAIRN_EPROTO);
	store_wtxn_commit(w);

	/* Two requests in one entry. */
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	p.key = BIN("b");
	d.key = BIN("a");
	req.id = 9;
	req.put = &p;
	req.delete_range = &d;
	r = apply(S, &req);
	assert_int_equal(r.err, CAIRN_EPROTO);
	assert_int_equal(r.id, 9);
	expect_val(S, "a", "1");
	expect_val(S, "b", NULL);

	/* Only lease_extend_ms: the member's, a no-op here. */
	req = (Cairnpb__InternalRequest)CAIRNPB__INTERNAL_REQUEST__INIT;
	req.lease_extend_ms = 1000;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	r = apply_in(w, &req, false);
	assert_int_equal(r.err, 0);
	store_wtxn_commit(w);
	assert_int_equal(cur_rev(S), 2);
}

static void test_no_response_when_not_wanted(void **state)
{
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	Cairnpb__InternalRequest req = CAIRNPB__INTERNAL_REQUEST__INIT;
	p.key = BIN("a");
	p.value = BIN("1");
	req.put = &p;
	struct store_wtxn *w;
	assert_int_equal(store_wtxn_begin(S, &w), 0);
	struct srv_apply_result r = apply_in(w, &req, false);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.revision, 2);
	assert_int_equal(r.resp_len, 0);
	/* Errors are still reported. */
	p.key = BIN("");
	r = apply_in(w, &req, false);
	assert_int_equal(r.err, CAIRN_EKEYEMPTY);
	assert_int_equal(store_wtxn_commit(w), 0);
	expect_val(S, "a", "1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grpc_error_messages),
	    cmocka_unit_test(test_kv_and_header_to_pb),
	    cmocka_unit_test(test_check_single_requests),
	    cmocka_unit_test(test_check_txn_ops),
	    cmocka_unit_test(test_check_txn_duplicate_keys),
	    cmocka_unit_test(test_check_txn_matches_etcd_reference),
	    cmocka_unit_test(test_check_txn_large_is_fast),
	    cmocka_unit_test_setup_teardown(test_put_prev_kv_and_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_range_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_ignore_value_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_prev_kv, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_branches_nested, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_txn_apply_errors_change_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lease_grant_revoke, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_alarm_nospace_caps_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_alarm_seen_within_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_quota_sets_nospace, setup_small, teardown),
	    cmocka_unit_test_setup_teardown(test_undecodable_and_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_response_when_not_wanted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
