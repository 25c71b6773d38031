/*
 * member.c — the member's loop side: drives the raft core, fills batches for
 * the storage thread, matches applied results to waiting clients, serves
 * linearizable reads once their read index is applied. See member.h.
 *
 * STATE OF A WRITE
 *   proposed (raft_step PROPOSE) ─► persisted on a quorum (raft commits)
 *   ─► queued for apply (copied into m->filling) ─► applied (batch done:
 *   result with its id) ─► answered (srv_member_reply / _fail)
 *   Each arrow is one function below: srv_member_propose, handle_update,
 *   batch_done.
 */
#include "server/member.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/ids.h"
#include "server/pbcheck.h"
#include "server/watch.h"

static uint64_t now_ms(struct srv_member *m)
{
	return uv_now(m->loop);
}

static void step(struct srv_member *m, const struct raft_event *ev, int *err_out)
{
	struct raft_update up;
	int rv = raft_step(m->raft, ev, &up);
	if (err_out)
		*err_out = rv;
	srv_member_handle_update(m, &up);
}

void srv_member_header(struct srv_member *m, struct srv_header *out)
{
	out->cluster_id =
	    m->cluster_id ? m->cluster_id : (m->peers ? rpc_peer_net_cluster_id(m->peers) : 0);
	out->member_id = m->id;
	out->raft_term = m->term;
}

/* ------------------------------------------------------------ replies */

static void count_handled(struct srv_member *m, int method, int status)
{
	if (method >= 0 && method < m->metrics.n_methods && status >= 0 && status < SRV_GRPC_CODES)
		m->metrics.methods[method].handled[status]++;
}

void srv_member_fail(struct srv_member *m, struct rpc_call *call, int method, int err)
{
	int status;
	const char *msg;
	srv_grpc_error(err, &status, &msg);
	count_handled(m, method, status);
	if (m->log->level <= SRV_LOG_DEBUG) {
		char code[12];
		snprintf(code, sizeof(code), "%d", status);
		const char *name = method >= 0 && method < m->metrics.n_methods
		                       ? m->metrics.methods[method].method
		                       : "?";
		srv_log(m->log, SRV_LOG_DEBUG, "request failed", "method", name, "grpc-code", code,
		        "error", msg, NULL);
	}
	rpc_call_fail(call, status, msg);
}

void srv_member_reply(struct srv_member *m, struct rpc_call *call, int method, const void *resp,
                      size_t len)
{
	count_handled(m, method, 0);
	rpc_call_reply(call, resp, len);
}

int srv_member_method(struct srv_member *m, const char *service, const char *name, const char *type)
{
	return srv_metrics_add_method(&m->metrics, service, name, type);
}

