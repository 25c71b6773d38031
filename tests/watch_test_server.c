/* watch_test_server.c — a real store, an rpc server and the watch hub, for
 * tests/test_watch.py (python grpc and etcdctl watch).
 *
 *   watch_test_server DATA_DIR [URL]   default http://127.0.0.1:0; prints "PORT n"
 *
 * Methods:
 *   /etcdserverpb.Watch/Watch  the hub
 *   /test.Write/Put     PutRequest -> store_put in its own batch, notify;
 *                       replies PutResponse (header.revision)
 *   /test.Write/Delete  DeleteRangeRequest -> one batch, notify
 *   /test.Write/Txn     TxnRequest without compares, put/delete ops only: all
 *                       in one revision
 *   /test.Write/Bulk    PutRequest used as "bulk": `lease` puts of key+"%08d"
 *                       with the value, one revision each, one batch, one
 *                       notify (lease is not attached)
 *   /test.Write/Compact CompactionRequest -> store_compact
 *   /test.Write/Stats   "streams=N watchers=N unsynced=N rev=N"
 * Environment: WATCH_PROGRESS_MS, WATCH_CHUNK, WATCH_MAX_RESP,
 * WATCH_MAX_WATCHERS, WATCH_HIGH_WATER (rpc stream_high_water).
 * SIGTERM/SIGINT: frees the hub, closes the server and the store, exits 0.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "proto/rpc.pb-c.h"
#include "rpc/rpc.h"
#include "server/watch.h"
#include "store/store.h"

static struct rpc_server *srv;
static struct store *store;
static struct srv_watch_hub *hub;
static uv_loop_t *loop;
static uv_signal_t sigterm, sigint;
static uv_timer_t ticker;

static void header_cb(void *ctx, struct srv_header *out)
{
	(void)ctx;
	out->cluster_id = 0x1234;
	out->member_id = 0x42;
	out->raft_term = 3;
}

static void reply_header(struct rpc_call *call, int64_t revision)
{
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.cluster_id = 0x1234;
	h.member_id = 0x42;
	h.raft_term = 3;
	h.revision = revision;
	Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
	resp.header = &h;
	rpc_call_reply_msg(call, &resp.base);
}

static void put_req(const Etcdserverpb__PutRequest *in, struct store_put_req *req)
{
	memset(req, 0, sizeof(*req));
	req->key = in->key.data;
	req->key_len = in->key.len;
	req->value = in->value.data;
	req->value_len = in->value.len;
}

static void del_req(const Etcdserverpb__DeleteRangeRequest *in, struct store_delete_req *req)
{
	memset(req, 0, sizeof(*req));
	req->key = in->key.data;
	req->key_len = in->key.len;
	req->range_end = in->range_end.data;
	req->range_end_len = in->range_end.len;
}

static int apply_put(struct store_wtxn *w, const ProtobufCMessage *m)
{
	struct store_put_req req;
	struct store_put_resp resp = {0};
	put_req((const Etcdserverpb__PutRequest *)m, &req);
	int rc = store_put(w, &req, &resp);
	store_put_resp_free(&resp);
	return rc;
}

static int apply_bulk(struct store_wtxn *w, const ProtobufCMessage *m)
{
	const Etcdserverpb__PutRequest *in = (const Etcdserverpb__PutRequest *)m;
	if (in->key.len > 200)
		return CAIRN_EINVAL;
	int rc = 0;
	for (int64_t i = 0; i < in->lease && rc == 0; i++) {
		char key[256];
		memcpy(key, in->key.data, in->key.len);
		int n = snprintf(key + in->key.len, sizeof(key) - in->key.len, "%08" PRId64, i);
		struct store_put_req req;
		struct store_put_resp resp = {0};
		put_req(in, &req);
		req.key = (const uint8_t *)key;
		req.key_len = in->key.len + (size_t)n;
		rc = store_put(w, &req, &resp);
		store_put_resp_free(&resp);
	}
	return rc;
}

static int apply_delete(struct store_wtxn *w, const ProtobufCMessage *m)
{
	struct store_delete_req req;
	struct store_delete_resp resp = {0};
	del_req((const Etcdserverpb__DeleteRangeRequest *)m, &req);
	int rc = store_delete_range(w, &req, &resp);
	store_delete_resp_free(&resp);
	return rc;
}

static int apply_txn(struct store_wtxn *w, const ProtobufCMessage *m)
{
	const Etcdserverpb__TxnRequest *in = (const Etcdserverpb__TxnRequest *)m;
	struct store_op ops[128];
	if (in->n_compare || in->n_success > 128)
		return CAIRN_EINVAL;
	for (size_t i = 0; i < in->n_success; i++) {
		Etcdserverpb__RequestOp *op = in->success[i];
		if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
			ops[i].type = STORE_OP_PUT;
			put_req(op->request_put, &ops[i].u.put);
		} else if (op->request_case ==
		           ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE) {
			ops[i].type = STORE_OP_DELETE;
			del_req(op->request_delete_range, &ops[i].u.del);
		} else {
			return CAIRN_EINVAL;
		}
	}
	struct store_txn_req req = {.success = ops, .n_success = in->n_success};
	struct store_txn_resp resp = {0};
	int rc = store_txn(w, &req, &resp);
	store_txn_resp_free(&resp);
	return rc;
}

static int apply_compact(struct store_wtxn *w, const ProtobufCMessage *m)
{
	int rc = store_compact(w, ((const Etcdserverpb__CompactionRequest *)m)->revision);
	bool done = false;
	while (rc == 0 && !done)
		rc = store_compact_step(w, 100000, &done);
	return rc;
}

struct write_method {
	const char *path;
	const ProtobufCMessageDescriptor *req;
	int (*apply)(struct store_wtxn *w, const ProtobufCMessage *m);
};

static const struct write_method write_methods[] = {
    {"/test.Write/Put", &etcdserverpb__put_request__descriptor, apply_put},
    {"/test.Write/Bulk", &etcdserverpb__put_request__descriptor, apply_bulk},
    {"/test.Write/Delete", &etcdserverpb__delete_range_request__descriptor, apply_delete},
    {"/test.Write/Txn", &etcdserverpb__txn_request__descriptor, apply_txn},
    {"/test.Write/Compact", &etcdserverpb__compaction_request__descriptor, apply_compact},
};

/* One batch per request: decode, apply, commit, notify the hub, reply. */
static void write_cb(struct rpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	const struct write_method *wm = ud;
	ProtobufCMessage *in = protobuf_c_message_unpack(wm->req, NULL, len, msg);
	struct store_wtxn *w;
	if (!in || store_wtxn_begin(store, &w) != 0) {
		rpc_call_fail(call, RPC_INVALID_ARGUMENT, "bad request");
		if (in)
			protobuf_c_message_free_unpacked(in, NULL);
		return;
	}
	int rc = wm->apply(w, in);
	protobuf_c_message_free_unpacked(in, NULL);
	int64_t rev = 0;
	if (rc == 0) {
		rev = store_wtxn_revision(w);
		rc = store_wtxn_commit(w);
	} else {
		store_wtxn_abort(w);
	}
	if (rc != 0) {
		rpc_call_fail(call, RPC_UNKNOWN, cairn_strerror(rc));
		return;
	}
	srv_watch_hub_notify(hub, rev);
	reply_header(call, rev);
}

