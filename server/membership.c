/* membership.c — see membership.h. */
#include "server/membership.h"

#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "server/ids.h"

static void mb_free(struct srv_mb *mb)
{
	free(mb->name);
	for (int i = 0; i < mb->n_peer; i++)
		free(mb->peer[i]);
	for (int i = 0; i < mb->n_client; i++)
		free(mb->client[i]);
	memset(mb, 0, sizeof(*mb));
}

void srv_membership_free(struct srv_membership *ms)
{
	for (int i = 0; i < ms->n; i++)
		mb_free(&ms->mb[i]);
	ms->n = 0;
}

static int set_urls(char **dst, int *n, char *const *src, size_t m)
{
	for (int i = 0; i < *n; i++)
		free(dst[i]);
	*n = 0;
	for (size_t i = 0; i < m && i < SRV_MAX_URLS; i++) {
		if (!(dst[i] = strdup(src[i])))
			return CAIRN_ENOMEM;
		(*n)++;
	}
	return 0;
}

static int set_name(struct srv_mb *mb, const char *name)
{
	char *n = strdup(name ? name : "");
	if (!n)
		return CAIRN_ENOMEM;
	free(mb->name);
	mb->name = n;
	return 0;
}

int srv_membership_bootstrap(struct srv_membership *ms, const struct srv_config *cfg)
{
	memset(ms, 0, sizeof(*ms));
	uint64_t ids[SRV_MAX_MEMBERS];
	for (int i = 0; i < cfg->n_members; i++) {
		struct srv_mb *mb = &ms->mb[ms->n++];
		const struct srv_url_list *pl = &cfg->members[i].peer_urls;
		mb->id = srv_member_id((const char *const *)pl->url, pl->n,
		                       cfg->initial_cluster_token, -1);
		ids[i] = mb->id;
		if (!mb->id)
			return CAIRN_ENOMEM;
		/* No client URLs, not even our own: a member publishes them
		 * through raft once it has a leader (srv_cluster_publish),
		 * and only if its record lacks them. */
		if (set_name(mb, cfg->members[i].name) ||
		    set_urls(mb->peer, &mb->n_peer, pl->url, (size_t)pl->n))
			return CAIRN_ENOMEM;
	}
	ms->cluster_id = srv_cluster_id(ids, cfg->n_members);
	return 0;
}

int srv_membership_from_pb(struct srv_membership *ms, const Cairnpb__Membership *pb)
{
	memset(ms, 0, sizeof(*ms));
	ms->cluster_id = pb->cluster_id;
	for (size_t i = 0; i < pb->n_members && i < SRV_MAX_MEMBERS; i++) {
		const Cairnpb__Member *src = pb->members[i];
		struct srv_mb *mb = &ms->mb[ms->n++];
		mb->id = src->id;
		mb->learner = src->is_learner;
		if (set_name(mb, src->name) ||
		    set_urls(mb->peer, &mb->n_peer, src->peer_urls, src->n_peer_urls) ||
		    set_urls(mb->client, &mb->n_client, src->client_urls, src->n_client_urls))
			return CAIRN_ENOMEM;
	}
	return 0;
}

int srv_membership_pack(const struct srv_membership *ms, uint8_t **out, size_t *len)
{
	Cairnpb__Member mbs[SRV_MAX_MEMBERS];
	Cairnpb__Member *ptrs[SRV_MAX_MEMBERS];
	for (int i = 0; i < ms->n; i++) {
		const struct srv_mb *mb = &ms->mb[i];
		cairnpb__member__init(&mbs[i]);
		mbs[i].id = mb->id;
		mbs[i].name = mb->name;
		mbs[i].peer_urls = (char **)mb->peer;
		mbs[i].n_peer_urls = (size_t)mb->n_peer;
		mbs[i].client_urls = (char **)mb->client;
		mbs[i].n_client_urls = (size_t)mb->n_client;
		mbs[i].is_learner = mb->learner;
		ptrs[i] = &mbs[i];
	}
	Cairnpb__Membership pb = CAIRNPB__MEMBERSHIP__INIT;
	pb.cluster_id = ms->cluster_id;
	pb.members = ptrs;
	pb.n_members = (size_t)ms->n;
	*len = cairnpb__membership__get_packed_size(&pb);
	*out = malloc(*len ? *len : 1);
	if (!*out)
		return CAIRN_ENOMEM;
	cairnpb__membership__pack(&pb, *out);
	return 0;
}

struct srv_mb *srv_membership_find(struct srv_membership *ms, uint64_t id)
{
	for (int i = 0; i < ms->n; i++)
		if (ms->mb[i].id == id)
			return &ms->mb[i];
	return NULL;
}

struct srv_mb *srv_membership_find_peer_url(struct srv_membership *ms, char *const *urls, size_t n)
{
	for (int i = 0; i < ms->n; i++)
		for (int j = 0; j < ms->mb[i].n_peer; j++)
			for (size_t k = 0; k < n; k++)
				if (!strcmp(ms->mb[i].peer[j], urls[k]))
					return &ms->mb[i];
	return NULL;
}

int srv_membership_apply(struct srv_membership *ms, const Cairnpb__ConfChange *cc)
{
	const Cairnpb__Member *src = cc->member;
	if (!src || !src->id)
		return CAIRN_EINVAL;
	struct srv_mb *mb = srv_membership_find(ms, src->id);
	switch (cc->type) {
	case CAIRNPB__CONF_CHANGE__TYPE__ADD_VOTER:
	case CAIRNPB__CONF_CHANGE__TYPE__ADD_LEARNER:
		if (mb) {
			/* Adding a learner as a voter promotes it (raft's rule). */
			mb->learner = cc->type == CAIRNPB__CONF_CHANGE__TYPE__ADD_LEARNER;
			return 0;
		}
		if (ms->n == SRV_MAX_MEMBERS)
			return CAIRN_ETOOBIG;
		mb = &ms->mb[ms->n++];
		memset(mb, 0, sizeof(*mb));
		mb->id = src->id;
		mb->learner = cc->type == CAIRNPB__CONF_CHANGE__TYPE__ADD_LEARNER;
		if (set_name(mb, src->name) ||
		    set_urls(mb->peer, &mb->n_peer, src->peer_urls, src->n_peer_urls))
			return CAIRN_ENOMEM;
		return 0;
	case CAIRNPB__CONF_CHANGE__TYPE__PROMOTE:
		if (!mb)
			return CAIRN_ENOTFOUND;
		mb->learner = false;
		return 0;
	case CAIRNPB__CONF_CHANGE__TYPE__REMOVE:
		if (!mb)
			return CAIRN_ENOTFOUND;
		mb_free(mb);
		*mb = ms->mb[--ms->n];
		memset(&ms->mb[ms->n], 0, sizeof(ms->mb[ms->n]));
		return 0;
	case CAIRNPB__CONF_CHANGE__TYPE__UPDATE:
		if (!mb)
			return CAIRN_ENOTFOUND;
		if (src->n_peer_urls &&
		    set_urls(mb->peer, &mb->n_peer, src->peer_urls, src->n_peer_urls))
			return CAIRN_ENOMEM;
		if (src->name && src->name[0] && set_name(mb, src->name))
			return CAIRN_ENOMEM;
		if (src->n_client_urls &&
		    set_urls(mb->client, &mb->n_client, src->client_urls, src->n_client_urls))
			return CAIRN_ENOMEM;
		return 0;
	default:
		return CAIRN_EINVAL;
	}
}