/* "url1,url2" for the startup line (cut short if it does not fit). */
static void join_urls(const struct srv_url_list *l, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = 0;
	for (int i = 0; i < l->n && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? "," : "", l->url[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/* ------------------------------------------------------------ batches */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	void *n = realloc(*p, ncap * elem);
	if (!n)
		return CAIRN_ENOMEM;
	*p = n;
	*cap = ncap;
	return 0;
}

static struct raft_entry *copy_entries(struct srv_batch *b, const struct raft_entry *src, size_t n)
{
	struct raft_entry *dst = srv_arena_alloc(&b->arena, n + 1, sizeof(*dst));
	if (!dst)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		dst[i] = src[i];
		if (src[i].data.len) {
			void *d = srv_arena_alloc(&b->arena, 1, src[i].data.len);
			if (!d)
				return NULL;
			memcpy(d, src[i].data.base, src[i].data.len);
			dst[i].data.base = d;
		}
	}
	return dst;
}

static void oom(struct srv_member *m)
{
	srv_log(m->log, SRV_LOG_FATAL, "out of memory while queueing a batch", NULL);
	exit(2);
}

static void queue_persist(struct srv_member *m, const struct raft_update *up)
{
	struct srv_batch *b = m->filling;
	if (grow((void **)&b->persist, &b->cap_persist, b->n_persist + 1, sizeof(*b->persist)))
		oom(m);
	struct srv_persist *p = &b->persist[b->n_persist++];
	memset(p, 0, sizeof(*p));
	if (up->snapshot) {
		p->has_snapshot = true;
		p->snapshot = *up->snapshot;
	}
	p->truncate_from = up->truncate_from;
	if (up->n_entries) {
		p->entries = copy_entries(b, up->entries, up->n_entries);
		if (!p->entries)
			oom(m);
		p->n_entries = up->n_entries;
	}
	p->hard_state_changed = up->hard_state_changed;
	p->hard_state = up->hard_state;
	b->persist_seq = up->persist_seq;
	bool commit_only = !up->snapshot && !up->truncate_from && !up->n_entries &&
	                   up->hard_state_changed && up->hard_state.term == m->queued_hs.term &&
	                   up->hard_state.vote == m->queued_hs.vote;
	b->commit_only = b->commit_only && commit_only;
	if (up->hard_state_changed)
		m->queued_hs = up->hard_state;
}

/* Request ids carry the low 16 bits of the member id on top (as etcd's
 * idutil does), so a member recognises its own proposals at apply time
 * without decoding them. Below it, as in idutil, the start time in ms (40
 * bits) and a counter (8 bits, carrying into the time): ids must not
 * repeat across a restart, or a restarted member applying its own earlier
 * proposal, still in the log, would answer a new request that drew the
 * same id with that entry's result (the nemesis saw a put acknowledged
 * with an older put's revision). */
uint64_t srv_member_next_id(struct srv_member *m)
{
	if (m->next_req == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
		m->next_req = (ms & 0xffffffffffULL) << 8;
	}
	return ((m->id & 0xffff) << 48) | (++m->next_req & 0xffffffffffffULL);
}

static bool proposed_here(struct srv_member *m, const struct raft_entry *e)
{
	/* InternalRequest packs field 1 (id, varint) first: tag 0x08. */
	const uint8_t *p = e->data.base;
	if (e->data.len < 2 || p[0] != 0x08)
		return false;
	uint64_t id = 0;
	for (size_t i = 1, shift = 0; i < e->data.len && i < 11; i++, shift += 7) {
		id |= (uint64_t)(p[i] & 0x7f) << shift;
		if (!(p[i] & 0x80))
			return (id >> 48) == (m->id & 0xffff) && srv_idmap_get(&m->writes, id);
	}
	return false;
}

/* Queues committed entries for apply; returns the last of them that the
 * store had applied already (before a restart, or in a snapshot taken at a
 * later index than its raft metadata), 0 if none. */
static uint64_t queue_apply(struct srv_member *m, const struct raft_entry *ents, size_t n,
                            bool in_batch)
{
	struct srv_batch *b = m->filling;
	uint64_t skipped = 0;
	for (size_t i = 0; i < n; i++) {
		const struct raft_entry *e = &ents[i];
		if (e->index <= m->queued_apply) {
			/* applied before a restart, or already queued */
			if (e->index <= m->applied_index)
				skipped = e->index;
			continue;
		}
		if (grow((void **)&b->apply, &b->cap_apply, b->n_apply + 1, sizeof(*b->apply)))
			oom(m);
		size_t cap = b->cap_apply;
		void *wr = realloc(b->want_response, cap * sizeof(bool));
		if (!wr)
			oom(m);
		b->want_response = wr;
		const struct raft_entry *c = in_batch ? e : copy_entries(b, e, 1);
		if (!c)
			oom(m);
		b->want_response[b->n_apply] = proposed_here(m, e);
		b->apply[b->n_apply++] = *c;
		m->queued_apply = e->index;
		b->apply_to = e->index;
		m->metrics.proposals_committed++;
		if (srv_membership_entry(e)) {
			uint64_t id;
			int err;
			srv_cluster_apply_entry(m, e, &id, &err);
			struct srv_pending *p = id ? srv_idmap_get(&m->writes, id) : NULL;
			if (p) {
				if (grow((void **)&b->conf_done, &b->cap_conf_done,
				         b->n_conf_done + 1, sizeof(*b->conf_done)))
					oom(m);
				b->conf_done[b->n_conf_done].id = id;
				b->conf_done[b->n_conf_done++].err = err;
			}
		}
	}
	return skipped;
}

/* A leader that is the only voter commits an entry the moment it is
 * durable: the batch after the one that appended it makes it durable (its
 * flush covers the earlier commit) and may apply it too, without waiting
 * for raft to learn it is committed. Only normal entries: a membership
 * change waits for raft's commit as usual. */
static bool single_voter_leader(struct srv_member *m)
{
	if (m->role != RAFT_LEADER)
		return false;
	struct raft_status st;
	raft_get_status(m->raft, &st);
	return st.conf.n_voters == 1 && st.conf.voters[0] == m->id;
}

/* The entries batch b (just committed) appended are applied by the
 * filling batch, which copies them. */
static void apply_own_appends(struct srv_member *m, const struct srv_batch *b)
{
	for (size_t j = 0; j < b->n_persist; j++) {
		const struct srv_persist *p = &b->persist[j];
		for (size_t i = 0; i < p->n_entries; i++) {
			const struct raft_entry *e = &p->entries[i];
			if (e->index <= m->queued_apply)
				continue;
			if (e->index != m->queued_apply + 1 || e->type != RAFT_ENTRY_NORMAL ||
			    srv_membership_entry(e))
				return;
			queue_apply(m, e, 1, false);
			m->filling->need_prev_durable = true;
		}
	}
}

/* The batch only moves the commit index. Raft needs no durable commit
 * index (a restarted member learns it again from the leader, or commits its
 * own log again when alone; etcd does not sync for it either), and no
 * message waits for one: such a batch costs a full commit (two device
 * syncs) for nothing. Its hard state stays in the filling batch and is
 * written with the next batch that has real work. */
static bool commit_only(const struct srv_batch *b)
{
	return b->commit_only && b->n_persist && !b->n_apply && !b->membership &&
	       !b->has_log_compact && !b->compact_step && !b->apply_to;
}

static void step_persisted(struct srv_member *m, uint64_t seq)
{
	if (seq <= m->reported_seq)
		return;
	m->reported_seq = seq;
	struct raft_event ev = {.type = RAFT_EVENT_PERSISTED};
	ev.persisted.seq = seq;
	step(m, &ev, NULL);
}

/* A batch that is neither filling, in flight nor being answered. */
static struct srv_batch *spare_batch(struct srv_member *m)
{
	for (int i = 0; i < 3; i++) {
		struct srv_batch *n = &m->batches[i];
		if (n != m->inflight && n != m->answering && n != m->filling)
			return n;
	}
	return NULL;
}

/* Flushes what was committed and not yet durable, when no batch is coming
 * that would do it (a commit's data flush covers the earlier commits). */
static void submit_sync(struct srv_member *m)
{
	struct srv_batch *b = spare_batch(m);
	if (!b)
		return; /* one will be free once the answering batch is done */
	b->sync_only = true;
	m->inflight = b;
	srv_batch_submit(m, b);
}

/* Hands the filling batch to the storage thread when it is idle; `force`
 * also sends one that only moves the commit index (drain). With nothing
 * to hand over, it flushes what is committed and not yet durable. */
static void submit(struct srv_member *m, bool force)
{
	if (m->inflight || m->stopping)
		return;
	struct srv_batch *b = m->filling;
	if (srv_batch_empty(b) || (!force && commit_only(b) && m->undurable_seq)) {
		if (m->undurable_seq)
			submit_sync(m);
		return;
	}
	if (!force && commit_only(b)) {
		/* Nothing is in flight and every earlier update is durable;
		 * this one needs no durability (above). */
		step_persisted(m, b->persist_seq);
		return;
	}
	srv_member_header(m, &b->hdr);
	if (m->compact_pending)
		b->compact_step = true;
	m->inflight = b;
	m->filling = spare_batch(m);
	srv_batch_submit(m, b);
}

static void maybe_submit(struct srv_member *m)
{
	submit(m, false);
}

/* ------------------------------------------------------------ reads */

static void serve_ready_reads(struct srv_member *m)
{
	struct srv_pending **pp = &m->reads_waiting;
	while (*pp) {
		struct srv_pending *p = *pp;
		if (p->read_index <= m->applied_index) {
			*pp = p->next;
			srv_kv_serve_read(m, p);
		} else {
			pp = &p->next;
		}
	}
}

static void handle_reads(struct srv_member *m, const struct raft_update *up)
{
	for (size_t i = 0; i < up->n_reads; i++) {
		const struct raft_read_state *rs = &up->reads[i];
		struct srv_pending *p = srv_idmap_del(&m->reads, rs->ctx);
		if (!p)
			continue;
		if (rs->status) {
			srv_member_fail(m, p->call, p->method, rs->status);
			if (p->range)
				etcdserverpb__range_request__free_unpacked(p->range, NULL);
			free(p);
			continue;
		}
		p->read_index = rs->index;
		p->next = m->reads_waiting;
		m->reads_waiting = p;
	}
	serve_ready_reads(m);
}

/* ------------------------------------------------------------ updates */

static void role_changed(struct srv_member *m, const struct raft_update *up)
{
	bool had = m->leader != RAFT_NONE;
	if (up->leader != m->leader && up->leader != RAFT_NONE)
		m->metrics.leader_changes_seen++;
	m->leader = up->leader;
	m->term = up->term;
	m->role = up->role;
	m->metrics.has_leader = m->leader != RAFT_NONE;
	m->metrics.is_leader = m->role == RAFT_LEADER;
	if (had != (m->leader != RAFT_NONE) || up->role == RAFT_LEADER) {
		char lbuf[20], tbuf[24];
		snprintf(lbuf, sizeof(lbuf), "%" PRIx64, m->leader);
		snprintf(tbuf, sizeof(tbuf), "%" PRIu64, m->term);
		srv_log(m->log, SRV_LOG_INFO, "raft leader changed", "role",
		        raft_role_name(m->role), "leader", lbuf, "term", tbuf, NULL);
	}
	srv_lease_leader_changed(m);
	if (m->move_call && m->leader == m->move_target) {
		struct rpc_call *c = m->move_call;
		m->move_call = NULL;
		srv_maint_move_done(m, c, m->move_method, 0);
	}
}

void srv_member_handle_update(struct srv_member *m, const struct raft_update *up)
{
	if (up->role_changed || up->term != m->term)
		role_changed(m, up);
	if (up->snapshot) {
		/* Everything the update points to dies at the next raft_step,
		 * which draining does: copy what the install needs first. */
		struct raft_snapshot_meta meta = *up->snapshot;
		char path[4096];
		snprintf(path, sizeof(path), "%.*s", (int)up->snapshot_data.len,
		         (const char *)up->snapshot_data.base);
		uint64_t seq = up->persist_seq;
		srv_cluster_send_msgs(m, up->msgs, up->n_msgs);
		srv_member_install(m, &meta, path, seq);
		return;
	}
	if (up->persist_seq)
		queue_persist(m, up);
	if (up->n_msgs)
		srv_cluster_send_msgs(m, up->msgs, up->n_msgs);
	uint64_t skipped = 0;
	if (up->n_committed)
		skipped = queue_apply(m, up->committed, up->n_committed, false);
	if (up->n_reads)
		handle_reads(m, up);
	maybe_submit(m);
	if (skipped) {
		/* No batch reports these: tell raft they are applied, so that it
		 * applies the configuration changes among them (else its
		 * configuration stays the snapshot's until a later entry). */
		struct raft_event ev = {.type = RAFT_EVENT_APPLIED};
		ev.applied.index = skipped;
		step(m, &ev, NULL);
	}
}

/* ------------------------------------------------------------ proposals */

void srv_member_propose_entry(struct srv_member *m, struct rpc_call *call, int method, uint64_t id,
                              uint8_t type, const void *data, size_t len, int kind_api,
                              uint64_t member_id)
{
	if (m->stopping) {
		if (call)
			srv_member_fail(m, call, method, CAIRN_ESTOPPED);
		return;
	}
	struct srv_pending *p = NULL;
	if (call) {
		p = calloc(1, sizeof(*p));
		if (!p || srv_idmap_put(&m->writes, id, p)) {
			free(p);
			srv_member_fail(m, call, method, CAIRN_ENOMEM);
			return;
		}
		p->kind = kind_api ? SRV_PENDING_CONF : SRV_PENDING_WRITE;
		p->id = id;
		p->call = call;
		p->method = method;
		p->kind_api = kind_api;
		p->member_id = member_id;
		p->deadline_ms = now_ms(m) + m->request_timeout_ms;
	}
	int rv;
	if (m->role != RAFT_LEADER) {
		/* A follower hands the proposal to the leader and answers its
		 * client when it applies the entry (its id is ours). */
		rv = srv_cluster_forward(m, type, data, len);
	} else {
		struct raft_event ev = {.type = RAFT_EVENT_PROPOSE};
		ev.propose.type = type;
		ev.propose.data.base = data;
		ev.propose.data.len = len;
		step(m, &ev, &rv);
	}
	if (rv) {
		m->metrics.proposals_failed++;
		if (p) {
			srv_idmap_del(&m->writes, id);
			if (rv == CAIRN_ENOTLEADER)
				rv = m->leader ? CAIRN_ENOTLEADER : CAIRN_ENOLEADER;
			srv_member_fail(m, call, method, rv);
			free(p);
		}
		return;
	}
	m->metrics.proposals_pending++;
}

void srv_member_propose(struct srv_member *m, struct rpc_call *call, int method,
                        Cairnpb__InternalRequest *req)
{
	size_t len = cairnpb__internal_request__get_packed_size(req);
	uint8_t stackbuf[4096];
	uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	if (!buf) {
		if (call)
			srv_member_fail(m, call, method, CAIRN_ENOMEM);
		return;
	}
	cairnpb__internal_request__pack(req, buf);
	srv_member_propose_entry(m, call, method, req->id, RAFT_ENTRY_NORMAL, buf, len, 0, 0);
	if (buf != stackbuf)
		free(buf);
}

bool srv_member_learner_ready(struct srv_member *m, uint64_t id)
{
	uint64_t match;
	if (raft_progress_match(m->raft, id, &match))
		return false;
	struct raft_status st;
	raft_get_status(m->raft, &st);
	return match * 10 >= st.last_index * 9;
}

/* ------------------------------------------------------------ batch done */

static void batch_done(uv_async_t *async)
{
	struct srv_member *m = async->data;
	pthread_mutex_lock(&m->q.mu);
	struct srv_batch *b = m->q.done;
	m->q.done = NULL;
	pthread_mutex_unlock(&m->q.mu);
	if (!b)
		return;
	if (!b->sync_only)
		srv_histogram_observe(&m->metrics.backend_commit, b->commit_ns);
	if (b->n_persist)
		srv_histogram_observe(&m->metrics.wal_fsync, b->commit_ns);
	if (b->commit_ns > 1000000000ull) { /* etcd warns of a WAL sync over 1 s */
		char took[24];
		snprintf(took, sizeof(took), "%.3fs", (double)b->commit_ns / 1e9);
		srv_log(m->log, SRV_LOG_WARN, "slow fdatasync", "took", took, "expected-duration",
		        "1s", NULL);
	}
	m->inflight = NULL;
	/* Lazy meta sync: what a batch persisted is durable, and may be
	 * reported to raft (which then sends what depends on it and counts
	 * it toward commitment), only after a later flush. */
	uint64_t persist_seq = 0;
	if (b->flushed_before) {
		persist_seq = m->undurable_seq;
		m->undurable_seq = 0;
	}
	if (b->persist_seq) {
		if (b->self_durable)
			persist_seq = b->persist_seq;
		else
			m->undurable_seq = b->persist_seq;
	}
	uint64_t applied = b->apply_to;
	int64_t old_rev = m->revision;
	if (b->revision)
		m->revision = b->revision;
	if (applied)
		m->applied_index = applied;
	m->compact_pending = b->compact_more;
	/* The storage thread takes the next batch before the loop answers
	 * this one's clients. */
	m->answering = b;
	if (m->compact_pending)
		m->filling->compact_step = true;
	if (b->n_persist && single_voter_leader(m))
		apply_own_appends(m, b);
	maybe_submit(m);
	bool nospace = false;
	for (size_t i = 0; i < b->n_results; i++) {
		struct srv_apply_result *r = &b->results[i];
		nospace |= r->nospace;
		struct srv_pending *p = srv_idmap_del(&m->writes, r->id);
		if (!p)
			continue;
		m->metrics.proposals_pending--;
		if (r->err)
			srv_member_fail(m, p->call, p->method, r->err);
		else
			srv_member_reply(m, p->call, p->method, r->resp, r->resp_len);
		free(p);
	}
	for (size_t i = 0; i < b->n_conf_done; i++) {
		struct srv_pending *p = srv_idmap_del(&m->writes, b->conf_done[i].id);
		if (!p)
			continue;
		m->metrics.proposals_pending--;
		srv_cluster_api_reply(m, p, b->conf_done[i].err);
		free(p);
	}
	m->metrics.proposals_applied += b->n_apply;
	m->removed |= b->removes_self;
	srv_batch_reset(b);
	m->answering = NULL;

	if (persist_seq)
		step_persisted(m, persist_seq);
	if (applied) {
		struct raft_event ev = {.type = RAFT_EVENT_APPLIED};
		ev.applied.index = applied;
		step(m, &ev, NULL);
	}
	if (m->revision != old_rev && m->hub)
		srv_watch_hub_notify(m->hub, m->revision);
	serve_ready_reads(m);
	if (nospace && m->role == RAFT_LEADER) {
		/* etcd raises the NOSPACE alarm through raft so every member
		 * refuses writes until an operator disarms it. */
		srv_log(m->log, SRV_LOG_WARN,
		        "database space exceeded: raising the NOSPACE alarm (disarm with "
		        "etcdctl alarm disarm after compacting)",
		        NULL);
		Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
		ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
		ar.memberid = m->id;
		ar.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
		Cairnpb__InternalRequest ir = CAIRNPB__INTERNAL_REQUEST__INIT;
		ir.alarm = &ar;
		srv_member_propose(m, NULL, -1, &ir);
	}
	if (m->compact_pending)
		m->filling->compact_step = true;
	maybe_submit(m);
	if (m->removed && !m->stopping) {
		srv_log(m->log, SRV_LOG_WARN,
		        "this member has been permanently removed from the cluster: exiting", NULL);
		srv_member_stop(m);
	}
	if (m->stopping && !m->inflight)
		uv_stop(m->loop);
}

/* ------------------------------------------------------------ timers */

static void expire_requests(struct srv_member *m, uint64_t now)
{
	uint64_t ids[256];
	size_t n = 0;
	for (size_t i = 0; i < m->writes.cap && n < 256; i++) {
		struct srv_pending *p = m->writes.vals[i];
		if (m->writes.keys[i] && p->deadline_ms <= now)
			ids[n++] = m->writes.keys[i];
	}
	for (size_t i = 0; i < n; i++) {
		struct srv_pending *p = srv_idmap_del(&m->writes, ids[i]);
		m->metrics.proposals_pending--;
		srv_member_fail(m, p->call, p->method, CAIRN_ETIMEOUT);
		free(p);
	}
	n = 0;
	for (size_t i = 0; i < m->reads.cap && n < 256; i++) {
		struct srv_pending *p = m->reads.vals[i];
		if (m->reads.keys[i] && p->deadline_ms <= now)
			ids[n++] = m->reads.keys[i];
	}
	for (size_t i = 0; i < n; i++) {
		struct srv_pending *p = srv_idmap_del(&m->reads, ids[i]);
		srv_member_fail(m, p->call, p->method, CAIRN_ETIMEOUT);
		etcdserverpb__range_request__free_unpacked(p->range, NULL);
		free(p);
	}
}

static void compact_log(struct srv_member *m);

static void on_tick(uv_timer_t *t)
{
	srv_member_tick(t->data);
}

void srv_member_tick(struct srv_member *m)
{
	struct raft_event ev = {.type = RAFT_EVENT_TICK};
	step(m, &ev, NULL);
	uint64_t now = now_ms(m);
	m->ticks++;
	if (m->hub)
		srv_watch_hub_tick(m->hub, now);
	srv_lease_tick(m, now);
	srv_cluster_publish(m, now);
	if (m->ticks % 5 == 0)
		expire_requests(m, now);
	if (m->move_call && now >= m->move_deadline_ms) {
		struct rpc_call *c = m->move_call;
		m->move_call = NULL;
		srv_maint_move_done(m, c, m->move_method, CAIRN_ETIMEOUT);
	}
	compact_log(m);
}

/* Log compaction: keep snapshot_catchup_entries behind the applied index
 * once snapshot_count entries have been applied since the last — or once
 * the in-memory log holds LOG_BYTES_MAX of payload, keeping at most
 * LOG_KEEP_BYTES. The log is raft's memory (every entry since the last
 * compaction) and what a restart loads, so its bytes are bounded whatever
 * the entry sizes; a follower behind the kept entries gets a snapshot. */
#define LOG_BYTES_MAX  (64u << 20)
#define LOG_KEEP_BYTES (16u << 20)

static void compact_log(struct srv_member *m)
{
	struct raft_status st;
	raft_get_status(m->raft, &st);
	if (m->log_bytes_to < st.snap_index)
		m->log_bytes_to = st.snap_index;
	for (; m->log_bytes_to < m->applied_index; m->log_bytes_to++) {
		const struct raft_entry *e = raft_log_entry(m->raft, m->log_bytes_to + 1);
		if (e)
			m->log_bytes += e->data.len;
	}
	uint64_t idx = 0, left = m->log_bytes;
	if (st.snap_index == 0 && m->applied_index >= 1) {
		/* The bootstrap configuration is not in the log: compact its
		 * first entry at once so that a member joining later (whose log
		 * is empty) starts from a snapshot, which carries it. */
		idx = 1;
	} else if (m->applied_index > m->last_log_compact + (uint64_t)m->cfg->snapshot_count ||
	           m->log_bytes > LOG_BYTES_MAX) {
		uint64_t keep = (uint64_t)m->cfg->snapshot_catchup_entries, kept = 0;
		uint64_t kept_bytes = 0;
		while (kept < keep && m->applied_index - kept > st.snap_index) {
			const struct raft_entry *e =
			    raft_log_entry(m->raft, m->applied_index - kept);
			size_t len = e ? e->data.len : 0;
			if (kept_bytes + len > LOG_KEEP_BYTES)
				break;
			kept_bytes += len;
			kept++;
		}
		idx = m->applied_index - kept;
		left = kept_bytes;
	}
	if (idx > st.snap_index && !m->filling->has_log_compact) {
		struct raft_snapshot_meta meta;
		if (raft_snapshot_meta_at(m->raft, idx, &meta) == 0 &&
		    raft_compact(m->raft, idx) == 0) {
			m->filling->has_log_compact = true;
			m->filling->log_compact = meta;
			m->last_log_compact = idx;
			m->log_bytes = left;
			maybe_submit(m);
		}
	}
}

/* ------------------------------------------------------------ lifecycle */

static int load_membership(struct srv_member *m, bool *fresh)
{
	struct store_rtxn *r;
	int rv = store_rtxn_begin(m->store, &r);
	if (rv)
		return rv;
	const void *data;
	size_t len;
	rv = store_rtxn_get_meta(r, "membership", &data, &len);
	*fresh = rv == CAIRN_ENOTFOUND;
	if (rv == 0) {
		Cairnpb__Membership *pb = cairnpb__membership__unpack(NULL, len, data);
		if (!pb) {
			rv = CAIRN_ECORRUPT;
		} else {
			struct srv_membership ms;
			rv = srv_membership_from_pb(&ms, pb);
			cairnpb__membership__free_unpacked(pb, NULL);
			if (!rv) {
				srv_membership_free(&m->members);
				m->members = ms;
			} else {
				srv_membership_free(&ms);
			}
		}
	} else if (rv == CAIRN_ENOTFOUND) {
		rv = 0;
	}
	m->revision = store_rtxn_revision(r);
	m->applied_index = store_rtxn_applied(r);
	store_rtxn_end(r);
	return rv;
}

static int find_self(struct srv_member *m)
{
	for (int i = 0; i < m->members.n; i++) {
		if (!strcmp(m->members.mb[i].name, m->cfg->name)) {
			m->id = m->members.mb[i].id;
			return 0;
		}
	}
	return CAIRN_ECONFIG;
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct srv_member *m = s->data;
	srv_log(m->log, SRV_LOG_INFO, "received signal, shutting down", "signal",
	        signum == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
	srv_member_stop(m);
}

static int open_store(struct srv_member *m)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/member", m->cfg->data_dir);
	if (mkdir(m->cfg->data_dir, 0700) && errno != EEXIST)
		return CAIRN_EIO;
	struct store_config sc = {0};
	sc.dir = path;
	sc.quota_bytes = (uint64_t)m->cfg->quota_backend_bytes;
	sc.map_size = sc.quota_bytes * 2 > (8ull << 30) ? sc.quota_bytes * 2 : (8ull << 30);
	sc.max_request_bytes = (size_t)m->cfg->max_request_bytes;
	sc.max_txn_ops = (unsigned)m->cfg->max_txn_ops;
	sc.nosync = m->cfg->unsafe_no_fsync;
	/* One device flush per batch instead of two: a batch is durable once
	 * the next one (or a sync_only batch) is committed; see batch_done. */
	sc.lazy_meta_sync = true;
	return store_open(&sc, &m->store);
}

/* The watch hub reads m->store; it is rebuilt when a snapshot replaces the
 * store, so the Watch method reaches it through the member. */
static int start_hub(struct srv_member *m)
{
	struct srv_watch_config wc = {0};
	wc.store = m->store;
	wc.progress_interval_ms = m->cfg->watch_progress_notify_interval_ms;
	wc.max_response_bytes = (size_t)m->cfg->max_request_bytes;
	wc.catchup_chunk_events = 1000;
	wc.max_watchers_per_stream = (uint32_t)m->cfg->max_watchers_per_stream;
	wc.header = (void (*)(void *, struct srv_header *))srv_member_header;
	wc.header_ctx = m;
	return srv_watch_hub_new(&wc, &m->hub);
}

static void watch_open(struct rpc_stream *s, void *ud)
{
	struct srv_member *m = ud;
	srv_watch_stream_cbs.on_open(s, m->hub);
}

void srv_member_drain(struct srv_member *m)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		if (!m->inflight)
			submit(m, true);
		if (!m->inflight)
			return;
		pthread_mutex_lock(&m->q.mu);
		while (!m->q.done)
			pthread_cond_wait(&m->q.done_cv, &m->q.mu);
		pthread_mutex_unlock(&m->q.mu);
		batch_done(&m->q.async);
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

/* Removes a directory tree (our own "<data-dir>/member.old"); a missing one
 * is fine. */
static int rmtree(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : CAIRN_EIO;
}

void srv_member_install(struct srv_member *m, const struct raft_snapshot_meta *meta,
                        const char *path, uint64_t persist_seq)
{
	srv_member_drain(m);
	char dir[4096], old[4200];
	snprintf(dir, sizeof(dir), "%s/member", m->cfg->data_dir);
	snprintf(old, sizeof(old), "%s/member.old", m->cfg->data_dir);
	char idx[24];
	snprintf(idx, sizeof(idx), "%" PRIu64, meta->index);
	srv_log(m->log, SRV_LOG_INFO, "installing snapshot from leader", "index", idx, NULL);

	srv_watch_hub_free(m->hub);
	m->hub = NULL;
	raft_lmdb_close(m->rl);
	m->rl = NULL;
	store_close(m->store);
	m->store = NULL;
	int rv = rmtree(old);
	if (!rv && rename(dir, old))
		rv = CAIRN_EIO;
	int fd = rv ? -1 : open(path, O_RDONLY);
	if (!rv && fd < 0)
		rv = CAIRN_EIO;
	if (!rv)
		rv = store_snapshot_restore(fd, dir);
	if (fd >= 0)
		close(fd);
	unlink(path);
	if (!rv)
		rv = open_store(m);
	if (!rv)
		rv = raft_lmdb_open(store_env(m->store), &m->rl);
	if (!rv) {
		/* The copy carries the leader's raft state: replace it with ours,
		 * all of it, also when this update did not change it (else the
		 * leader's vote and commit would stay ours after a restart). */
		struct raft_update up = {0};
		up.snapshot = meta;
		struct raft_status st;
		raft_get_status(m->raft, &st);
		up.hard_state = (struct raft_hard_state){st.term, st.vote, st.commit};
		up.hard_state_changed = true;
		up.persist_seq = persist_seq;
		rv = raft_lmdb_write_own(m->rl, &up);
	}
	if (!rv) {
		bool fresh;
		rv = load_membership(m, &fresh);
		if (!rv && m->members.cluster_id)
			m->cluster_id = m->members.cluster_id;
	}
	if (!rv)
		rv = start_hub(m);
	if (rv) {
		srv_log(m->log, SRV_LOG_FATAL, "cannot install snapshot: stopping", "error",
		        cairn_strerror(rv), NULL);
		exit(2);
	}
	rmtree(old);
	m->queued_apply = m->applied_index;
	srv_cluster_sync_peers(m);
	if (persist_seq)
		step_persisted(m, persist_seq);
	struct raft_event ev = {.type = RAFT_EVENT_SNAPSHOT_INSTALLED};
	ev.snapshot_installed.index = meta->index;
	step(m, &ev, NULL);
	if (m->applied_index > meta->index) {
		struct raft_event ap = {.type = RAFT_EVENT_APPLIED};
		ap.applied.index = m->applied_index;
		step(m, &ap, NULL);
	}
}

/* What rpc cannot return to a caller (connect failures, peers that stop
 * acknowledging) goes to our log, rate limited by rpc, with our member id:
 * three members' logs side by side tell apart whose connections failed. */
static void rpc_log_line(void *ud, const char *line)
{
	struct srv_member *m = ud;
	char msg[600], id[20];
	snprintf(msg, sizeof(msg), "rpc: %s", line);
	snprintf(id, sizeof(id), "%" PRIx64, m->id);
	srv_log(m->log, SRV_LOG_WARN, msg, "local-member-id", id, NULL);
}

/* grpc-go decodes a request before etcd's handler sees it, and answers one
 * that etcd's generated code refuses with that code's words: each message of
 * every etcd method cairnd serves is walked as that code walks it first
 * (pbcheck.h). `arg` is the method's request descriptor. */
static int decode_check(const uint8_t *msg, size_t len, void *arg, char *why, size_t cap)
{
	return srv_pb_check(arg, msg, len, why, cap);
}

static int install_decode_checks(struct rpc_server *rpc)
{
	static const ProtobufCServiceDescriptor *const services[] = {
	    &etcdserverpb__kv__descriptor,          &etcdserverpb__watch__descriptor,
	    &etcdserverpb__lease__descriptor,       &etcdserverpb__cluster__descriptor,
	    &etcdserverpb__maintenance__descriptor,
	};
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		for (unsigned j = 0; j < services[i]->n_methods; j++) {
			const ProtobufCMethodDescriptor *md = &services[i]->methods[j];
			char path[128];
			snprintf(path, sizeof(path), "/%s/%s", services[i]->name, md->name);
			/* Methods cairnd does not serve (Downgrade) stay unknown. */
			int rv = rpc_server_set_decode_check(rpc, path, decode_check,
			                                     (void *)(uintptr_t)md->input);
			if (rv != 0 && rv != CAIRN_ENOTFOUND)
				return rv;
		}
	}
	return 0;
}

