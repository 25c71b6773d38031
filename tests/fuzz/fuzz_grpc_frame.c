/* fuzz_grpc_frame.c — libFuzzer target for what rpc/ parses from the network
 * without nghttp2's help: gRPC length-prefixed framing (fed in chunks whose
 * sizes come from the input), grpc-message percent-decoding, grpc-timeout and
 * HTTP/1.1 request heads. Invariants checked: messages never exceed the limit,
 * bytes consumed add up, encode/decode round-trips.
 *
 *   make fuzz-rpc            build build-fuzz/fuzz_grpc_frame
 *   make fuzz-rpc-short      run it for FUZZ_SECONDS (default 60)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/grpc_wire.h"
#include "rpc/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_deframe(const uint8_t *data, size_t size)
{
	if (size < 2)
		return;
	size_t max = (size_t)data[0] * 16;
	size_t step = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	struct grpc_deframer d;
	grpc_deframer_init(&d, max);
	size_t consumed = 0;
	for (size_t off = 0; off < size; off += step) {
		const uint8_t *p = data + off;
		size_t len = size - off < step ? size - off : step;
		size_t start = len;
		struct grpc_msg m;
		int rv;
		while ((rv = grpc_deframe(&d, &p, &len, &m)) == 1) {
			if (m.len > max)
				abort();
			volatile uint8_t sink = 0;
			for (size_t i = 0; i < m.len; i++)
				sink ^= m.data[i];
			(void)sink;
		}
		if (rv < 0)
			break;
		if (len != 0 || p != data + off + start)
			abort();
		consumed += start;
	}
	(void)consumed;
	grpc_deframer_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_deframe(data, size);

	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	size_t n = grpc_percent_decode(s, size);
	if (n > size)
		abort();
	char *enc = malloc(3 * n + 1);
	size_t en = grpc_percent_encode(s, n, enc, 3 * n + 1);
	if (en > 3 * n)
		abort();
	size_t dn = grpc_percent_decode(enc, en);
	if (dn != n || memcmp(enc, s, n) != 0)
		abort();
	free(enc);

	uint64_t ms;
	grpc_timeout_parse((const char *)data, size, &ms);

	struct http1_request req;
	int rv = http1_parse((const char *)data, size, &req);
	if (rv > 0 && (size_t)rv > size)
		abort();
	if (rv > 0 && strlen(req.path) >= sizeof(req.path))
		abort();
	free(s);
	return 0;
}
