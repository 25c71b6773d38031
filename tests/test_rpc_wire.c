/* test_rpc_wire.c — the pure parts of rpc/: gRPC message deframing (split at
 * every byte, several per feed, limits, bad flags), grpc-message
 * percent-encoding, grpc-timeout, HTTP/1.1 request parsing, URL parsing,
 * the log sink and its per-call-site rate limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "rpc/grpc_wire.h"
#include "rpc/http1.h"
#include "rpc/rpc_int.h"

static size_t put_msg(uint8_t *out, uint8_t flag, const void *data, uint32_t len)
{
	grpc_frame_header(out, len);
	out[0] = flag;
	memcpy(out + GRPC_FRAME_HDR, data, len);
	return GRPC_FRAME_HDR + len;
}

/* Feeds `wire` in chunks of `step` bytes, collecting messages into out. */
static int deframe_all(const uint8_t *wire, size_t n, size_t step, size_t max, uint8_t *out,
                       size_t *outlen, int *count)
{
	struct grpc_deframer d;
	grpc_deframer_init(&d, max);
	*outlen = 0;
	*count = 0;
	int rv = 0;
	for (size_t off = 0; off < n && rv >= 0; off += step) {
		const uint8_t *p = wire + off;
		size_t len = n - off < step ? n - off : step;
		struct grpc_msg m;
		while ((rv = grpc_deframe(&d, &p, &len, &m)) == 1) {
			memcpy(out + *outlen, m.data, m.len);
			*outlen += m.len;
			out[(*outlen)++] = '|';
			(*count)++;
		}
	}
	if (rv >= 0 && !grpc_deframer_idle(&d))
		rv = 2; /* partial message left */
	grpc_deframer_free(&d);
	return rv;
}

static void test_deframe_every_split(void **state)
{
	(void)state;
	uint8_t wire[300000], out[300000];
	size_t n = 0;
	static uint8_t big[100000];
	memset(big, 'b', sizeof(big));
	n += put_msg(wire + n, 0, "hello", 5);
	n += put_msg(wire + n, 0, "", 0);
	n += put_msg(wire + n, 0, big, sizeof(big));
	n += put_msg(wire + n, 0, "end", 3);
	size_t steps[] = {1, 2, 3, 4, 5, 6, 7, 64, 1000, 70000, sizeof(wire)};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t outlen;
		int count;
		assert_int_equal(deframe_all(wire, n, steps[i], 1 << 20, out, &outlen, &count), 0);
		assert_int_equal(count, 4);
		assert_memory_equal(out, "hello||", 7);
		assert_int_equal(outlen, 5 + 1 + 1 + sizeof(big) + 1 + 3 + 1);
		assert_memory_equal(out + outlen - 4, "end|", 4);
	}
}

static void test_deframe_limits_and_flags(void **state)
{
	(void)state;
	uint8_t wire[64], out[64];
	size_t outlen;
	int count;
	/* Exactly max is fine, max + 1 is refused before any allocation. */
	size_t n = put_msg(wire, 0, "0123456789", 10);
	assert_int_equal(deframe_all(wire, n, n, 10, out, &outlen, &count), 0);
	assert_int_equal(deframe_all(wire, n, n, 9, out, &outlen, &count), CAIRN_ETOOBIG);
	struct grpc_deframer d;
	grpc_deframer_init(&d, 100);
	uint8_t hdr[5] = {0, 0xff, 0xff, 0xff, 0xff};
	const uint8_t *p = hdr;
	size_t len = 5;
	struct grpc_msg m;
	assert_int_equal(grpc_deframe(&d, &p, &len, &m), CAIRN_ETOOBIG);
	assert_int_equal(d.too_big, 0xffffffffu);
	assert_int_equal(grpc_deframer_buffered(&d), 5);
	grpc_deframer_free(&d);
	/* The flag byte is handed over as sent, whole message and all: the
	 * caller judges it (grpc-go reads the message before the flag). */
	for (uint8_t flag = 1; flag <= 2; flag++) {
		n = put_msg(wire, flag, "x", 1);
		grpc_deframer_init(&d, 10);
		p = wire;
		len = n;
		assert_int_equal(grpc_deframe(&d, &p, &len, &m), 1);
		assert_int_equal(m.flag, flag);
		assert_int_equal(m.len, 1);
		grpc_deframer_free(&d);
	}
	/* A truncated message stays partial. */
	n = put_msg(wire, 0, "abcdef", 6);
	assert_int_equal(deframe_all(wire, n - 2, 3, 10, out, &outlen, &count), 2);
	assert_int_equal(count, 0);
}

static void test_percent_encoding(void **state)
{
	(void)state;
	char out[256];
	const char *in = "key not found \xc3\xa9 100%\n";
	size_t n = grpc_percent_encode(in, strlen(in), out, sizeof(out));
	assert_string_equal(out, "key not found %C3%A9 100%25%0A");
	assert_int_equal(n, strlen(out));
	assert_int_equal(grpc_percent_decode(out, n), strlen(in));
	assert_string_equal(out, in);
	/* Truncation never splits an escape and reports the full length. */
	char small[8];
	n = grpc_percent_encode("abcde\xff", 6, small, sizeof(small));
	assert_int_equal(n, 8);
	assert_string_equal(small, "abcde");
	/* Malformed escapes are kept. */
	char bad[] = "100% %zz %4";
	grpc_percent_decode(bad, strlen(bad));
	assert_string_equal(bad, "100% %zz %4");
	/* Every byte value round-trips. */
	char all[256], enc[1024];
	for (int i = 0; i < 256; i++)
		all[i] = (char)(i + 1);
	n = grpc_percent_encode(all, 255, enc, sizeof(enc));
	assert_int_equal(grpc_percent_decode(enc, n), 255);
	assert_memory_equal(enc, all, 255);
}