int srv_member_start(struct srv_member *m, uv_loop_t *loop, const struct srv_config *cfg,
                     struct srv_log *log)
{
	memset(m, 0, sizeof(*m));
	m->loop = loop;
	m->cfg = cfg;
	m->log = log;
	m->filling = &m->batches[0];
	for (int i = 0; i < 3; i++)
		srv_batch_reset(&m->batches[i]);
	m->limits.max_request_bytes = (size_t)cfg->max_request_bytes;
	m->limits.max_txn_ops = (unsigned)cfg->max_txn_ops;
	m->request_timeout_ms = 5000 + 2 * (uint64_t)cfg->election_timeout_ms;
	unsigned et = (unsigned)(cfg->election_timeout_ms / cfg->heartbeat_interval_ms);
	/* etcd: minTTL = ceil(1.5 election timeouts) in seconds. */
	m->min_lease_ttl = (3 * cfg->election_timeout_ms / 2 + 999) / 1000;

	int rv = open_store(m);
	if (rv == CAIRN_ELOCKED) {
		srv_log(log, SRV_LOG_FATAL, "data directory is in use by another cairnd",
		        "data-dir", cfg->data_dir, NULL);
		return rv;
	}
	if (rv) {
		srv_log(log, SRV_LOG_FATAL, "cannot open the store", "data-dir", cfg->data_dir,
		        "error", cairn_strerror(rv), NULL);
		return rv;
	}
	bool fresh;
	if ((rv = load_membership(m, &fresh)))
		return rv;
	uint8_t *boot = NULL;
	size_t boot_len = 0;
	/* A member joining an existing cluster knows its peers from
	 * --initial-cluster but takes the cluster id, the configuration and
	 * the data from the leader's snapshot. */
	bool joining = fresh && cfg->initial_cluster_existing;
	if (fresh) {
		if ((rv = srv_membership_bootstrap(&m->members, cfg)))
			return rv;
		if (!joining && (rv = srv_membership_pack(&m->members, &boot, &boot_len)))
			return rv;
	}
	if ((rv = find_self(m))) {
		srv_log(log, SRV_LOG_FATAL, "this member's name is not in the cluster", "name",
		        cfg->name, NULL);
		free(boot);
		return rv;
	}
	m->cluster_id = joining ? 0 : m->members.cluster_id;
	m->metrics.server_id = (int64_t)m->id;
	m->queued_apply = m->applied_index;

