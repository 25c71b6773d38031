/*
 * grpc_wire.c — gRPC length-prefixed framing, percent-encoding, timeouts.
 *
 * The deframer keeps at most one partial message. HOW IT WORKS: the 5-byte
 * header is gathered byte by byte into hdr[]; once complete, the announced
 * length is checked against max before anything is allocated (so a peer
 * cannot make us allocate by announcing a huge length), then the payload is
 * either returned in place (whole message in the input) or copied into buf,
 * which grows to the message size, never beyond max.
 */
#include "rpc/grpc_wire.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"

void grpc_deframer_init(struct grpc_deframer *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max;
}

void grpc_deframer_free(struct grpc_deframer *d)
{
	free(d->buf);
	d->buf = NULL;
	d->cap = 0;
	d->have = 0;
	d->hdr_len = 0;
}

size_t grpc_deframer_buffered(const struct grpc_deframer *d)
{
	return d->cap + d->hdr_len;
}

bool grpc_deframer_idle(const struct grpc_deframer *d)
{
	return d->hdr_len == 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int grpc_deframe(struct grpc_deframer *d, const uint8_t **data, size_t *len, struct grpc_msg *out)
{
	if (d->release) {
		free(d->buf);
		d->buf = NULL;
		d->cap = 0;
		d->release = false;
	}
	while (d->hdr_len < GRPC_FRAME_HDR) {
		if (*len == 0)
			return 0;
		d->hdr[d->hdr_len++] = **data;
		(*data)++;
		(*len)--;
		if (d->hdr_len == GRPC_FRAME_HDR) {
			uint32_t n = be32(d->hdr + 1);
			if (n > d->max) {
				d->too_big = n;
				return CAIRN_ETOOBIG;
			}
			d->want = n;
			d->have = 0;
		}
	}
	out->flag = d->hdr[0];
	if (d->have == 0 && *len >= d->want) {
		/* Whole payload in the input: no copy. */
		out->data = *data;
		out->len = d->want;
		*data += d->want;
		*len -= d->want;
		d->hdr_len = 0;
		return 1;
	}
	size_t take = d->want - d->have;
	if (take > *len)
		take = *len;
	if (d->cap < d->want) {
		/* Grow to the message size at once: it is known and bounded. */
		uint8_t *nb = realloc(d->buf, d->want);
		if (nb == NULL)
			return CAIRN_ENOMEM;
		d->buf = nb;
		d->cap = d->want;
	}
	memcpy(d->buf + d->have, *data, take);
	d->have += take;
	*data += take;
	*len -= take;
	if (d->have < d->want)
		return 0;
	out->data = d->buf;
	out->len = d->want;
	d->hdr_len = 0;
	d->have = 0;
	/* Large buffers are not kept between messages, so idle streams stay
	 * small; out->data must live until the next call, so drop it then. */
	d->release = d->cap > 64 * 1024;
	return 1;
}

void grpc_frame_header(uint8_t out[GRPC_FRAME_HDR], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

static const char hexdig[] = "0123456789ABCDEF";

size_t grpc_percent_encode(const char *in, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	bool full = cap == 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		char tok[3] = {(char)c, 0, 0};
		size_t k = 1;
		if (c < 0x20 || c > 0x7e || c == '%') {
			tok[0] = '%';
			tok[1] = hexdig[c >> 4];
			tok[2] = hexdig[c & 15];
			k = 3;
		}
		/* Never emit half an escape: stop at the first token that does not fit. */
		if (!full && o + k < cap)
			memcpy(out + o, tok, k);
		else if (!full) {
			out[o] = '\0';
			full = true;
		}
		o += k;
	}
	if (!full)
		out[o] = '\0';
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t grpc_percent_decode(char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			s[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	s[o] = '\0';
	return o;
}

int grpc_timeout_parse(const char *s, size_t n, uint64_t *ms)
{
	if (n < 2 || n > 9)
		return CAIRN_EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return CAIRN_EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	switch (s[n - 1]) {
	case 'H':
		v *= 3600000;
		break;
	case 'M':
		v *= 60000;
		break;
	case 'S':
		v *= 1000;
		break;
	case 'm':
		break;
	case 'u':
		v = (v + 999) / 1000;
		break;
	case 'n':
		v = (v + 999999) / 1000000;
		break;
	default:
		return CAIRN_EINVAL;
	}
	*ms = v;
	return 0;
}

void grpc_timeout_format(uint64_t ms, char out[16])
{
	static const struct {
		char unit;
		uint64_t div;
	} units[] = {{'m', 1}, {'S', 1000}, {'M', 60000}, {'H', 3600000}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		/* Round up so the server never sees a shorter deadline. */
		uint64_t v = (ms + units[i].div - 1) / units[i].div;
		if (v <= 99999999) {
			int k = 0;
			char tmp[10];
			do {
				tmp[k++] = (char)('0' + v % 10);
				v /= 10;
			} while (v > 0);
			int o = 0;
			while (k > 0)
				out[o++] = tmp[--k];
			out[o++] = units[i].unit;
			out[o] = '\0';
			return;
		}
	}
	memcpy(out, "99999999H", 10);
}
