/*
 * apply_int.h — private to server/apply.c and server/convert.c: a bump
 * arena for the short-lived protobuf and store structs one request needs,
 * and the conversions between etcd protobuf messages and store requests /
 * responses.
 *
 * Ownership: everything allocated from an arena lives until srv_arena_free.
 * Converted requests borrow the bytes of the protobuf message they came
 * from; converted responses borrow the bytes of the store response.
 */
#ifndef SRV_APPLY_INT_H
#define SRV_APPLY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "server/apply.h"

struct srv_arena_chunk;

/* Starts in a caller-provided (stack) buffer, then mallocs chunks. */
struct srv_arena {
	uint8_t *cur;
	size_t left;
	struct srv_arena_chunk *chunks; /* newest (and largest) first */
	size_t next_cap;                /* size of the next chunk (0: the minimum) */
};

void srv_arena_init(struct srv_arena *a, void *buf, size_t len);
/* Zeroed, aligned memory; NULL when out of memory. */
void *srv_arena_alloc(struct srv_arena *a, size_t n, size_t size);
void srv_arena_free(struct srv_arena *a);
/* Frees everything allocated but keeps the newest chunk for the next
 * allocations: an arena refilled over and over (a batch) stops calling
 * malloc once one chunk holds a whole fill. */
void srv_arena_rewind(struct srv_arena *a);

/* ---- protobuf request -> store request (borrowing the message's bytes) ---- */

void srv_conv_range_req(const Etcdserverpb__RangeRequest *pb, struct store_range_req *out);
void srv_conv_put_req(const Etcdserverpb__PutRequest *pb, struct store_put_req *out);
void srv_conv_delete_req(const Etcdserverpb__DeleteRangeRequest *pb, struct store_delete_req *out);
/* CAIRN_ENOMEM, or CAIRN_EKEYNOTFOUND for an op with nothing set (etcd's
 * answer to an empty RequestOp). */
int srv_conv_txn_req(struct srv_arena *a, const Etcdserverpb__TxnRequest *pb,
                     struct store_txn_req *out);

/* ---- store response -> protobuf response (borrowing the store's bytes) ---- */

/* Nested responses (ops of a txn) carry a header with only the revision, as
 * etcd's do (an empty one for a nested txn); top-level ones get the full
 * header from the caller. NULL on ENOMEM. */
Etcdserverpb__RangeResponse *srv_conv_range_resp(struct srv_arena *a,
                                                 const struct store_range_resp *r);
Etcdserverpb__PutResponse *srv_conv_put_resp(struct srv_arena *a, const struct store_put_resp *r);
Etcdserverpb__DeleteRangeResponse *srv_conv_delete_resp(struct srv_arena *a,
                                                        const struct store_delete_resp *r);
Etcdserverpb__TxnResponse *srv_conv_txn_resp(struct srv_arena *a, const struct store_txn_resp *r);

/* Packs msg into one malloc'd buffer. CAIRN_ENOMEM. */
int srv_conv_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

#endif