	if ((rv = raft_lmdb_open(store_env(m->store), &m->rl))) {
		free(boot);
		return rv;
	}
	struct raft_conf conf = {0};
	for (int i = 0; i < m->members.n && i < RAFT_MAX_MEMBERS; i++) {
		if (m->members.mb[i].learner)
			conf.learners[conf.n_learners++] = m->members.mb[i].id;
		else
			conf.voters[conf.n_voters++] = m->members.mb[i].id;
	}
	struct raft_config rc = {0};
	rc.id = m->id;
	rc.election_ticks = et;
	rc.heartbeat_ticks = 1;
	rc.seed = cfg->raft_seed ? cfg->raft_seed : m->id ^ (uint64_t)uv_hrtime();
	rc.pre_vote = true;
	rc.check_quorum = true;
	/* Entry bytes in flight per follower (etcd-raft's MaxInflightBytes).
	 * The core's other bounds, 256 AppendEntries of up to 1 MiB, allow
	 * 256 MiB, four times the peer queue (rpc_peer_config: 64 MiB), so a
	 * slow follower would overflow the queue rather than pause the
	 * pipeline. 8 MiB is eight full messages, several times a LAN's
	 * bandwidth-delay product, and leaves the queue room for heartbeats
	 * and the other peers' traffic. */
	rc.max_inflight_bytes = (size_t)8 << 20;
	/* The first configuration lives in raft's storage only as a snapshot
	 * record, which log compaction writes a tick after the first batch:
	 * a member killed before that came back without a configuration, so
	 * not a voter, and never campaigned. A bootstrap now writes it at
	 * once (below); a data directory left without it by an older build
	 * takes it from the membership record while its log is uncompacted. */
	rc.initial_conf = !joining ? &conf : NULL;
	if (fresh && !joining) {
		struct raft_snapshot_meta meta = {0};
		meta.conf = conf;
		struct raft_update up = {0};
		up.snapshot = &meta;
		if (m->applied_index > 0) {
			/* A data directory made by `cairnctl snapshot restore`: the
			 * store holds data applied up to some index of an old log,
			 * and no membership. The new cluster's log starts after that
			 * index, as if a snapshot at it had been installed, so
			 * nothing is skipped. */
			meta.index = m->applied_index;
			meta.term = 1;
			up.hard_state.term = 1;
			up.hard_state.commit = m->applied_index;
			up.hard_state_changed = true;
		}
		if ((rv = raft_lmdb_write_own(m->rl, &up))) {
			free(boot);
			return rv;
		}
	}
	if (fresh && !joining && m->applied_index > 0) {
		char idx[24];
		snprintf(idx, sizeof(idx), "%" PRIu64, m->applied_index);
		srv_log(log, SRV_LOG_INFO, "starting from a restored snapshot", "index", idx, NULL);
	}
	struct raft_storage rs = raft_lmdb_storage(m->rl);
	if ((rv = raft_new(&rc, &rs, &m->raft))) {
		free(boot);
		srv_log(log, SRV_LOG_FATAL, "cannot recover raft state", "error",
		        cairn_strerror(rv), NULL);
		return rv;
	}
	if (boot) {
		m->filling->membership = boot;
		m->filling->membership_len = boot_len;
	}

