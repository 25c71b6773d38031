/*
 * cluster.c — the member among its peers: raft messages over the peer
 * network (rpc/peer.h), proposals and lease keep-alives forwarded from
 * followers to the leader, snapshots sent to and installed from the leader.
 *
 * PEER MESSAGES (first byte says what follows)
 *   'R' raft message (raft_msg_encode)
 *   'P' forwarded proposal: entry type (1 byte) then entry data; the leader
 *       proposes it as is. The proposer keeps the client waiting and answers
 *       when it applies the entry carrying its own request id, so nothing
 *       comes back on this path; a proposal lost with a leader change ends
 *       in "request timed out", as in etcd.
 *   'K' lease keep-alive to the leader: ctx (8) lease id (8)
 *   'k' its answer from the leader: ctx (8) ttl (8, -1 = not found)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft/raft_codec.h"
#include "server/member.h"

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* ------------------------------------------------------------ sending */

static int send_tagged(struct srv_member *m, uint64_t to, uint8_t tag, const void *a, size_t alen,
                       const void *b, size_t blen)
{
	if (!m->peers)
		return CAIRN_ENOTFOUND;
	uint8_t stackbuf[2048];
	size_t len = 1 + alen + blen;
	uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	if (!buf)
		return CAIRN_ENOMEM;
	buf[0] = tag;
	if (alen)
		memcpy(buf + 1, a, alen);
	if (blen)
		memcpy(buf + 1 + alen, b, blen);
	int rv = rpc_peer_net_send(m->peers, to, buf, len);
	if (buf != stackbuf)
		free(buf);
	return rv;
}

void srv_cluster_send_msgs(struct srv_member *m, const struct raft_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct raft_msg *msg = &msgs[i];
		if (msg->type == RAFT_MSG_SNAPSHOT) {
			srv_cluster_send_snapshot(m, msg);
			continue;
		}
		uint8_t *buf;
		size_t len;
		if (raft_msg_encode(msg, &buf, &len))
			continue; /* raft retransmits what is lost */
		send_tagged(m, msg->to, 'R', buf, len, NULL, 0);
		free(buf);
	}
}

int srv_cluster_forward(struct srv_member *m, uint8_t entry_type, const void *data, size_t len)
{
	if (m->leader == RAFT_NONE)
		return CAIRN_ENOLEADER;
	int rv = send_tagged(m, m->leader, 'P', &entry_type, 1, data, len);
	if (rv == CAIRN_ENOTFOUND)
		return CAIRN_ENOLEADER; /* the leader we knew has just been removed */
	return rv == CAIRN_EAGAIN ? CAIRN_ETIMEOUT : rv;
}

int srv_cluster_keepalive(struct srv_member *m, uint64_t ctx, int64_t lease_id)
{
	if (m->leader == RAFT_NONE)
		return CAIRN_ENOLEADER;
	uint8_t b[16];
	put64(b, ctx);
	put64(b + 8, (uint64_t)lease_id);
	int rv = send_tagged(m, m->leader, 'K', b, 16, NULL, 0);
	return rv == CAIRN_ENOTFOUND ? CAIRN_ENOLEADER : rv;
}

/* ------------------------------------------------------------ receiving */

static void on_raft(struct srv_member *m, const uint8_t *p, size_t len)
{
	struct raft_msg_decoded *d;
	if (raft_msg_decode(p, len, &d))
		return;
	struct raft_event ev = {.type = RAFT_EVENT_RECEIVE};
	ev.receive.msg = &d->msg;
	struct raft_update up;
	raft_step(m->raft, &ev, &up);
	srv_member_handle_update(m, &up);
	raft_msg_decoded_free(d);
}

static void on_forwarded(struct srv_member *m, const uint8_t *p, size_t len)
{
	if (len < 1 || m->role != RAFT_LEADER)
		return; /* the proposer times out and its client retries */
	struct raft_event ev = {.type = RAFT_EVENT_PROPOSE};
	ev.propose.type = p[0];
	ev.propose.data.base = p + 1;
	ev.propose.data.len = len - 1;
	struct raft_update up;
	if (raft_step(m->raft, &ev, &up) == 0)
		m->metrics.proposals_pending++;
	srv_member_handle_update(m, &up);
}

static void on_peer_message(void *ud, uint64_t from, const uint8_t *msg, size_t len)
{
	struct srv_member *m = ud;
	if (len < 1 || m->stopping)
		return;
	switch (msg[0]) {
	case 'R':
		on_raft(m, msg + 1, len - 1);
		break;
	case 'P':
		on_forwarded(m, msg + 1, len - 1);
		break;
	case 'K':
		if (len == 17) {
			int64_t ttl = srv_lease_renew(m, (int64_t)get64(msg + 9));
			uint8_t b[16];
			memcpy(b, msg + 1, 8);
			put64(b + 8, (uint64_t)ttl);
			send_tagged(m, from, 'k', b, 16, NULL, 0);
		}
		break;
	case 'k':
		if (len == 17)
			srv_lease_keepalive_answer(m, get64(msg + 1), (int64_t)get64(msg + 9));
		break;
	default:
		break;
	}
}

static void on_peer_active(void *ud, uint64_t id, bool active)
{
	struct srv_member *m = ud;
	char idbuf[20];
	snprintf(idbuf, sizeof(idbuf), "%" PRIx64, id);
	srv_log(m->log, active ? SRV_LOG_INFO : SRV_LOG_WARN,
	        active ? "peer connection active" : "peer connection lost", "peer-id", idbuf, NULL);
}

/* ------------------------------------------------------------ peers */

