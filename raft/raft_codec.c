/*
 * raft_codec.c — struct raft_msg <-> proto/raft.proto (cairnraft.Message).
 *
 * Decoding validates everything the core relies on before handing a
 * message out: a non-zero receiver, configurations that fit struct
 * raft_conf, and raft_msg_check() (a known type, a sender, bounded terms
 * and indexes, contiguous entries of sane terms, a sane snapshot). Anything
 * else is CAIRN_EPROTO. The decoded
 * message points into the unpacked protobuf message, kept alive next to it.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/raft.pb-c.h"
#include "raft/raft_codec.h"

/* Bounds a peer cannot make us exceed. */
#define CODEC_MAX_ENTRIES (1u << 20)

struct decoded {
	struct raft_msg_decoded pub; /* first: raft_msg_decoded_free() casts back */
	Cairnraft__Message *pb;
	struct raft_entry *ents;
};

static int conf_to_pb(const struct raft_conf *c, Cairnraft__ConfState *pb)
{
	if (c->n_voters > RAFT_MAX_MEMBERS || c->n_learners > RAFT_MAX_MEMBERS)
		return CAIRN_EINVAL;
	pb->n_voters = c->n_voters;
	pb->voters = (uint64_t *)c->voters;
	pb->n_learners = c->n_learners;
	pb->learners = (uint64_t *)c->learners;
	return 0;
}

int raft_msg_encode(const struct raft_msg *m, uint8_t **out, size_t *len)
{
	if (m->type == 0 || m->type > RAFT_MSG_TYPE_MAX || (m->n_entries && !m->entries))
		return CAIRN_EINVAL;
	Cairnraft__Message pb = CAIRNRAFT__MESSAGE__INIT;
	pb.type = m->type;
	pb.from = m->from;
	pb.to = m->to;
	pb.term = m->term;
	pb.index = m->index;
	pb.log_term = m->log_term;
	pb.commit = m->commit;
	pb.ctx = m->ctx;
	pb.reject_hint = m->reject_hint;
	pb.reject = m->reject;
	pb.transfer = m->transfer;
	Cairnraft__Entry *ents = NULL, **eptrs = NULL;
	Cairnraft__SnapshotMeta snap = CAIRNRAFT__SNAPSHOT_META__INIT;
	Cairnraft__ConfState conf = CAIRNRAFT__CONF_STATE__INIT;
	int rv = CAIRN_ENOMEM;
	if (m->n_entries) {
		ents = calloc(m->n_entries, sizeof(*ents));
		eptrs = calloc(m->n_entries, sizeof(*eptrs));
		if (!ents || !eptrs)
			goto out;
		for (uint32_t i = 0; i < m->n_entries; i++) {
			const struct raft_entry *e = &m->entries[i];
			cairnraft__entry__init(&ents[i]);
			ents[i].term = e->term;
			ents[i].index = e->index;
			ents[i].type = e->type;
			ents[i].data.len = e->data.len;
			ents[i].data.data = (uint8_t *)e->data.base;
			eptrs[i] = &ents[i];
		}
		pb.n_entries = m->n_entries;
		pb.entries = eptrs;
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		rv = conf_to_pb(&m->snapshot.conf, &conf);
		if (rv)
			goto out;
		snap.index = m->snapshot.index;
		snap.term = m->snapshot.term;
		snap.conf = &conf;
		pb.snapshot = &snap;
		pb.snapshot_data.len = m->snapshot_data.len;
		pb.snapshot_data.data = (uint8_t *)m->snapshot_data.base;
	}
	size_t n = cairnraft__message__get_packed_size(&pb);
	uint8_t *buf = malloc(n ? n : 1);
	rv = CAIRN_ENOMEM;
	if (!buf)
		goto out;
	cairnraft__message__pack(&pb, buf);
	*out = buf;
	*len = n;
	rv = 0;
out:
	free(ents);
	free(eptrs);
	return rv;
}

