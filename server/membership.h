/*
 * membership.h — the cluster's members as the loop thread keeps them.
 *
 * The record changes only by applying committed entries (conf changes and
 * member updates, in log order) and travels to the store packed as
 * Cairnpb__Membership in the same batch that applies the entry, so after a
 * crash the stored record matches the applied index. Loop thread only.
 */
#ifndef SRV_MEMBERSHIP_H
#define SRV_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/internal.pb-c.h"
#include "server/config.h"

struct srv_mb {
	uint64_t id;
	char *name; /* "" until the member published it */
	int n_peer, n_client;
	char *peer[SRV_MAX_URLS];
	char *client[SRV_MAX_URLS];
	bool learner;
};

struct srv_membership {
	uint64_t cluster_id;
	int n;
	struct srv_mb mb[SRV_MAX_MEMBERS];
};

/* From the --initial-cluster flags (ids derived as etcd derives them). */
int srv_membership_bootstrap(struct srv_membership *ms, const struct srv_config *cfg);
int srv_membership_from_pb(struct srv_membership *ms, const Cairnpb__Membership *pb);
/* Packs into a malloc'd buffer (caller frees). */
int srv_membership_pack(const struct srv_membership *ms, uint8_t **out, size_t *len);
/* Applies one change: add (voter or learner), remove, promote, or update
 * (peer URLs and/or name + client URLs). CAIRN_EEXIST / CAIRN_ENOTFOUND
 * when it cannot apply (the entry is then a no-op on every member alike). */
int srv_membership_apply(struct srv_membership *ms, const Cairnpb__ConfChange *cc);
struct srv_mb *srv_membership_find(struct srv_membership *ms, uint64_t id);
/* A member already using one of urls as a peer URL, or NULL. */
struct srv_mb *srv_membership_find_peer_url(struct srv_membership *ms, char *const *urls, size_t n);
void srv_membership_free(struct srv_membership *ms);

#endif
