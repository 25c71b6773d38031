/*
 * grpc_wire.h — the byte-level pieces of gRPC over HTTP/2, as pure functions:
 * the 5-byte length-prefixed message framing (an incremental deframer),
 * grpc-message percent-encoding and grpc-timeout parsing/formatting.
 *
 * No I/O, no libuv, no nghttp2: the fuzzer and the unit tests drive these
 * directly. See grpc/doc/PROTOCOL-HTTP2.md for the formats:
 *   Length-Prefixed-Message = Compressed-Flag(1 byte) Message-Length(4, BE) Message
 *   Timeout = 1*8DIGIT TimeoutUnit ("H" "M" "S" "m" "u" "n")
 *   grpc-message: bytes outside 0x20..0x7E, and '%', as %XX.
 *
 * Threading: none of these touch shared state; a deframer belongs to its user.
 */
#ifndef CAIRN_RPC_GRPC_WIRE_H
#define CAIRN_RPC_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRPC_FRAME_HDR 5

/* Incremental deframer: feed it DATA frame payloads as they come. Zero it
 * (or grpc_deframer_init) before use; grpc_deframer_free releases its buffer. */
struct grpc_deframer {
	size_t max; /* largest message accepted */
	uint8_t hdr[GRPC_FRAME_HDR];
	uint8_t hdr_len;  /* header bytes held so far */
	uint8_t *buf;     /* payload of a message split across feeds */
	size_t cap;       /* allocated size of buf */
	size_t have;      /* payload bytes held */
	size_t want;      /* payload length of the current message */
	uint32_t too_big; /* length announced when CAIRN_ETOOBIG returned */
	bool release;     /* free buf on the next call (it was large) */
};

struct grpc_msg {
	const uint8_t *data; /* valid until the next call on the deframer (or
	                        until the input buffer goes away) */
	size_t len;
	uint8_t flag; /* the Compressed-Flag byte as sent: 0, 1 (compressed) or
	                 anything else, which the caller refuses (grpc-go reads
	                 the whole message before it judges the flag) */
};

void grpc_deframer_init(struct grpc_deframer *d, size_t max);
void grpc_deframer_free(struct grpc_deframer *d);

/* Consumes bytes from *data, *len (advancing both) until one message is
 * complete. Returns 1 with *out filled (call again for the next message),
 * 0 when all input was consumed without completing a message, or an error:
 * CAIRN_ETOOBIG (length over max; d->too_big holds it), CAIRN_ENOMEM. After
 * an error the deframer is unusable (free it). A message wholly inside the
 * input is returned in place, not copied. */
int grpc_deframe(struct grpc_deframer *d, const uint8_t **data, size_t *len, struct grpc_msg *out);

/* Bytes the deframer holds (for per-connection inbound accounting). */
size_t grpc_deframer_buffered(const struct grpc_deframer *d);
/* True when between messages (nothing partial held). */
bool grpc_deframer_idle(const struct grpc_deframer *d);

/* Writes the 5-byte prefix of an uncompressed message of `len` bytes. */
void grpc_frame_header(uint8_t out[GRPC_FRAME_HDR], uint32_t len);

/* Percent-encodes `in` (n bytes) for grpc-message into `out` (cap bytes,
 * always NUL-terminated when cap > 0). Returns the length the full encoding
 * needs, excluding the NUL (like snprintf): out is truncated if >= cap. */
size_t grpc_percent_encode(const char *in, size_t n, char *out, size_t cap);
/* Decodes in place; malformed escapes are kept as they are. Returns the new
 * length (the string stays NUL-terminated). */
size_t grpc_percent_decode(char *s, size_t n);

/* Parses a grpc-timeout value into milliseconds (rounded up; at least 1 for
 * a non-zero value). Returns 0 on success, CAIRN_EINVAL if malformed. */
int grpc_timeout_parse(const char *s, size_t n, uint64_t *ms);
/* Formats ms as a grpc-timeout value ("<=8 digits" + unit) into out[16]. */
void grpc_timeout_format(uint64_t ms, char out[16]);

#endif
