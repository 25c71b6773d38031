/*
 * check.c — what etcd refuses before raft (api/v3rpc/key.go: checkPutRequest,
 * checkRangeRequest, checkDeleteRequest, checkTxnRequest, checkIntervals) and
 * the gRPC status + message etcd sends for each error
 * (api/v3rpc/rpctypes/error.go).
 *
 * These run on the loop thread for every write, so a bad request never takes
 * a raft entry. The store checks the same things again when applying (a
 * request from an older or buggy member must not corrupt it); these checks
 * are the ones clients see, with etcd's quirks kept (see checkIntervals).
 */
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "server/apply_int.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                     */

struct grpc_err {
	int err;
	int status;
	const char *message;
};

static const struct grpc_err grpc_errs[] = {
    {CAIRN_EKEYEMPTY, RPC_INVALID_ARGUMENT, "etcdserver: key is not provided"},
    {CAIRN_EKEYNOTFOUND, RPC_INVALID_ARGUMENT, "etcdserver: key not found"},
    {CAIRN_EVALUEPROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: value is provided"},
    {CAIRN_ELEASEPROVIDED, RPC_INVALID_ARGUMENT, "etcdserver: lease is provided"},
    {CAIRN_ETOOMANYOPS, RPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request"},
    {CAIRN_EDUPKEY, RPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"},
    {CAIRN_EKEYTOOLARGE, RPC_INVALID_ARGUMENT, "etcdserver: key is too large"},
    {CAIRN_EVALUETOOLARGE, RPC_INVALID_ARGUMENT, "etcdserver: request is too large"},
    {CAIRN_ETOOBIG, RPC_INVALID_ARGUMENT, "etcdserver: request is too large"},
    {CAIRN_ECOMPACTED, RPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"},
    {CAIRN_EFUTUREREV, RPC_OUT_OF_RANGE,
     "etcdserver: mvcc: required revision is a future revision"},
    {CAIRN_ENOSPACE, RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"},
    {CAIRN_EMAPFULL, RPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"},
    {CAIRN_ELEASENOTFOUND, RPC_NOT_FOUND, "etcdserver: requested lease not found"},
    {CAIRN_ELEASEEXIST, RPC_FAILED_PRECONDITION, "etcdserver: lease already exists"},
    {CAIRN_ELEASETTLTOOLARGE, RPC_OUT_OF_RANGE, "etcdserver: too large lease TTL"},
    {CAIRN_ENOLEADER, RPC_UNAVAILABLE, "etcdserver: no leader"},
    {CAIRN_ENOTLEADER, RPC_FAILED_PRECONDITION, "etcdserver: not leader"},
    {CAIRN_ELEADERCHANGED, RPC_UNAVAILABLE, "etcdserver: leader changed"},
    {CAIRN_EPROPOSALDROPPED, RPC_UNAVAILABLE, "etcdserver: request timed out"},
    {CAIRN_ETIMEOUT, RPC_UNAVAILABLE, "etcdserver: request timed out"},
    {CAIRN_ESTOPPED, RPC_UNAVAILABLE, "etcdserver: server stopped"},
    {CAIRN_ECLOSED, RPC_UNAVAILABLE, "etcdserver: server stopped"},
    {CAIRN_ECANCELED, RPC_CANCELLED, "context canceled"},
    {CAIRN_ECORRUPT, RPC_DATA_LOSS, "etcdserver: corrupt cluster"},
    {CAIRN_EINVAL, RPC_INVALID_ARGUMENT, "etcdserver: invalid argument"},
    {CAIRN_EPROTO, RPC_INVALID_ARGUMENT, "etcdserver: invalid request"},
};

void srv_grpc_error(int err, int *grpc_status, const char **message)
{
	if (err == 0) {
		*grpc_status = RPC_OK;
		*message = "";
		return;
	}
	for (size_t i = 0; i < sizeof(grpc_errs) / sizeof(grpc_errs[0]); i++) {
		if (grpc_errs[i].err == err) {
			*grpc_status = grpc_errs[i].status;
			*message = grpc_errs[i].message;
			return;
		}
	}
	*grpc_status = RPC_UNKNOWN;
	*message = cairn_strerror(err);
}

/* ------------------------------------------------------------------------ */
/* Single requests                                                            */

/* LMDB's default key size limit: the store keeps user keys as LMDB keys. */
#define SRV_MAX_KEY 511u

static size_t max_request(const struct srv_limits *lim)
{
	return lim && lim->max_request_bytes ? lim->max_request_bytes : STORE_DEFAULT_MAX_REQUEST;
}

static unsigned max_txn_ops(const struct srv_limits *lim)
{
	return lim && lim->max_txn_ops ? lim->max_txn_ops : STORE_DEFAULT_MAX_TXN_OPS;
}

int srv_check_range(const Etcdserverpb__RangeRequest *req)
{
	return req->key.len == 0 ? CAIRN_EKEYEMPTY : 0;
}

static int check_put(const Etcdserverpb__PutRequest *req)
{
	if (req->key.len == 0)
		return CAIRN_EKEYEMPTY;
	if (req->ignore_value && req->value.len != 0)
		return CAIRN_EVALUEPROVIDED;
	if (req->ignore_lease && req->lease != 0)
		return CAIRN_ELEASEPROVIDED;
	if (req->key.len > SRV_MAX_KEY)
		return CAIRN_EKEYTOOLARGE;
	return 0;
}

/* etcd refuses a proposal whose encoding exceeds --max-request-bytes. */
static int check_size(const ProtobufCMessage *msg, const struct srv_limits *lim)
{
	return protobuf_c_message_get_packed_size(msg) > max_request(lim) ? CAIRN_EVALUETOOLARGE
	                                                                  : 0;
}

int srv_check_put(const Etcdserverpb__PutRequest *req, const struct srv_limits *lim)
{
	int rc = check_put(req);
	return rc ? rc : check_size(&req->base, lim);
}

int srv_check_delete(const Etcdserverpb__DeleteRangeRequest *req)
{
	return req->key.len == 0 ? CAIRN_EKEYEMPTY : 0;
}

/* ------------------------------------------------------------------------ */
/* Txn: shape (checkTxnRequest)                                               */

static int check_txn_shape(const Etcdserverpb__TxnRequest *req, long max_ops);

static int check_op(const Etcdserverpb__RequestOp *op, long max_ops)
{
	switch (op->request_case) {
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
		return srv_check_range(op->request_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
		return check_put(op->request_put);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
		return srv_check_delete(op->request_delete_range);
	case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
		return check_txn_shape(op->request_txn, max_ops);
	default:
		return CAIRN_EKEYNOTFOUND; /* etcd's answer to an empty op */
	}
}

/* etcd gives a nested txn the budget left by its parent (max_ops - opc),
 * so the limit tightens with depth. */
static int check_txn_shape(const Etcdserverpb__TxnRequest *req, long max_ops)
{
	size_t opc = req->n_compare;
	if (opc < req->n_success)
		opc = req->n_success;
	if (opc < req->n_failure)
		opc = req->n_failure;
	if (max_ops < 0 || opc > (size_t)max_ops)
		return CAIRN_ETOOMANYOPS;
	for (size_t i = 0; i < req->n_compare; i++)
		if (req->compare[i]->key.len == 0)
			return CAIRN_EKEYEMPTY;
	long nested = max_ops - (long)opc;
	for (size_t i = 0; i < req->n_success; i++) {
		int rc = check_op(req->success[i], nested);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < req->n_failure; i++) {
		int rc = check_op(req->failure[i], nested);
		if (rc)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Txn: overlapping writes (checkIntervals)                                   */

/*
 * HOW IT WORKS
 * etcd's checkIntervals(ops) returns the put keys and delete intervals of a
 * level (its own and its nested txns', both branches) and fails when
 *   1. a key is put twice: by this level and anything below it, or by two
 *      different nested txns (the then and else branch of ONE nested txn may
 *      put the same key: only one of them runs);
 *   2. a put of a nested txn falls in a delete of this level or of an
 *      EARLIER nested txn (a later nested txn's deletes are merged only after
 *      the check, so they are not compared: etcd's quirk, kept);
 *   3. a put of this level falls in any delete of this level or below.
 * Deletes are intervals [key, range_end) compared as bytes; a single-key
 * delete is [key, key\0). A "from key" delete (range_end "\0") is therefore
 * the empty interval [key, "\0") and collides with nothing — etcd's
 * behaviour (checked against etcd 3.4.23), kept so the same txns succeed.
 *
 * WHY SORTED SETS
 * These checks run on the loop thread before proposing, and one request of
 * --max-request-bytes can nest ~10^5 ops. Puts are checked for duplicates by
 * sorting them (tagged with their origin); deletes are kept sorted by start
 * with a running maximum of their ends, so "is k in any delete" is a binary
 * search, and a nested txn's (sorted) deletes are merged in linear time.
 */

struct put_ent {
	const uint8_t *key;
	size_t len;
	long owner; /* -1: this level; else index of the nested txn */
	int branch; /* 0 then, 1 else (nested puts) */
};

struct del_ent {
	const uint8_t *key;
	size_t len;
	const uint8_t *end; /* the key itself for a point */
	size_t end_len;
	bool point; /* single-key delete: the end is key\0 */
};

struct ivals {
	struct put_ent *puts;
	size_t n_puts, cap_puts;
	struct del_ent *dels;          /* sorted by key */
	const struct del_ent **maxend; /* [i]: the largest end among dels[0..i] */
	size_t n_dels, cap_dels;
};

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* Compares byte strings where a flagged one has an extra trailing 0x00
 * (a point delete's end, key\0). */
static int ext_cmp(const uint8_t *a, size_t al, bool ax, const uint8_t *b, size_t bl, bool bx)
{
	size_t an = al + ax, bn = bl + bx;
	size_t m = al < bl ? al : bl;
	int c = memcmp(a, b, m);
	if (c)
		return c;
	for (size_t i = m; i < an && i < bn; i++) {
		uint8_t ca = i < al ? a[i] : 0, cb = i < bl ? b[i] : 0;
		if (ca != cb)
			return ca < cb ? -1 : 1;
	}
	return an < bn ? -1 : an > bn;
}

static int end_cmp(const struct del_ent *x, const struct del_ent *y)
{
	return ext_cmp(x->end, x->end_len, x->point, y->end, y->end_len, y->point);
}

static int del_ent_cmp(const void *a, const void *b)
{
	const struct del_ent *x = a, *y = b;
	return bytes_cmp(x->key, x->len, y->key, y->len);
}

/* Is k in some delete of v? The last delete starting at or before k is
 * found by binary search; the largest end up to it decides. */
static bool dels_cover(const struct ivals *v, const uint8_t *k, size_t kl)
{
	size_t lo = 0, hi = v->n_dels;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bytes_cmp(v->dels[mid].key, v->dels[mid].len, k, kl) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	const struct del_ent *e = v->maxend[lo - 1];
	return ext_cmp(k, kl, false, e->end, e->end_len, e->point) < 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	void *p = realloc(*arr, nc * size);
	if (!p)
		return CAIRN_ENOMEM;
	*arr = p;
	*cap = nc;
	return 0;
}

static int add_put(struct ivals *v, const uint8_t *k, size_t kl, long owner, int branch)
{
	int rc = grow((void **)&v->puts, &v->cap_puts, v->n_puts + 1, sizeof(*v->puts));
	if (rc)
		return rc;
	v->puts[v->n_puts++] = (struct put_ent){k, kl, owner, branch};
	return 0;
}

static void fix_maxend(struct ivals *v, size_t from)
{
	for (size_t i = from; i < v->n_dels; i++) {
		const struct del_ent *prev = i ? v->maxend[i - 1] : NULL;
		v->maxend[i] = prev && end_cmp(prev, &v->dels[i]) >= 0 ? prev : &v->dels[i];
	}
}

/* Merges the sorted dels[0..n) into v's sorted deletes. */
static int merge_dels(struct ivals *v, const struct del_ent *dels, size_t n)
{
	if (n == 0)
		return 0;
	size_t cap = v->cap_dels, total = v->n_dels + n;
	int rc = grow((void **)&v->dels, &v->cap_dels, total, sizeof(*v->dels));
	if (!rc && v->cap_dels != cap) {
		/* maxend holds pointers into dels: rebuilt below anyway. */
		void *p = realloc(v->maxend, v->cap_dels * sizeof(*v->maxend));
		rc = p ? 0 : CAIRN_ENOMEM;
		if (p)
			v->maxend = p;
	}
	if (rc)
		return rc;
	/* Merge from the back so it works in place. */
	size_t i = v->n_dels, j = n, k = total;
	while (j > 0) {
		if (i > 0 && del_ent_cmp(&v->dels[i - 1], &dels[j - 1]) > 0)
			v->dels[--k] = v->dels[--i];
		else
			v->dels[--k] = dels[--j];
	}
	v->n_dels = total;
	fix_maxend(v, 0);
	return 0;
}

static void ivals_free(struct ivals *v)
{
	free(v->puts);
	free(v->dels);
	free(v->maxend);
	*v = (struct ivals){0};
}

static int put_ent_cmp(const void *a, const void *b)
{
	const struct put_ent *x = a, *y = b;
	int c = bytes_cmp(x->key, x->len, y->key, y->len);
	if (c)
		return c;
	if (x->owner != y->owner)
		return x->owner < y->owner ? -1 : 1;
	return x->branch - y->branch;
}

/* Rule 1 on a level's puts (sorted by key, owner, branch: a nested txn's
 * branch sets hold no duplicates), then keeps one of each key so the parent
 * sees a set. */
static int dedup_puts(struct ivals *v)
{
	if (v->n_puts == 0)
		return 0; /* qsort(NULL, 0) is undefined */
	qsort(v->puts, v->n_puts, sizeof(*v->puts), put_ent_cmp);
	size_t j = 0;
	for (size_t i = 0; i < v->n_puts;) {
		const struct put_ent *p = &v->puts[i];
		size_t g = i + 1;
		while (g < v->n_puts &&
		       bytes_cmp(p->key, p->len, v->puts[g].key, v->puts[g].len) == 0)
			g++;
		bool twins = g - i == 2 && p->owner >= 0 && p[1].owner == p->owner;
		if (g - i > 2 || (g - i == 2 && !twins))
			return CAIRN_EDUPKEY;
		v->puts[j++] = *p;
		i = g;
	}
	v->n_puts = j;
	return 0;
}

/* This level's own deletes, sorted. */
static int level_dels(Etcdserverpb__RequestOp *const *ops, size_t n, struct ivals *v)
{
	size_t cnt = 0;
	for (size_t i = 0; i < n; i++)
		cnt +=
		    ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	if (cnt == 0)
		return 0;
	struct del_ent *d = malloc(cnt * sizeof(*d));
	if (!d)
		return CAIRN_ENOMEM;
	cnt = 0;
	for (size_t i = 0; i < n; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
			continue;
		const Etcdserverpb__DeleteRangeRequest *r = ops[i]->request_delete_range;
		bool point = r->range_end.len == 0;
		d[cnt++] = (struct del_ent){r->key.data, r->key.len,
		                            point ? r->key.data : r->range_end.data,
		                            point ? r->key.len : r->range_end.len, point};
	}
	qsort(d, cnt, sizeof(*d), del_ent_cmp);
	int rc = merge_dels(v, d, cnt);
	free(d);
	return rc;
}

static int check_intervals(Etcdserverpb__RequestOp *const *ops, size_t n, struct ivals *out)
{
	struct ivals v = {0};
	int rc = level_dels(ops, n, &v);
	for (size_t i = 0; i < n && !rc; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN)
			continue;
		const Etcdserverpb__TxnRequest *t = ops[i]->request_txn;
		struct ivals br[2] = {{0}, {0}};
		rc = check_intervals(t->success, t->n_success, &br[0]);
		if (!rc)
			rc = check_intervals(t->failure, t->n_failure, &br[1]);
		/* Rule 2: this nested txn's puts against the deletes so far. */
		for (int b = 0; b < 2 && !rc; b++)
			for (size_t p = 0; p < br[b].n_puts && !rc; p++)
				if (dels_cover(&v, br[b].puts[p].key, br[b].puts[p].len))
					rc = CAIRN_EDUPKEY;
		for (int b = 0; b < 2 && !rc; b++) {
			for (size_t p = 0; p < br[b].n_puts && !rc; p++)
				rc = add_put(&v, br[b].puts[p].key, br[b].puts[p].len, (long)i, b);
			if (!rc)
				rc = merge_dels(&v, br[b].dels, br[b].n_dels);
		}
		ivals_free(&br[0]);
		ivals_free(&br[1]);
	}
	/* Rule 3: this level's puts against every delete. */
	for (size_t i = 0; i < n && !rc; i++) {
		if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT)
			continue;
		const Etcdserverpb__PutRequest *p = ops[i]->request_put;
		rc = dels_cover(&v, p->key.data, p->key.len)
		         ? CAIRN_EDUPKEY
		         : add_put(&v, p->key.data, p->key.len, -1, 0);
	}
	if (!rc)
		rc = dedup_puts(&v);
	if (rc) {
		ivals_free(&v);
		return rc;
	}
	*out = v;
	return 0;
}

int srv_check_txn(const Etcdserverpb__TxnRequest *req, const struct srv_limits *lim)
{
	int rc = check_txn_shape(req, (long)max_txn_ops(lim));
	for (int b = 0; b < 2 && !rc; b++) {
		struct ivals v = {0};
		if (b == 0)
			rc = check_intervals(req->success, req->n_success, &v);
		else
			rc = check_intervals(req->failure, req->n_failure, &v);
		ivals_free(&v);
	}
	return rc ? rc : check_size(&req->base, lim);
}
