/*
 * fuzz_requests.c — libFuzzer target: arbitrary bytes as every request
 * message cairnd decodes (the etcd v3 services, cairn's internal raft entry
 * payloads and membership records). The first byte picks the message type;
 * the rest is the body. A message that decodes is packed again and decoded
 * again: when that decodes, packing it once more must give the same bytes
 * (protobuf-c's encoder is deterministic). protobuf-c keeps unknown fields
 * and may re-encode one (field number 0 written with a non-minimal varint)
 * into bytes it then refuses itself; cairn re-packs client requests into its
 * raft entries, so such a request reaches the log and every member answers
 * it with the same decode error at apply time: nothing diverges or changes.
 * srv_pb_check, which cairnd runs on a client request (an etcdserverpb type)
 * before decoding it, must stay inside any input and must pass protobuf-c's
 * packing of one: a well-formed request is never refused there. Only an
 * unknown field that protobuf-c kept as sent may make it refuse, when etcd's
 * generated code takes its tag for field 0 or a negative one (the field
 * number is the tag shifted right and cut to int32): etcd refuses it too.
 *
 *   make fuzz-requests FUZZ_SECONDS=60
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "proto/internal.pb-c.h"
#include "proto/rpc.pb-c.h"
#include "server/pbcheck.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &etcdserverpb__range_request__descriptor,
    &etcdserverpb__put_request__descriptor,
    &etcdserverpb__delete_range_request__descriptor,
    &etcdserverpb__txn_request__descriptor,
    &etcdserverpb__compaction_request__descriptor,
    &etcdserverpb__watch_request__descriptor,
    &etcdserverpb__lease_grant_request__descriptor,
    &etcdserverpb__lease_revoke_request__descriptor,
    &etcdserverpb__lease_keep_alive_request__descriptor,
    &etcdserverpb__lease_time_to_live_request__descriptor,
    &etcdserverpb__lease_leases_request__descriptor,
    &etcdserverpb__alarm_request__descriptor,
    &etcdserverpb__status_request__descriptor,
    &etcdserverpb__defragment_request__descriptor,
    &etcdserverpb__hash_request__descriptor,
    &etcdserverpb__hash_kvrequest__descriptor,
    &etcdserverpb__snapshot_request__descriptor,
    &etcdserverpb__move_leader_request__descriptor,
    &etcdserverpb__member_add_request__descriptor,
    &etcdserverpb__member_remove_request__descriptor,
    &etcdserverpb__member_update_request__descriptor,
    &etcdserverpb__member_list_request__descriptor,
    &etcdserverpb__member_promote_request__descriptor,
    &cairnpb__internal_request__descriptor,
    &cairnpb__membership__descriptor,
    &cairnpb__conf_change__descriptor,
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const ProtobufCMessageDescriptor *d = types[data[0] % N_TYPES];
	char why[256];
	bool client = strcmp(d->package_name, "etcdserverpb") == 0;
	if (client)
		srv_pb_check(d, data + 1, size - 1, why, sizeof(why));
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
	if (!m)
		return 0;
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		abort();
	if (protobuf_c_message_pack(m, buf) != len)
		abort();
	if (client && srv_pb_check(d, buf, len, why, sizeof(why)) != 0 &&
	    strstr(why, ": illegal tag ") == NULL)
		abort();
	ProtobufCMessage *again = protobuf_c_message_unpack(d, NULL, len, buf);
	if (!again) {
		free(buf);
		protobuf_c_message_free_unpacked(m, NULL);
		return 0;
	}
	uint8_t *buf2 = malloc(len ? len : 1);
	if (!buf2 || protobuf_c_message_pack(again, buf2) != len || memcmp(buf, buf2, len) != 0)
		abort();
	free(buf2);
	free(buf);
	protobuf_c_message_free_unpacked(again, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