	struct rpc_server_config rsc = {0};
	rsc.max_recv_msg_size = (size_t)cfg->max_request_bytes + 512 * 1024;
	if ((rv = rpc_server_new(loop, &rsc, &m->rpc)))
		return rv;
	if ((rv = start_hub(m)))
		return rv;
	m->watch_cbs = srv_watch_stream_cbs;
	m->watch_cbs.on_open = watch_open;
	int w = srv_member_method(m, "etcdserverpb.Watch", "Watch", "bidi_stream");
	(void)w;
	if ((rv = rpc_server_register_stream(m->rpc, "/etcdserverpb.Watch/Watch", &m->watch_cbs,
	                                     m)) ||
	    (rv = srv_kv_register(m)) || (rv = srv_lease_register(m)) ||
	    (rv = srv_maint_register(m)) || (rv = srv_cluster_api_register(m)) ||
	    (rv = install_decode_checks(m->rpc)))
		return rv;

	rpc_set_log_sink(rpc_log_line, m);
	if ((rv = srv_cluster_start(m)))
		return rv;
	uv_async_init(loop, &m->q.async, batch_done);
	m->q.async.data = m;
	if ((rv = srv_batch_start(m)))
		return rv;

	for (int i = 0; i < cfg->listen_client_urls.n; i++) {
		if ((rv = rpc_server_listen(m->rpc, cfg->listen_client_urls.url[i], NULL))) {
			srv_log(log, SRV_LOG_FATAL, "cannot listen", "url",
			        cfg->listen_client_urls.url[i], "error", cairn_strerror(rv), NULL);
			return rv;
		}
	}
	uv_timer_init(loop, &m->tick);
	m->tick.data = m;
	uv_timer_start(&m->tick, on_tick, (uint64_t)cfg->heartbeat_interval_ms,
	               (uint64_t)cfg->heartbeat_interval_ms);
	uv_signal_init(loop, &m->sigterm);
	uv_signal_init(loop, &m->sigint);
	m->sigterm.data = m->sigint.data = m;
	uv_signal_start(&m->sigterm, on_signal, SIGTERM);
	uv_signal_start(&m->sigint, on_signal, SIGINT);