static void test_timeout(void **state)
{
	(void)state;
	uint64_t ms;
	assert_int_equal(grpc_timeout_parse("5S", 2, &ms), 0);
	assert_int_equal(ms, 5000);
	assert_int_equal(grpc_timeout_parse("1H", 2, &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(grpc_timeout_parse("2M", 2, &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(grpc_timeout_parse("250m", 4, &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(grpc_timeout_parse("1500u", 5, &ms), 0);
	assert_int_equal(ms, 2);
	assert_int_equal(grpc_timeout_parse("1n", 2, &ms), 0);
	assert_int_equal(ms, 1);
	assert_int_equal(grpc_timeout_parse("99999999H", 9, &ms), 0);
	assert_int_equal(grpc_timeout_parse("123456789S", 10, &ms), CAIRN_EINVAL);
	assert_int_equal(grpc_timeout_parse("S", 1, &ms), CAIRN_EINVAL);
	assert_int_equal(grpc_timeout_parse("1x", 2, &ms), CAIRN_EINVAL);
	assert_int_equal(grpc_timeout_parse("-1S", 3, &ms), CAIRN_EINVAL);
	uint64_t vals[] = {1, 999, 100000000, 99999999, 123456789012ULL};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char buf[16];
		grpc_timeout_format(vals[i], buf);
		assert_int_equal(grpc_timeout_parse(buf, strlen(buf), &ms), 0);
		assert_true(ms >= vals[i]);
	}
}

static void test_http1_parse(void **state)
{
	(void)state;
	struct http1_request r;
	const char *a = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /x";
	assert_int_equal(http1_parse(a, strlen(a), &r), 33);
	assert_true(r.get);
	assert_true(r.keep_alive);
	assert_string_equal(r.path, "/health");
	for (size_t i = 0; i < 33; i++)
		assert_int_equal(http1_parse(a, i, &r), 0);
	const char *b = "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n";
	assert_int_equal(http1_parse(b, strlen(b), &r), (int)strlen(b));
	assert_true(r.head);
	assert_false(r.keep_alive);
	assert_string_equal(r.path, "/metrics?x=1");
	const char *c = "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n";
	assert_int_equal(http1_parse(c, strlen(c), &r), (int)strlen(c));
	assert_false(r.keep_alive);
	const char *d = "POST /v3/kv/range HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
	assert_int_equal(http1_parse(d, strlen(d) - 1, &r), 0);
	assert_int_equal(http1_parse(d, strlen(d), &r), (int)strlen(d));
	assert_false(r.get);
	assert_int_equal(http1_parse("GARBAGE\r\n\r\n", 11, &r), CAIRN_EPROTO);
	assert_int_equal(http1_parse("GET x HTTP/1.1\r\n\r\n", 18, &r), CAIRN_EPROTO);
	assert_int_equal(http1_parse("GET / HTTP/2.0\r\n\r\n", 18, &r), CAIRN_EPROTO);
	const char *e = "GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
	assert_int_equal(http1_parse(e, strlen(e), &r), CAIRN_ETOOBIG);
	char big[HTTP1_MAX_HEAD + 10];
	memset(big, 'a', sizeof(big));
	assert_int_equal(http1_parse(big, sizeof(big), &r), CAIRN_ETOOBIG);
}

static void test_parse_url(void **state)
{
	(void)state;
	struct rpc_addr a;
	assert_int_equal(rpc_parse_url("http://127.0.0.1:2379", &a), 0);
	assert_false(a.is_unix);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(rpc_parse_url("127.0.0.1:2379", &a), 0);
	assert_int_equal(rpc_parse_url("http://localhost:0", &a), 0);
	assert_int_equal(rpc_parse_url("http://[::1]:2379", &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(rpc_parse_url("unix:///tmp/x.sock", &a), 0);
	assert_true(a.is_unix);
	assert_string_equal(a.path, "/tmp/x.sock");
	assert_int_equal(rpc_parse_url("https://127.0.0.1:2379", &a), CAIRN_EADDR);
	assert_int_equal(rpc_parse_url("http://127.0.0.1", &a), CAIRN_EADDR);
	assert_int_equal(rpc_parse_url("http://127.0.0.1:99999", &a), CAIRN_EADDR);
	assert_int_equal(rpc_parse_url("http://example.invalid:1", &a), CAIRN_EADDR);
}

struct log_lines {
	int n;
	char last[600];
};

static void log_sink(void *ud, const char *line)
{
	struct log_lines *l = ud;
	l->n++;
	snprintf(l->last, sizeof(l->last), "%s", line);
}

/* A member cut off from its peers fails a connect several times a second:
 * rpc's lines reach the owner's sink, at most RPC_LOG_BURST per period per
 * call site, without holding back other call sites. */
static void test_log_sink_rate_limit(void **state)
{
	(void)state;
	struct log_lines l = {0};
	rpc_set_log_sink(log_sink, &l);
	for (int i = 0; i < 3 * RPC_LOG_BURST; i++)
		rpc_log("connect: %s", "invalid argument");
	assert_int_equal(l.n, RPC_LOG_BURST);
	assert_string_equal(l.last, "connect: invalid argument");
	rpc_log("another site %d", 1); /* its own budget */
	assert_int_equal(l.n, RPC_LOG_BURST + 1);
	assert_string_equal(l.last, "another site 1");
	rpc_set_log_sink(NULL, NULL);
	assert_int_equal(l.n, RPC_LOG_BURST + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_deframe_every_split),
	    cmocka_unit_test(test_deframe_limits_and_flags),
	    cmocka_unit_test(test_percent_encoding),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_http1_parse),
	    cmocka_unit_test(test_parse_url),
	    cmocka_unit_test(test_log_sink_rate_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