void srv_cluster_sync_peers(struct srv_member *m)
{
	if (!m->peers)
		return;
	for (int i = 0; i < m->members.n; i++) {
		struct srv_mb *mb = &m->members.mb[i];
		if (mb->id != m->id && mb->n_peer > 0)
			rpc_peer_net_set_peer(m->peers, mb->id, mb->peer[0]);
	}
}

int srv_cluster_start(struct srv_member *m)
{
	char snapdir[4096];
	snprintf(snapdir, sizeof(snapdir), "%s", m->cfg->data_dir);
	struct rpc_peer_config pc = {0};
	pc.self_id = m->id;
	pc.cluster_id = m->cluster_id;
	pc.seed = m->id ^ uv_hrtime();
	pc.snap_dir = m->cfg->data_dir;
	struct rpc_peer_cbs cbs = {0};
	cbs.on_message = on_peer_message;
	cbs.on_snapshot = srv_cluster_on_snapshot;
	cbs.on_peer_active = on_peer_active;
	int rv = rpc_peer_net_new(m->loop, &pc, &cbs, m, &m->peers);
	if (rv)
		return rv;
	for (int i = 0; i < m->cfg->listen_peer_urls.n; i++) {
		rv = rpc_peer_net_listen(m->peers, m->cfg->listen_peer_urls.url[i], NULL);
		if (rv) {
			srv_log(m->log, SRV_LOG_FATAL, "cannot listen for peers", "url",
			        m->cfg->listen_peer_urls.url[i], "error", cairn_strerror(rv), NULL);
			return rv;
		}
	}
	srv_cluster_sync_peers(m);
	return 0;
}

void srv_cluster_stop(struct srv_member *m)
{
	if (m->peers)
		rpc_peer_net_close(m->peers, NULL, NULL);
	m->peers = NULL;
}

/* ------------------------------------------------------------ snapshots */

/* A snapshot on its way to a follower: the store is copied to a temporary
 * file on a libuv worker (writers go on), then streamed by the peer net. */
struct snap_out {
	uv_work_t work;
	struct srv_member *m;
	uint64_t to;
	uint8_t *meta;
	size_t meta_len;
	int fd;
	int err;
	char path[4096];
};

static void snap_out_free(struct snap_out *so)
{
	if (so->fd >= 0)
		close(so->fd);
	unlink(so->path);
	free(so->meta);
	free(so);
}

static void snap_out_done(void *arg, int status)
{
	struct snap_out *so = arg;
	struct srv_member *m = so->m;
	srv_idmap_del(&m->snaps_out, so->to);
	char idbuf[20];
	snprintf(idbuf, sizeof(idbuf), "%" PRIx64, so->to);
	srv_log(m->log, status ? SRV_LOG_WARN : SRV_LOG_INFO,
	        status ? "snapshot to peer failed" : "snapshot sent to peer", "peer-id", idbuf,
	        "status", cairn_strerror(status), NULL);
	snap_out_free(so);
}

static void snap_out_work(uv_work_t *w)
{
	struct snap_out *so = w->data;
	so->err = store_snapshot_write(so->m->store, so->fd);
	if (!so->err && lseek(so->fd, 0, SEEK_SET) < 0)
		so->err = CAIRN_EIO;
}

static void snap_out_after(uv_work_t *w, int status)
{
	struct snap_out *so = w->data;
	struct srv_member *m = so->m;
	if (status || so->err || m->stopping || !m->peers ||
	    rpc_peer_net_send_snapshot(m->peers, so->to, so->meta, so->meta_len, so->fd,
	                               snap_out_done, so)) {
		srv_idmap_del(&m->snaps_out, so->to);
		snap_out_free(so);
	}
}

void srv_cluster_send_snapshot(struct srv_member *m, const struct raft_msg *msg)
{
	if (!m->peers || srv_idmap_get(&m->snaps_out, msg->to))
		return; /* one at a time per follower */
	struct snap_out *so = calloc(1, sizeof(*so));
	if (!so)
		return;
	so->m = m;
	so->to = msg->to;
	so->fd = -1;
	struct raft_msg meta = *msg;
	meta.snapshot_data.base = NULL;
	meta.snapshot_data.len = 0;
	if (raft_msg_encode(&meta, &so->meta, &so->meta_len)) {
		free(so);
		return;
	}
	snprintf(so->path, sizeof(so->path), "%s/snap-out.XXXXXX", m->cfg->data_dir);
	so->fd = mkstemp(so->path);
	if (so->fd < 0 || srv_idmap_put(&m->snaps_out, so->to, so)) {
		snap_out_free(so);
		return;
	}
	so->work.data = so;
	if (uv_queue_work(m->loop, &so->work, snap_out_work, snap_out_after)) {
		srv_idmap_del(&m->snaps_out, so->to);
		snap_out_free(so);
	}
}

void srv_cluster_on_snapshot(void *ud, uint64_t from, const uint8_t *meta, size_t meta_len,
                             const char *path)
{
	struct srv_member *m = ud;
	(void)from;
	struct raft_msg_decoded *d;
	if (m->stopping || meta_len < 1 || raft_msg_decode(meta, meta_len, &d)) {
		unlink(path);
		return;
	}
	/* The core hands the data back in up.snapshot_data: it is the path of
	 * the received file (NUL included), installed by srv_member_install. */
	d->msg.snapshot_data.base = path;
	d->msg.snapshot_data.len = strlen(path) + 1;
	struct raft_event ev = {.type = RAFT_EVENT_RECEIVE};
	ev.receive.msg = &d->msg;
	struct raft_update up;
	raft_step(m->raft, &ev, &up);
	bool taken = up.snapshot != NULL;
	srv_member_handle_update(m, &up);
	raft_msg_decoded_free(d);
	if (!taken)
		unlink(path); /* refused (stale): nothing installed */
}