	char idbuf[20], cidbuf[20], rev[24], applied[24], curls[512], purls[512];
	join_urls(&cfg->listen_client_urls, curls, sizeof(curls));
	join_urls(&cfg->listen_peer_urls, purls, sizeof(purls));
	snprintf(idbuf, sizeof(idbuf), "%" PRIx64, m->id);
	snprintf(cidbuf, sizeof(cidbuf), "%" PRIx64, m->cluster_id);
	snprintf(rev, sizeof(rev), "%" PRId64, m->revision);
	snprintf(applied, sizeof(applied), "%" PRIu64, m->applied_index);
	srv_log(log, SRV_LOG_INFO, "cairnd started", "version", SRV_CAIRN_VERSION,
	        "etcd-api-version", SRV_VERSION, "name", cfg->name, "data-dir", cfg->data_dir,
	        "member-id", idbuf, "cluster-id", cidbuf, "client-urls", curls, "peer-urls", purls,
	        "initial-cluster", cfg->initial_cluster, "revision", rev, "applied-index", applied,
	        NULL);

	/* A cluster of one need not wait an election timeout. */
	if (conf.n_voters == 1 && conf.voters[0] == m->id) {
		struct raft_event ev = {.type = RAFT_EVENT_CAMPAIGN};
		step(m, &ev, NULL);
	}
	maybe_submit(m);
	return 0;
}

