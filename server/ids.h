/*
 * ids.h — member and cluster ids derived exactly as etcd derives them, so
 * that ids are stable across restarts and match what operators expect.
 *
 *   member id  = first 8 bytes (big-endian) of SHA-1(sorted peer URLs
 *                concatenated ‖ cluster token [‖ unix time, for MemberAdd])
 *   cluster id = first 8 bytes (big-endian) of SHA-1(sorted member ids, each
 *                8 bytes big-endian)
 *
 * Pure functions; any thread.
 */
#ifndef SRV_IDS_H
#define SRV_IDS_H

#include <stddef.h>
#include <stdint.h>

/* SHA-1 of data into out[20]. */
void srv_sha1(const void *data, size_t len, uint8_t out[20]);

/* At most this many URLs or member ids are hashed. */
#define SRV_IDS_MAX 64

/* urls is not modified (a sorted copy is hashed). now_unix < 0 means "no time
 * component" (bootstrap members); MemberAdd passes the current time.
 * Returns 0 (never a member id) for more than SRV_IDS_MAX urls or when out
 * of memory. */
uint64_t srv_member_id(const char *const *urls, int n_urls, const char *token, int64_t now_unix);

/* 0 for more than SRV_IDS_MAX ids. */
uint64_t srv_cluster_id(const uint64_t *member_ids, int n);

#endif