static int conf_from_pb(const Cairnraft__ConfState *pb, struct raft_conf *c)
{
	memset(c, 0, sizeof(*c));
	if (!pb)
		return 0;
	if (pb->n_voters + pb->n_learners > RAFT_MAX_MEMBERS)
		return CAIRN_EPROTO;
	for (size_t i = 0; i < pb->n_voters; i++) {
		if (pb->voters[i] == RAFT_NONE)
			return CAIRN_EPROTO;
		c->voters[c->n_voters++] = pb->voters[i];
	}
	for (size_t i = 0; i < pb->n_learners; i++) {
		if (pb->learners[i] == RAFT_NONE)
			return CAIRN_EPROTO;
		c->learners[c->n_learners++] = pb->learners[i];
	}
	return 0;
}

int raft_msg_decode(const uint8_t *buf, size_t len, struct raft_msg_decoded **out)
{
	if (!buf && len)
		return CAIRN_EPROTO;
	Cairnraft__Message *pb = cairnraft__message__unpack(NULL, len, buf);
	if (!pb)
		return CAIRN_EPROTO;
	int rv = CAIRN_EPROTO;
	struct decoded *d = calloc(1, sizeof(*d));
	if (!d) {
		rv = CAIRN_ENOMEM;
		goto fail;
	}
	d->pb = pb;
	struct raft_msg *m = &d->pub.msg;
	if (pb->type == 0 || pb->type > RAFT_MSG_TYPE_MAX || pb->from == RAFT_NONE ||
	    pb->to == RAFT_NONE || pb->n_entries > CODEC_MAX_ENTRIES)
		goto fail;
	if (pb->n_entries && pb->type != RAFT_MSG_APPEND)
		goto fail;
	m->type = (uint8_t)pb->type;
	m->from = pb->from;
	m->to = pb->to;
	m->term = pb->term;
	m->index = pb->index;
	m->log_term = pb->log_term;
	m->commit = pb->commit;
	m->ctx = pb->ctx;
	m->reject_hint = pb->reject_hint;
	m->reject = pb->reject;
	m->transfer = pb->transfer;
	if (pb->n_entries) {
		d->ents = calloc(pb->n_entries, sizeof(*d->ents));
		if (!d->ents) {
			rv = CAIRN_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < pb->n_entries; i++) {
			const Cairnraft__Entry *e = pb->entries[i];
			if (!e || e->type > RAFT_ENTRY_CONF || e->index != pb->index + 1 + i ||
			    e->index == 0)
				goto fail;
			d->ents[i] =
			    (struct raft_entry){.term = e->term,
			                        .index = e->index,
			                        .type = (uint8_t)e->type,
			                        .data = {.base = e->data.len ? e->data.data : NULL,
			                                 .len = e->data.len}};
		}
		m->entries = d->ents;
		m->n_entries = (uint32_t)pb->n_entries;
	}
	if (pb->type == RAFT_MSG_SNAPSHOT) {
		if (!pb->snapshot || conf_from_pb(pb->snapshot->conf, &m->snapshot.conf))
			goto fail;
		m->snapshot.index = pb->snapshot->index;
		m->snapshot.term = pb->snapshot->term;
		m->snapshot_data.base = pb->snapshot_data.data;
		m->snapshot_data.len = pb->snapshot_data.len;
	}
	/* Whatever the core would ignore is refused here, where the peer's
	 * bytes are still at hand (raft.h raft_msg_check). */
	if (raft_msg_check(m))
		goto fail;
	*out = &d->pub;
	return 0;
fail:
	if (d)
		free(d->ents);
	free(d);
	cairnraft__message__free_unpacked(pb, NULL);
	return rv;
}

void raft_msg_decoded_free(struct raft_msg_decoded *pub)
{
	if (!pub)
		return;
	struct decoded *d = (struct decoded *)pub;
	cairnraft__message__free_unpacked(d->pb, NULL);
	free(d->ents);
	free(d);
}