static void fail_all_pending(struct srv_member *m)
{
	for (size_t i = 0; i < m->writes.cap; i++) {
		if (!m->writes.keys[i])
			continue;
		struct srv_pending *p = m->writes.vals[i];
		srv_member_fail(m, p->call, p->method, CAIRN_ESTOPPED);
		free(p);
	}
	srv_idmap_free(&m->writes);
	for (size_t i = 0; i < m->reads.cap; i++) {
		if (!m->reads.keys[i])
			continue;
		struct srv_pending *p = m->reads.vals[i];
		srv_member_fail(m, p->call, p->method, CAIRN_ESTOPPED);
		etcdserverpb__range_request__free_unpacked(p->range, NULL);
		free(p);
	}
	srv_idmap_free(&m->reads);
	while (m->reads_waiting) {
		struct srv_pending *p = m->reads_waiting;
		m->reads_waiting = p->next;
		srv_member_fail(m, p->call, p->method, CAIRN_ESTOPPED);
		etcdserverpb__range_request__free_unpacked(p->range, NULL);
		free(p);
	}
}

void srv_member_stop(struct srv_member *m)
{
	if (m->stopping)
		return;
	m->stopping = true;
	uv_timer_stop(&m->tick);
	uv_signal_stop(&m->sigterm);
	uv_signal_stop(&m->sigint);
	/* Stop taking requests; what is in flight gets its answer or ESTOPPED. */
	fail_all_pending(m);
	if (m->move_call) {
		struct rpc_call *c = m->move_call;
		m->move_call = NULL;
		srv_maint_move_done(m, c, m->move_method, CAIRN_ESTOPPED);
	}
	if (!m->inflight)
		uv_stop(m->loop);
}

void srv_member_close(struct srv_member *m)
{
	srv_watch_hub_free(m->hub);
	m->hub = NULL;
	srv_cluster_stop(m);
	if (m->rpc)
		rpc_server_close(m->rpc, 0, NULL, NULL);
	srv_batch_stop(m);
	uv_close((uv_handle_t *)&m->q.async, NULL);
	uv_close((uv_handle_t *)&m->tick, NULL);
	uv_close((uv_handle_t *)&m->sigterm, NULL);
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_run(m->loop, UV_RUN_DEFAULT);
	rpc_set_log_sink(NULL, NULL);
	srv_lease_free(m);
	srv_maint_free(m);
	free(m->kv_ctx);
	free(m->capi_ctx);
	for (int i = 0; i < 3; i++)
		srv_batch_free(&m->batches[i]);
	raft_free(m->raft);
	raft_lmdb_close(m->rl);
	if (m->store)
		store_sync(m->store); /* the last batch's meta page */
	store_close(m->store);
	srv_membership_free(&m->members);
}
