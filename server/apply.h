/*
 * apply.h — the etcd API meets the store: protobuf requests in, store calls,
 * protobuf responses out. Pure functions over a store transaction: no raft,
 * no network, no clock, so they are tested directly on a real store.
 *
 * Who calls what:
 *   - the loop thread, before proposing a write: srv_check_*() rejects what
 *     etcd rejects before raft (empty key, too many ops, duplicate keys,
 *     value/lease provided with ignore_*, request too large), so a bad
 *     request never takes a log entry;
 *   - the storage thread, for each committed normal entry, inside the
 *     batch's write transaction: srv_apply_entry();
 *   - the loop thread, for serializable and (after ReadIndex) linearizable
 *     reads: srv_range() in a read transaction.
 *
 * Errors: the functions return 0 or a negative CAIRN_E* code;
 * srv_grpc_error() turns a code into the gRPC status and the exact message
 * etcd sends (etcd's api/v3rpc/rpctypes/error.go).
 */
#ifndef SRV_APPLY_H
#define SRV_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/internal.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "store/store.h"

/* What goes in every ResponseHeader. raft_term is the member's current term. */
struct srv_header {
	uint64_t cluster_id;
	uint64_t member_id;
	uint64_t raft_term;
};

/* gRPC status (enum rpc_status values) and etcd's message for a cairn error.
 * Unknown codes map to UNKNOWN with cairn_strerror()'s text. */
void srv_grpc_error(int err, int *grpc_status, const char **message);

/* ---- checks before proposing (etcd's v3rpc/key.go checks) ---- */

struct srv_limits {
	size_t max_request_bytes; /* --max-request-bytes */
	unsigned max_txn_ops;     /* --max-txn-ops */
};

int srv_check_range(const Etcdserverpb__RangeRequest *req);
int srv_check_put(const Etcdserverpb__PutRequest *req, const struct srv_limits *lim);
int srv_check_delete(const Etcdserverpb__DeleteRangeRequest *req);
int srv_check_txn(const Etcdserverpb__TxnRequest *req, const struct srv_limits *lim);

/* ---- apply (storage thread, inside the batch's write transaction) ---- */

struct srv_apply_result {
	uint64_t id;   /* InternalRequest.id (0: nobody waits) */
	int err;       /* 0 or CAIRN_E*: the client gets srv_grpc_error(err) */
	uint8_t *resp; /* packed response message (malloc'd; caller frees) when
	                  want_response and err == 0, else NULL */
	size_t resp_len;
	int64_t revision; /* store revision after this entry */
	bool nospace;     /* the write failed for quota: raise the NOSPACE alarm */
};

/* Decodes one InternalRequest and applies it: put, delete_range, txn,
 * compaction (records it; physical removal is the caller's compact steps),
 * lease grant / revoke, alarm (kept in store meta "alarms"). When
 * want_response is false (another member proposed it) no response is
 * built. A request that fails changes nothing (the store guarantees it) and
 * is reported in out->err, with 0 returned: the batch goes on. Returns a
 * negative code only for a fatal store error (CAIRN_EIO/ENOMEM/ECORRUPT),
 * after which the batch must be aborted. Undecodable data is CAIRN_EPROTO in
 * out->err. */
int srv_apply_entry(struct store_wtxn *w, const struct srv_header *hdr, const uint8_t *data,
                    size_t len, bool want_response, struct srv_apply_result *out);

/* ---- reads (loop thread) ---- */

/* Serves a RangeRequest from a read transaction into a packed
 * RangeResponse (*out malloc'd; caller frees). */
int srv_range(struct store_rtxn *r, const struct srv_header *hdr,
              const Etcdserverpb__RangeRequest *req, uint8_t **out, size_t *out_len);

/* ---- alarms (kept by srv_apply_entry in store meta "alarms") ---- */

/* Active alarms of the view: *out malloc'd array of (member_id, alarm type)
 * pairs; caller frees. */
struct srv_alarm {
	uint64_t member_id;
	int type; /* ETCDSERVERPB__ALARM_TYPE__NOSPACE, __CORRUPT */
};
int srv_alarms_get(struct store_rtxn *r, struct srv_alarm **out, size_t *n);

/* ---- conversion helpers shared with the watch hub ---- */

/* Fills a Mvccpb__KeyValue that borrows kv's bytes (valid as long as kv). */
void srv_kv_to_pb(const struct store_kv *kv, Mvccpb__KeyValue *pb);

void srv_header_to_pb(const struct srv_header *h, int64_t revision,
                      Etcdserverpb__ResponseHeader *pb);

#endif
