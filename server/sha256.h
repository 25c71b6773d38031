/*
 * sha256.h — SHA-256 (FIPS 180-4), incremental. etcd appends the SHA-256 of
 * a snapshot to the Snapshot stream and etcdctl checks it; cairn does the
 * same. Pure; any thread.
 */
#ifndef SRV_SHA256_H
#define SRV_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct srv_sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t n;
};

void srv_sha256_init(struct srv_sha256 *s);
void srv_sha256_update(struct srv_sha256 *s, const void *data, size_t len);
void srv_sha256_final(struct srv_sha256 *s, uint8_t out[32]);

#endif
