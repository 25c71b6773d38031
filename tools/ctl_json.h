/*
 * ctl_json.h — protobuf-c messages printed as Go's encoding/json prints the
 * gogo-generated etcd structs, so `cairnctl -w json` output matches
 * `etcdctl -w json` byte for byte.
 *
 * The rules reproduced (encoding/json on etcd's *.pb.go types): fields in
 * declaration order named by their proto name (the `json:"name,omitempty"`
 * tag), every field omitempty (0, false, "", empty bytes, empty repeated,
 * nil message are left out), enums as numbers, bytes as padded standard
 * base64, 64-bit integers as plain decimal, strings escaped like Go (HTML
 * characters as \u003c, \u003e, \u0026). A oneof is Go's interface field:
 * "Response":{"ResponsePut":{...}}. Fields that etcd 3.4's etcdctl does not
 * know (later additions marked "// 3.6" in proto/rpc.proto) are left out.
 *
 * Output goes to a stdio stream; nothing is allocated.
 */
#ifndef CAIRN_TOOLS_CTL_JSON_H
#define CAIRN_TOOLS_CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

/* Prints msg as a JSON object ("null" for NULL). */
void ctl_json_msg(FILE *f, const ProtobufCMessage *msg);
/* Prints the fields of msg without the braces, each preceded by a comma
 * when *first is false (Go's embedded struct: fields promoted into the
 * parent). Sets *first to false once something was printed. */
void ctl_json_fields(FILE *f, const ProtobufCMessage *msg, bool *first);
/* A JSON string literal, escaped as Go does. */
void ctl_json_str(FILE *f, const char *s, size_t len);
/* Padded standard base64 inside quotes. */
void ctl_json_b64(FILE *f, const uint8_t *p, size_t len);

#endif
