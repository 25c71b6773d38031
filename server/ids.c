/* ids.c — SHA-1 (FIPS 180-4) and etcd's member/cluster id derivation. */
#include "server/ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6;
		}
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void srv_sha1(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	const uint8_t *p = data;
	size_t left = len;
	for (; left >= 64; left -= 64, p += 64)
		sha1_block(h, p);
	uint8_t tail[128] = {0};
	memcpy(tail, p, left);
	tail[left] = 0x80;
	size_t tlen = (left < 56) ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
	sha1_block(h, tail);
	if (tlen == 128)
		sha1_block(h, tail + 64);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

static uint64_t be64_prefix(const uint8_t d[20])
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | d[i];
	return v;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t srv_member_id(const char *const *urls, int n_urls, const char *token, int64_t now_unix)
{
	const char *sorted[SRV_IDS_MAX];
	if (n_urls < 0 || n_urls > SRV_IDS_MAX)
		return 0;
	size_t total = strlen(token) + 24;
	for (int i = 0; i < n_urls; i++) {
		sorted[i] = urls[i];
		total += strlen(urls[i]);
	}
	qsort(sorted, (size_t)n_urls, sizeof(*sorted), cmp_str);
	char *buf = malloc(total);
	if (!buf)
		return 0;
	size_t off = 0;
	for (int i = 0; i < n_urls; i++) {
		size_t l = strlen(sorted[i]);
		memcpy(buf + off, sorted[i], l);
		off += l;
	}
	memcpy(buf + off, token, strlen(token));
	off += strlen(token);
	if (now_unix >= 0)
		off += (size_t)snprintf(buf + off, total - off, "%lld", (long long)now_unix);
	uint8_t d[20];
	srv_sha1(buf, off, d);
	free(buf);
	return be64_prefix(d);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

uint64_t srv_cluster_id(const uint64_t *member_ids, int n)
{
	uint64_t ids[SRV_IDS_MAX];
	uint8_t b[8 * SRV_IDS_MAX];
	if (n < 0 || n > SRV_IDS_MAX)
		return 0;
	memcpy(ids, member_ids, sizeof(*ids) * (size_t)n);
	qsort(ids, (size_t)n, sizeof(*ids), cmp_u64);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < 8; j++)
			b[8 * i + j] = (uint8_t)(ids[i] >> (56 - 8 * j));
	uint8_t d[20];
	srv_sha1(b, 8 * (size_t)n, d);
	return be64_prefix(d);
}
