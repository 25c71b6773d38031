/*
 * pbcheck.h — decodes a request the way etcd's generated Go code does, to
 * tell whether etcd would refuse it and in which words.
 *
 * etcd's messages are compiled by gogo/protobuf into Unmarshal methods
 * (api/etcdserverpb/rpc.pb.go, gogo v1.3.2 in etcd 3.5), and grpc-go answers
 * a request they refuse with INTERNAL "grpc: error unmarshalling request: "
 * (a stream: "grpc: failed to unmarshal the received message: ") followed
 * by that method's error: "unexpected EOF", "proto: integer overflow",
 * "proto: wrong wireType = 0 for field Key", "proto: RangeRequest: illegal
 * tag 0 (wire type 0)", ... protobuf-c refuses a different set of inputs and
 * says nothing about why, so cairnd walks each request over its descriptor
 * with this function before the handler decodes it (member.c installs it as
 * the rpc server's decode check).
 *
 * The walk is the generated code's, quirks included: field numbers are the
 * tag shifted right and truncated to int32 (a huge tag can land on a small
 * field number), "illegal tag" prints the whole tag as its "wire type", a
 * packed varint may run past its own length (only the message's end is
 * checked), unknown fields are skipped with groups nested to any depth, and
 * the Go names of messages ("Compare", "Parent_Child") and fields
 * ("RangeEnd", "PeerURLs", "Remaining_TTL") are derived from the proto names
 * as protoc-gen-gogo derives them.
 *
 * Pure; any thread. Limit: embedded messages nested deeper than
 * SRV_PB_MAX_DEPTH are not looked into (accepted here; protobuf-c then
 * decides).
 */
#ifndef SRV_PBCHECK_H
#define SRV_PBCHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define SRV_PB_MAX_DEPTH 64

/* 0 when etcd's Unmarshal of a `desc` message accepts buf[0..len);
 * otherwise CAIRN_EPROTO with the Go error text written to why (cap bytes,
 * always NUL-terminated when cap > 0). */
int srv_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, char *why,
                 size_t cap);

#endif
