/*
 * raft_codec.h — raft messages to and from bytes (proto/raft.proto,
 * package cairnraft). The only place that knows the wire format; the core
 * and its users see struct raft_msg only.
 *
 * Decoding is total: any byte string either decodes into a message that
 * passes the core's field checks or returns CAIRN_EPROTO; it never crashes,
 * whatever the input (a fuzz target calls it).
 *
 * Thread-safety: pure functions; any thread.
 */
#ifndef CAIRN_RAFT_CODEC_H
#define CAIRN_RAFT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

/* Encodes m into a malloc'd buffer (*out, caller frees with free()).
 * Returns 0, CAIRN_EINVAL (bad field) or CAIRN_ENOMEM. */
int raft_msg_encode(const struct raft_msg *m, uint8_t **out, size_t *len);

/* A decoded message: msg and everything it points to (entries, their data,
 * snapshot data) live until raft_msg_decoded_free(). */
struct raft_msg_decoded {
	struct raft_msg msg;
};

/* Decodes buf (borrowed). Returns 0, CAIRN_EPROTO or CAIRN_ENOMEM; on
 * error *out is untouched. */
int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg_decoded **out);
void raft_msg_decoded_free(struct raft_msg_decoded *d);

#endif