static void stats_cb(struct rpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	(void)ud;
	(void)msg;
	(void)len;
	struct srv_watch_stats st;
	srv_watch_hub_stats(hub, &st);
	struct store_stats ss = {0};
	store_stats(store, &ss);
	char buf[256];
	int n =
	    snprintf(buf, sizeof(buf),
	             "streams=%" PRIu64 " watchers=%" PRIu64 " unsynced=%" PRIu64 " rev=%" PRId64,
	             st.streams, st.watchers, st.unsynced, ss.revision);
	rpc_call_reply(call, buf, (size_t)n);
}

static void tick_cb(uv_timer_t *t)
{
	(void)t;
	srv_watch_hub_tick(hub, uv_now(loop));
}

static void closed_cb(void *arg)
{
	(void)arg;
	srv = NULL;
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&ticker, NULL);
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	if (srv == NULL)
		return;
	srv_watch_hub_free(hub);
	hub = NULL;
	uv_timer_stop(&ticker);
	rpc_server_close(srv, 1000, closed_cb, NULL);
}

static size_t env_size(const char *name, size_t dflt)
{
	const char *v = getenv(name);
	return v ? strtoull(v, NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: watch_test_server DATA_DIR [URL]\n");
		return 2;
	}
	const char *url = argc > 2 ? argv[2] : "http://127.0.0.1:0";
	struct store_config scfg = {.dir = argv[1], .nosync = true};
	int rc = store_open(&scfg, &store);
	if (rc != 0) {
		fprintf(stderr, "store_open: %s\n", cairn_strerror(rc));
		return 1;
	}
	struct srv_watch_config wcfg = {
	    .store = store,
	    .progress_interval_ms = (int64_t)env_size("WATCH_PROGRESS_MS", 0),
	    .max_response_bytes = env_size("WATCH_MAX_RESP", 0),
	    .catchup_chunk_events = env_size("WATCH_CHUNK", 0),
	    .max_watchers_per_stream = (uint32_t)env_size("WATCH_MAX_WATCHERS", 0),
	    .header = header_cb,
	};
	if (srv_watch_hub_new(&wcfg, &hub) != 0)
		return 1;
	loop = uv_default_loop();
	struct rpc_server_config cfg = {.stream_high_water = env_size("WATCH_HIGH_WATER", 0)};
	if (rpc_server_new(loop, &cfg, &srv) != 0)
		return 1;
	if (rpc_server_register_stream(srv, "/etcdserverpb.Watch/Watch", &srv_watch_stream_cbs,
	                               hub) != 0 ||
	    rpc_server_register_unary(srv, "/test.Write/Stats", stats_cb, NULL) != 0)
		return 1;
	for (size_t i = 0; i < sizeof(write_methods) / sizeof(write_methods[0]); i++)
		if (rpc_server_register_unary(srv, write_methods[i].path, write_cb,
		                              (void *)&write_methods[i]) != 0)
			return 1;
	int port;
	if (rpc_server_listen(srv, url, &port) != 0)
		return 1;
	printf("PORT %d\n", port);
	fflush(stdout);
	uv_timer_init(loop, &ticker);
	uv_timer_start(&ticker, tick_cb, 50, 50);
	uv_signal_init(loop, &sigterm);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_run(loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(loop);
	store_close(store);
	if (rc != 0)
		fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
	return rc != 0;
}
