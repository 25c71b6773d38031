/*
 * cairnctl_cluster.c — lease, member, endpoint, alarm, defrag, snapshot
 * save, move-leader and version commands, after etcdctl's
 * lease_command.go, member_command.go, ep_command.go, alarm_command.go,
 * defrag_command.go, snapshot_command.go and move_leader_command.go.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cairnctl.h"

static void json_line(const ProtobufCMessage *m)
{
	ctl_json_msg(stdout, m);
	putchar('\n');
}

/* One connection per endpoint, for the commands that ask each member. */
static int call_ep(const char *ep, const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out, char *err)
{
	struct ctl_conn c;
	if (ctl_conn_open(&c, ep, ctl_g.dial_timeout_ms, ctl_g.command_timeout_ms) != 0) {
		snprintf(err, CTL_ERR_LEN, "bad endpoint %s", ep);
		return RPC_INVALID_ARGUMENT;
	}
	c.alloc = ctl_pb_allocator();
	int rc = ctl_call(&c, path, req, rd, out, err);
	ctl_conn_close(&c);
	return rc;
}

static int64_t parse_lease_id(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 16);
	if (!*s || *end || errno)
		ctl_bad_args("bad lease ID arg (strconv.ParseInt: parsing \"%s\": invalid syntax), "
		             "expecting ID in Hex",
		             s);
	return v;
}

static uint64_t parse_member_id(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 16);
	if (!*s || *end || errno || *s == '-')
		ctl_bad_args(
		    "bad member ID arg (strconv.ParseUint: parsing \"%s\": invalid syntax), "
		    "expecting ID in Hex",
		    s);
	return v;
}

/* ---------------------------------------------------------------- lease */

static int cmd_lease_grant(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("lease grant command needs TTL argument");
	char *end;
	long long ttl = strtoll(argv[0], &end, 10);
	if (!*argv[0] || *end)
		ctl_bad_args("bad TTL (strconv.ParseInt: parsing \"%s\": invalid syntax)", argv[0]);
	Etcdserverpb__LeaseGrantRequest req = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	req.ttl = ttl;
	char err[CTL_ERR_LEN];
	Etcdserverpb__LeaseGrantResponse *r;
	if (ctl_call(ctl_conn(), "/etcdserverpb.Lease/LeaseGrant", &req.base,
	             &etcdserverpb__lease_grant_response__descriptor, (ProtobufCMessage **)&r,
	             err) != 0)
		ctl_die(EXIT_ERROR, "failed to grant lease (%s)", err);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("lease %016" PRIx64 " granted with TTL(%llds)\n", (uint64_t)r->id,
		       (long long)r->ttl);
		break;
	case OUT_JSON: {
		bool first;
		ctl_json_open_flat(r->header, &first);
		printf("%s\"ID\":%lld,\"TTL\":%lld,\"Error\":", first ? "" : ",", (long long)r->id,
		       (long long)r->ttl);
		ctl_json_str(stdout, r->error, strlen(r->error));
		puts("}");
		break;
	}
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		printf("\"ID\" : %lld\n\"TTL\" : %lld\n", (long long)r->id, (long long)r->ttl);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

static int cmd_lease_revoke(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("lease revoke command needs 1 argument");
	Etcdserverpb__LeaseRevokeRequest req = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	req.id = parse_lease_id(argv[0]);
	char err[CTL_ERR_LEN];
	Etcdserverpb__LeaseRevokeResponse *r;
	if (ctl_call(ctl_conn(), "/etcdserverpb.Lease/LeaseRevoke", &req.base,
	             &etcdserverpb__lease_revoke_response__descriptor, (ProtobufCMessage **)&r,
	             err) != 0)
		ctl_die(EXIT_ERROR, "failed to revoke lease (%s)", err);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("lease %016" PRIx64 " revoked\n", (uint64_t)req.id);
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(&r->base);
		break;
	case OUT_JSON:
		json_line(&r->base);
		break;
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

static bool ttl_keys;
static const struct ctl_flag ttl_flags[] = {
    {"keys", 0, FLAG_BOOL, &ttl_keys, "false", "Get keys attached to this lease"},
    {0},
};

static int cmd_lease_timetolive(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("lease timetolive command needs lease ID as argument");
	Etcdserverpb__LeaseTimeToLiveRequest req = ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
	req.id = parse_lease_id(argv[0]);
	req.keys = ttl_keys;
	Etcdserverpb__LeaseTimeToLiveResponse *r =
	    (Etcdserverpb__LeaseTimeToLiveResponse *)ctl_must_call(
	        "/etcdserverpb.Lease/LeaseTimeToLive", &req.base,
	        &etcdserverpb__lease_time_to_live_response__descriptor, EXIT_BAD_CONNECTION);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		if (r->grantedttl == 0 && r->ttl == -1) {
			printf("lease %016" PRIx64 " already expired\n", (uint64_t)r->id);
			break;
		}
		printf("lease %016" PRIx64 " granted with TTL(%llds), remaining(%llds)",
		       (uint64_t)r->id, (long long)r->grantedttl, (long long)r->ttl);
		if (ttl_keys) {
			printf(", attached keys([");
			for (size_t i = 0; i < r->n_keys; i++) {
				if (i)
					putchar(' ');
				fwrite(r->keys[i].data, 1, r->keys[i].len, stdout);
			}
			printf("])");
		}
		putchar('\n');
		break;
	case OUT_JSON: {
		bool first;
		ctl_json_open_flat(r->header, &first);
		printf(
		    "%s\"id\":%lld,\"ttl\":%lld,\"granted-ttl\":%lld,\"keys\":", first ? "" : ",",
		    (long long)r->id, (long long)r->ttl, (long long)r->grantedttl);
		if (r->n_keys == 0) {
			fputs("null", stdout);
		} else {
			putchar('[');
			for (size_t i = 0; i < r->n_keys; i++) {
				if (i)
					putchar(',');
				ctl_json_b64(stdout, r->keys[i].data, r->keys[i].len);
			}
			putchar(']');
		}
		puts("}");
		break;
	}
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		printf("\"ID\" : %lld\n\"TTL\" : %lld\n\"GrantedTTL\" : %lld\n", (long long)r->id,
		       (long long)r->ttl, (long long)r->grantedttl);
		for (size_t i = 0; i < r->n_keys; i++)
			printf("\"Key\" : \"%.*s\"\n", (int)r->keys[i].len,
			       (const char *)r->keys[i].data);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

static int cmd_lease_list(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("lease list command does not accept arguments");
	Etcdserverpb__LeaseLeasesRequest req = ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
	Etcdserverpb__LeaseLeasesResponse *r = (Etcdserverpb__LeaseLeasesResponse *)ctl_must_call(
	    "/etcdserverpb.Lease/LeaseLeases", &req.base,
	    &etcdserverpb__lease_leases_response__descriptor, EXIT_BAD_CONNECTION);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("found %zu leases\n", r->n_leases);
		for (size_t i = 0; i < r->n_leases; i++)
			printf("%016" PRIx64 "\n", (uint64_t)r->leases[i]->id);
		break;
	case OUT_JSON: {
		bool first;
		ctl_json_open_flat(r->header, &first);
		printf("%s\"leases\":[", first ? "" : ",");
		for (size_t i = 0; i < r->n_leases; i++)
			printf("%s{\"id\":%lld}", i ? "," : "", (long long)r->leases[i]->id);
		puts("]}");
		break;
	}
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		for (size_t i = 0; i < r->n_leases; i++)
			printf("\"ID\" : %lld\n", (long long)r->leases[i]->id);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

static bool ka_once;
static const struct ctl_flag ka_flags[] = {
    {"once", 0, FLAG_BOOL, &ka_once, "false",
     "Resets the keep-alive time to its original value and exits immediately"},
    {0},
};

struct ka_state {
	bool done;
	bool got;
	bool not_sent; /* the stream's connection could not be made */
	int status;
	int64_t id;
	int64_t ttl;
	char message[CTL_ERR_LEN];
	struct rpc_client_stream *s;
	uv_timer_t timer;
};

static void print_keepalive(const Etcdserverpb__LeaseKeepAliveResponse *r)
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("lease %016" PRIx64 " keepalived with TTL(%lld)\n", (uint64_t)r->id,
		       (long long)r->ttl);
		break;
	case OUT_JSON: {
		bool first;
		ctl_json_open_flat(r->header, &first);
		printf("%s\"ID\":%lld,\"TTL\":%lld}\n", first ? "" : ",", (long long)r->id,
		       (long long)r->ttl);
		break;
	}
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		printf("\"ID\" : %lld\n\"TTL\" : %lld\n", (long long)r->id, (long long)r->ttl);
		break;
	default:
		ctl_unsupported_output();
	}
	fflush(stdout);
}

static void ka_send(struct ka_state *st)
{
	Etcdserverpb__LeaseKeepAliveRequest req = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	req.id = st->id;
	rpc_client_stream_send_msg(st->s, &req.base);
}

static void ka_timer(uv_timer_t *t)
{
	ka_send(t->data);
}

static void ka_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	struct ka_state *st = rpc_client_stream_data(s);
	Etcdserverpb__LeaseKeepAliveResponse *r =
	    etcdserverpb__lease_keep_alive_response__unpack(NULL, len, msg);
	if (!r)
		return;
	st->got = true;
	st->ttl = r->ttl;
	if (r->ttl <= 0) {
		st->done = true;
		rpc_client_stream_cancel(s);
	} else {
		print_keepalive(r);
		if (ka_once) {
			st->done = true;
			rpc_client_stream_cancel(s);
		} else {
			uint64_t every = (uint64_t)r->ttl * 1000 / 3;
			uv_timer_start(&st->timer, ka_timer, every ? every : 500, 0);
		}
	}
	etcdserverpb__lease_keep_alive_response__free_unpacked(r, NULL);
}

static void ka_close(struct rpc_client_stream *s, int grpc_status, const char *message)
{
	struct ka_state *st = rpc_client_stream_data(s);
	if (!st->done) {
		st->status = grpc_status;
		st->not_sent = ctl_not_sent(grpc_status, message);
		ctl_format_error(grpc_status, message ? message : "", st->message);
	}
	st->done = true;
	uv_timer_stop(&st->timer);
}

static void timer_closed(uv_handle_t *h)
{
	*(bool *)h->data = true;
}

static int cmd_lease_keepalive(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("lease keep-alive command needs lease ID as argument");
	struct ka_state st = {0};
	st.id = parse_lease_id(argv[0]);
	struct ctl_conn *c = ctl_conn();
	uv_timer_init(&c->loop, &st.timer);
	st.timer.data = &st;
	struct rpc_client_stream_cbs cbs = {.on_message = ka_msg, .on_close = ka_close};
	uint64_t start = ctl_now_ms();
	struct ctl_retry retry = {0};
	for (;;) {
		st.done = st.not_sent = false;
		st.status = 0;
		if (!c->cli || rpc_client_stream_open(c->cli, "/etcdserverpb.Lease/LeaseKeepAlive",
		                                      &cbs, &st, &st.s) != 0)
			ctl_die(EXIT_BAD_CONNECTION, "grpc: the client connection is closing");
		ka_send(&st);
		ctl_run(c, &st.done);
		if (!st.got && st.not_sent && ctl_retry(c, start, &retry, true))
			continue; /* on the next endpoint */
		break;
	}
	uv_timer_stop(&st.timer);
	bool closed = false;
	st.timer.data = &closed;
	uv_close((uv_handle_t *)&st.timer, timer_closed);
	ctl_run(c, &closed);
	if (st.status != 0 && !st.got) {
		if (st.status == RPC_UNAVAILABLE && strncmp(st.message, "etcdserver", 10) != 0)
			ctl_die(EXIT_BAD_CONNECTION, "context deadline exceeded");
		ctl_die(EXIT_BAD_CONNECTION, "%s", st.message);
	}
	if (ka_once) {
		if (st.ttl <= 0)
			ctl_die(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found");
		return 0;
	}
	if (ctl_g.out == OUT_SIMPLE)
		printf("lease %016" PRIx64 " expired or revoked.\n", (uint64_t)st.id);
	return 0;
}

/* --------------------------------------------------------------- member */

static const char *peer_urls = "";
static bool member_learner;
static const struct ctl_flag member_add_flags[] = {
    {"peer-urls", 0, FLAG_STR, &peer_urls, "", "comma separated peer URLs for the new member."},
    {"learner", 0, FLAG_BOOL, &member_learner, "false",
     "indicates if the new member is raft learner"},
    {0},
};
static const struct ctl_flag member_update_flags[] = {
    {"peer-urls", 0, FLAG_STR, &peer_urls, "", "comma separated peer URLs for the updated member."},
    {0},
};

/* The simple printer's rows: cells joined by ", ". */
static void print_rows(char **cells, size_t ncols, size_t stride, size_t nrows)
{
	for (size_t i = 0; i < nrows; i++)
		for (size_t c = 0; c < ncols; c++)
			printf("%s%s", cells[i * stride + c], c + 1 < ncols ? ", " : "\n");
}

/* [{"Endpoint":"...","<key>":{...}}, ...] as etcdctl's epStatus/epHashKV. */
static void json_ep_list(const char *key, const char **eps, ProtobufCMessage **msgs, size_t n)
{
	putchar('[');
	for (size_t i = 0; i < n; i++) {
		printf("%s{\"Endpoint\":", i ? "," : "");
		ctl_json_str(stdout, eps[i], strlen(eps[i]));
		printf(",\"%s\":", key);
		ctl_json_msg(stdout, msgs[i]);
		putchar('}');
	}
	puts("]");
}

static void member_table_row(const Etcdserverpb__Member *m, char **row)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%" PRIx64, m->id);
	row[0] = ctl_strdup(buf);
	row[1] = ctl_strdup(m->name && *m->name ? "started" : "unstarted");
	row[2] = ctl_strdup(m->name ? m->name : "");
	size_t o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < m->n_peerurls; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "",
		                      m->peerurls[i]);
	row[3] = ctl_strdup(buf);
	o = 0;
	buf[0] = 0;
	for (size_t i = 0; i < m->n_clienturls; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "",
		                      m->clienturls[i]);
	row[4] = ctl_strdup(buf);
	row[5] = ctl_strdup(m->islearner ? "true" : "false");
}

static void split_urls(const char *s, char ***out, size_t *n)
{
	char *dup = ctl_strdup(s);
	size_t cap = 4;
	*out = ctl_alloc(cap * sizeof(char *));
	*n = 0;
	/* strings.Split keeps empty pieces */
	for (char *p = dup;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = 0;
		if (*n == cap)
			*out = ctl_realloc(*out, (cap *= 2) * sizeof(char *));
		(*out)[(*n)++] = p;
		if (!comma)
			break;
		p = comma + 1;
	}
}

static void print_member_change(const char *verb, uint64_t id, const ProtobufCMessage *r,
                                const Etcdserverpb__ResponseHeader *h)
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("Member %16" PRIx64 " %s cluster %16" PRIx64 "\n", id, verb,
		       h ? h->cluster_id : 0);
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(r);
		break;
	case OUT_JSON:
		json_line(r);
		break;
	case OUT_FIELDS:
		ctl_fields_header(h);
		break;
	default:
		ctl_unsupported_output();
	}
}

static int cmd_member_add(int argc, char **argv)
{
	if (argc < 1)
		ctl_bad_args("member name not provided");
	if (argc > 1) {
		char ev[1024];
		size_t o = (size_t)snprintf(ev, sizeof(ev), "too many arguments");
		for (int i = 0; i < argc; i++)
			if (!strncasecmp(argv[i], "http", 4) && o < sizeof(ev))
				o += (size_t)snprintf(ev + o, sizeof(ev) - o,
				                      ", did you mean --peer-urls=%s", argv[i]);
		ctl_bad_args("%s", ev);
	}
	if (!*peer_urls)
		ctl_bad_args("member peer urls not provided");
	Etcdserverpb__MemberAddRequest req = ETCDSERVERPB__MEMBER_ADD_REQUEST__INIT;
	split_urls(peer_urls, &req.peerurls, &req.n_peerurls);
	req.islearner = member_learner;
	Etcdserverpb__MemberAddResponse *r = (Etcdserverpb__MemberAddResponse *)ctl_must_call(
	    "/etcdserverpb.Cluster/MemberAdd", &req.base,
	    &etcdserverpb__member_add_response__descriptor, EXIT_ERROR);
	uint64_t nid = r->member ? r->member->id : 0;
	if (ctl_g.out == OUT_SIMPLE) {
		printf("Member %16" PRIx64 " added to cluster %16" PRIx64 "\n", nid,
		       r->header ? r->header->cluster_id : 0);
		printf("\nETCD_NAME=\"%s\"\nETCD_INITIAL_CLUSTER=\"", argv[0]);
		bool first = true;
		for (size_t i = 0; i < r->n_members; i++) {
			const Etcdserverpb__Member *m = r->members[i];
			for (size_t j = 0; j < m->n_peerurls; j++) {
				printf("%s%s=%s", first ? "" : ",",
				       m->id == nid ? argv[0] : m->name, m->peerurls[j]);
				first = false;
			}
		}
		printf("\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"%s\"\n", peer_urls);
		printf("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
	} else {
		print_member_change("added to", nid, &r->base, r->header);
	}
	return 0;
}

/* remove, update, promote: one hex id argument parsed into *id_field (the
 * request's id), one call, then "Member %16x <verb> cluster %16x". */
static int member_change(int argc, char **argv, const char *path, ProtobufCMessage *req,
                         uint64_t *id_field, const ProtobufCMessageDescriptor *rd, const char *verb)
{
	if (argc != 1)
		ctl_bad_args("member ID is not provided");
	*id_field = parse_member_id(argv[0]);
	if (!strcmp(verb, "updated in")) {
		Etcdserverpb__MemberUpdateRequest *u = (Etcdserverpb__MemberUpdateRequest *)req;
		if (!*peer_urls)
			ctl_bad_args("member peer urls not provided");
		split_urls(peer_urls, &u->peerurls, &u->n_peerurls);
	}
	ProtobufCMessage *r = ctl_must_call(path, req, rd, EXIT_ERROR);
	/* every member response starts with its header (field 1) */
	const Etcdserverpb__ResponseHeader *h =
	    *(Etcdserverpb__ResponseHeader *const *)((const char *)r + rd->fields[0].offset);
	print_member_change(verb, *id_field, r, h);
	return 0;
}

static int cmd_member_remove(int argc, char **argv)
{
	Etcdserverpb__MemberRemoveRequest req = ETCDSERVERPB__MEMBER_REMOVE_REQUEST__INIT;
	return member_change(argc, argv, "/etcdserverpb.Cluster/MemberRemove", &req.base, &req.id,
	                     &etcdserverpb__member_remove_response__descriptor, "removed from");
}

static int cmd_member_update(int argc, char **argv)
{
	Etcdserverpb__MemberUpdateRequest req = ETCDSERVERPB__MEMBER_UPDATE_REQUEST__INIT;
	return member_change(argc, argv, "/etcdserverpb.Cluster/MemberUpdate", &req.base, &req.id,
	                     &etcdserverpb__member_update_response__descriptor, "updated in");
}

static int cmd_member_promote(int argc, char **argv)
{
	Etcdserverpb__MemberPromoteRequest req = ETCDSERVERPB__MEMBER_PROMOTE_REQUEST__INIT;
	return member_change(argc, argv, "/etcdserverpb.Cluster/MemberPromote", &req.base, &req.id,
	                     &etcdserverpb__member_promote_response__descriptor, "promoted in");
}

static const char *const member_hdr[] = {"ID",         "Status",       "Name",
                                         "Peer Addrs", "Client Addrs", "Is Learner"};

static int cmd_member_list(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Etcdserverpb__MemberListRequest req = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
	Etcdserverpb__MemberListResponse *r = (Etcdserverpb__MemberListResponse *)ctl_must_call(
	    "/etcdserverpb.Cluster/MemberList", &req.base,
	    &etcdserverpb__member_list_response__descriptor, EXIT_ERROR);
	char **cells = ctl_alloc((r->n_members * 6 + 1) * (sizeof(char *)));
	for (size_t i = 0; i < r->n_members; i++)
		member_table_row(r->members[i], cells + i * 6);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		print_rows(cells, 6, 6, r->n_members);
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(&r->base);
		break;
	case OUT_JSON:
		json_line(&r->base);
		break;
	case OUT_TABLE:
		ctl_print_table(member_hdr, 6, cells, r->n_members);
		break;
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		for (size_t i = 0; i < r->n_members; i++) {
			const Etcdserverpb__Member *m = r->members[i];
			printf("\"ID\" : %" PRIu64 "\n\"Name\" : \"%s\"\n", m->id, m->name);
			for (size_t j = 0; j < m->n_peerurls; j++)
				printf("\"PeerURL\" : \"%s\"\n", m->peerurls[j]);
			for (size_t j = 0; j < m->n_clienturls; j++)
				printf("\"ClientURL\" : \"%s\"\n", m->clienturls[j]);
			printf("\"IsLearner\" : %s\n\n", m->islearner ? "true" : "false");
		}
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

/* ------------------------------------------------------------- endpoint */

static bool ep_cluster;
static int64_t hashkv_rev;
static const struct ctl_flag ep_flags[] = {
    {"cluster", 0, FLAG_BOOL, &ep_cluster, "false",
     "use all endpoints from the cluster member list"},
    {0},
};
static const struct ctl_flag hashkv_flags[] = {
    {"cluster", 0, FLAG_BOOL, &ep_cluster, "false",
     "use all endpoints from the cluster member list"},
    {"rev", 0, FLAG_INT, &hashkv_rev, "0", "maximum revision to hash (default: all revisions)"},
    {0},
};

static int cmd_endpoint_health(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	char **eps;
	size_t n;
	ctl_endpoints(ep_cluster, &eps, &n);
	char **cells = ctl_alloc((n * 4 + 1) * (sizeof(char *)));
	bool errs = false;
	for (size_t i = 0; i < n; i++) {
		Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
		req.key = (ProtobufCBinaryData){6, (uint8_t *)"health"};
		char err[CTL_ERR_LEN], took[64];
		ProtobufCMessage *out = NULL;
		uint64_t t0 = uv_hrtime();
		int rc = call_ep(eps[i], "/etcdserverpb.KV/Range", &req.base,
		                 &etcdserverpb__range_response__descriptor, &out, err);
		ctl_go_duration(uv_hrtime() - t0, took, sizeof(took));
		bool ok = rc == 0 || rc == RPC_PERMISSION_DENIED;
		cells[i * 4] = eps[i];
		cells[i * 4 + 1] = ok ? "true" : "false";
		cells[i * 4 + 2] = ctl_strdup(took);
		cells[i * 4 + 3] = ok ? "" : ctl_strdup(err);
		errs |= !ok;
	}
	static const char *const hdr[] = {"endpoint", "health", "took", "error"};
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		for (size_t i = 0; i < n; i++) {
			if (!*cells[i * 4 + 3])
				fprintf(
				    stderr,
				    "%s is healthy: successfully committed proposal: took = %s\n",
				    cells[i * 4], cells[i * 4 + 2]);
			else
				fprintf(stderr, "%s is unhealthy: failed to commit proposal: %s\n",
				        cells[i * 4], cells[i * 4 + 3]);
		}
		break;
	case OUT_JSON:
		putchar('[');
		for (size_t i = 0; i < n; i++) {
			printf("%s{\"endpoint\":", i ? "," : "");
			ctl_json_str(stdout, cells[i * 4], strlen(cells[i * 4]));
			printf(",\"health\":%s,\"took\":", cells[i * 4 + 1]);
			ctl_json_str(stdout, cells[i * 4 + 2], strlen(cells[i * 4 + 2]));
			if (*cells[i * 4 + 3]) {
				fputs(",\"error\":", stdout);
				ctl_json_str(stdout, cells[i * 4 + 3], strlen(cells[i * 4 + 3]));
			}
			putchar('}');
		}
		puts("]");
		break;
	case OUT_TABLE:
		ctl_print_table(hdr, 4, cells, n);
		break;
	case OUT_FIELDS:
		for (size_t i = 0; i < n; i++)
			printf("\"Endpoint\" : \"%s\"\n\"Health\" : %s\n\"Took\" : %s\n\"Error\" : "
			       "%s\n\n",
			       cells[i * 4], cells[i * 4 + 1], cells[i * 4 + 2], cells[i * 4 + 3]);
		break;
	default:
		ctl_unsupported_output();
	}
	if (errs)
		ctl_die(EXIT_ERROR, "unhealthy cluster");
	return 0;
}

/* Calls every endpoint (--cluster: every member's client URLs); the
 * responses that came back and their endpoints go to *outs / *eps_ok (both
 * malloc'd), their count is returned. A failure is reported as etcdctl does
 * ("Failed to get the <what> of endpoint ...") and the last one is kept in
 * last_err ("" if none). */
static size_t call_each(const char *path, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *rd, const char *what,
                        ProtobufCMessage ***outs, const char ***eps_ok, char *last_err)
{
	char **eps;
	size_t n, k = 0;
	ctl_endpoints(ep_cluster, &eps, &n);
	*outs = ctl_alloc((n + 1) * (sizeof(**outs)));
	*eps_ok = ctl_alloc((n + 1) * (sizeof(**eps_ok)));
	last_err[0] = 0;
	for (size_t i = 0; i < n; i++) {
		char err[CTL_ERR_LEN];
		ProtobufCMessage *out;
		if (call_ep(eps[i], path, req, rd, &out, err) != 0) {
			fprintf(stderr, "Failed to get the %s of endpoint %s (%s)\n", what, eps[i],
			        err);
			snprintf(last_err, CTL_ERR_LEN, "%s", err);
			continue;
		}
		(*eps_ok)[k] = eps[i];
		(*outs)[k++] = out;
	}
	return k;
}

static int cmd_endpoint_status(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
	Etcdserverpb__StatusResponse **rs;
	const char **rep;
	char last_err[CTL_ERR_LEN];
	size_t k = call_each("/etcdserverpb.Maintenance/Status", &req.base,
	                     &etcdserverpb__status_response__descriptor, "status",
	                     (ProtobufCMessage ***)&rs, &rep, last_err);
	bool failed = *last_err != 0;
	static const char *const hdr[] = {"endpoint",  "ID",         "version",
	                                  "db size",   "is leader",  "is learner",
	                                  "raft term", "raft index", "raft applied index",
	                                  "errors"};
	char **cells = ctl_alloc((k * 11 + 1) * (sizeof(char *)));
	for (size_t i = 0; i < k; i++) {
		const Etcdserverpb__StatusResponse *s = rs[i];
		uint64_t mid = s->header ? s->header->member_id : 0;
		char b[256];
		char **row = cells + i * 11;
		row[0] = (char *)rep[i];
		snprintf(b, sizeof(b), "%" PRIx64, mid);
		row[1] = ctl_strdup(b);
		row[2] = s->version;
		ctl_humanize_bytes((uint64_t)s->dbsize, b, sizeof(b));
		row[3] = ctl_strdup(b);
		row[4] = s->leader == mid ? "true" : "false";
		row[5] = s->islearner ? "true" : "false";
		snprintf(b, sizeof(b), "%" PRIu64, s->raftterm);
		row[6] = ctl_strdup(b);
		snprintf(b, sizeof(b), "%" PRIu64, s->raftindex);
		row[7] = ctl_strdup(b);
		snprintf(b, sizeof(b), "%" PRIu64, s->raftappliedindex);
		row[8] = ctl_strdup(b);
		size_t o = 0;
		b[0] = 0;
		for (size_t j = 0; j < s->n_errors && o < sizeof(b); j++)
			o += (size_t)snprintf(b + o, sizeof(b) - o, "%s%s", j ? ", " : "",
			                      s->errors[j]);
		row[9] = ctl_strdup(b);
		/* fields: Go's %v of a []string */
		o = 0;
		b[0] = 0;
		for (size_t j = 0; j < s->n_errors && o < sizeof(b); j++)
			o += (size_t)snprintf(b + o, sizeof(b) - o, "%s%s", j ? " " : "",
			                      s->errors[j]);
		row[10] = ctl_strdup(b);
	}
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		print_rows(cells, 10, 11, k);
		break;
	case OUT_JSON:
		json_ep_list("Status", rep, (ProtobufCMessage **)rs, k);
		break;
	case OUT_TABLE:
		ctl_print_table_stride(hdr, 10, 11, cells, k);
		break;
	case OUT_FIELDS:
		for (size_t i = 0; i < k; i++) {
			const Etcdserverpb__StatusResponse *s = rs[i];
			ctl_fields_header(s->header);
			printf("\"Version\" : \"%s\"\n\"DBSize\" : %lld\n\"Leader\" : %" PRIu64
			       "\n\"IsLearner\" : %s\n\"RaftIndex\" : %" PRIu64
			       "\n\"RaftTerm\" : %" PRIu64 "\n\"RaftAppliedIndex\" : %" PRIu64
			       "\n\"Errors\" : [%s]\n\"Endpoint\" : "
			       "\"%s\"\n\n",
			       s->version, (long long)s->dbsize, s->leader,
			       s->islearner ? "true" : "false", s->raftindex, s->raftterm,
			       s->raftappliedindex, cells[i * 11 + 10], rep[i]);
		}
		break;
	default:
		ctl_unsupported_output();
	}
	if (failed)
		exit(EXIT_ERROR);
	return 0;
}

static int cmd_endpoint_hashkv(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Etcdserverpb__HashKVRequest req = ETCDSERVERPB__HASH_KVREQUEST__INIT;
	req.revision = hashkv_rev;
	Etcdserverpb__HashKVResponse **rs;
	const char **rep;
	char last_err[CTL_ERR_LEN];
	size_t k = call_each("/etcdserverpb.Maintenance/HashKV", &req.base,
	                     &etcdserverpb__hash_kvresponse__descriptor, "hash",
	                     (ProtobufCMessage ***)&rs, &rep, last_err);
	static const char *const hdr[] = {"endpoint", "hash"};
	char **cells = ctl_alloc((k * 2 + 1) * (sizeof(char *)));
	for (size_t i = 0; i < k; i++) {
		char b[32];
		cells[i * 2] = (char *)rep[i];
		snprintf(b, sizeof(b), "%u", rs[i]->hash);
		cells[i * 2 + 1] = ctl_strdup(b);
	}
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		print_rows(cells, 2, 2, k);
		break;
	case OUT_JSON:
		json_ep_list("HashKV", rep, (ProtobufCMessage **)rs, k);
		break;
	case OUT_TABLE:
		ctl_print_table(hdr, 2, cells, k);
		break;
	case OUT_FIELDS:
		for (size_t i = 0; i < k; i++) {
			ctl_fields_header(rs[i]->header);
			printf("\"Endpoint\" : \"%s\"\n\"Hash\" : %u\n\n", rep[i], rs[i]->hash);
		}
		break;
	default:
		ctl_unsupported_output();
	}
	if (*last_err)
		ctl_die(EXIT_ERROR, "%s", last_err);
	return 0;
}

/* ---------------------------------------------------------------- alarm */

static const char *alarm_name(int a)
{
	return a == ETCDSERVERPB__ALARM_TYPE__NOSPACE   ? "NOSPACE"
	       : a == ETCDSERVERPB__ALARM_TYPE__CORRUPT ? "CORRUPT"
	                                                : "NONE";
}

static void print_alarms(const Etcdserverpb__AlarmResponse *r)
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		for (size_t i = 0; i < r->n_alarms; i++)
			printf("memberID:%" PRIu64 " alarm:%s \n", r->alarms[i]->memberid,
			       alarm_name(r->alarms[i]->alarm));
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(&r->base);
		break;
	case OUT_JSON:
		json_line(&r->base);
		break;
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		for (size_t i = 0; i < r->n_alarms; i++)
			printf("\"MemberID\" : %" PRIu64 "\n\"AlarmType\" : %s\n\n",
			       r->alarms[i]->memberid, alarm_name(r->alarms[i]->alarm));
		break;
	default:
		ctl_unsupported_output();
	}
}

static Etcdserverpb__AlarmResponse *alarm_call(int action, uint64_t member, int alarm)
{
	Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
	req.action = action;
	req.memberid = member;
	req.alarm = alarm;
	return (Etcdserverpb__AlarmResponse *)ctl_must_call(
	    "/etcdserverpb.Maintenance/Alarm", &req.base, &etcdserverpb__alarm_response__descriptor,
	    EXIT_ERROR);
}

static int cmd_alarm_list(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("alarm list command accepts no arguments");
	Etcdserverpb__AlarmResponse *r =
	    alarm_call(ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0, 0);
	print_alarms(r);
	return 0;
}

static int cmd_alarm_disarm(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("alarm disarm command accepts no arguments");
	/* clientv3 AlarmDisarm with no member: list, then deactivate each. */
	Etcdserverpb__AlarmResponse *list =
	    alarm_call(ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0, 0);
	Etcdserverpb__AlarmResponse *r = list;
	for (size_t i = 0; i < list->n_alarms; i++) {
		Etcdserverpb__AlarmResponse *d =
		    alarm_call(ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE,
		               list->alarms[i]->memberid, list->alarms[i]->alarm);
		if (r != list)
			r = d;
	}
	if (list->n_alarms == 0) {
		/* etcdctl prints the empty list response */
		print_alarms(list);
	} else {
		print_alarms(r);
	}
	return 0;
}

/* --------------------------------------------------------------- defrag */

static const char *defrag_dir = "";
static const struct ctl_flag defrag_flags[] = {
    {"cluster", 0, FLAG_BOOL, &ep_cluster, "false",
     "use all endpoints from the cluster member list"},
    {"data-dir", 0, FLAG_STR, &defrag_dir, "",
     "Optional. If present, defragments a data directory not in use by etcd."},
    {0},
};

static int cmd_defrag(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (*defrag_dir) {
		/* LMDB reuses freed pages itself (DESIGN.md §3): nothing to do offline. */
		return 0;
	}
	char **eps;
	size_t n;
	ctl_endpoints(ep_cluster, &eps, &n);
	bool failed = false;
	for (size_t i = 0; i < n; i++) {
		Etcdserverpb__DefragmentRequest req = ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
		char err[CTL_ERR_LEN];
		ProtobufCMessage *out;
		if (call_ep(eps[i], "/etcdserverpb.Maintenance/Defragment", &req.base,
		            &etcdserverpb__defragment_response__descriptor, &out, err) != 0) {
			fprintf(stderr, "Failed to defragment etcd member[%s] (%s)\n", eps[i], err);
			failed = true;
			continue;
		}
		printf("Finished defragmenting etcd member[%s]\n", eps[i]);
	}
	return failed ? EXIT_ERROR : 0;
}

/* ------------------------------------------------------------- snapshot */

struct snap_state {
	bool done;
	int fd;
	int status;
	char message[CTL_ERR_LEN];
	uint64_t bytes;
	bool io_error;
};

static void snap_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	struct snap_state *st = rpc_client_stream_data(s);
	Etcdserverpb__SnapshotResponse *r = etcdserverpb__snapshot_response__unpack(NULL, len, msg);
	if (!r)
		return;
	const uint8_t *p = r->blob.data;
	size_t left = r->blob.len;
	while (left > 0 && !st->io_error) {
		ssize_t w = write(st->fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			st->io_error = true;
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	st->bytes += r->blob.len;
	etcdserverpb__snapshot_response__free_unpacked(r, NULL);
}

static void snap_close(struct rpc_client_stream *s, int grpc_status, const char *message)
{
	struct snap_state *st = rpc_client_stream_data(s);
	st->status = grpc_status;
	if (grpc_status)
		ctl_format_error(grpc_status, message ? message : "", st->message);
	st->done = true;
}

static int cmd_snapshot_save(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("snapshot save expects one argument");
	if (ctl_g.n_endpoints != 1)
		ctl_bad_args("snapshot must be requested to one selected node, not multiple [%s]",
		             ctl_g.endpoints[0]);
	const char *path = argv[0];
	char part[4096];
	snprintf(part, sizeof(part), "%s.part", path);
	struct snap_state st = {0};
	st.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (st.fd < 0)
		ctl_die(EXIT_INTERRUPTED, "could not open %s (%s)", part, strerror(errno));
	struct ctl_conn *c = ctl_conn();
	Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
	struct rpc_client_stream_cbs cbs = {.on_message = snap_msg, .on_close = snap_close};
	struct rpc_client_stream *s;
	if (rpc_client_stream_open(c->cli, "/etcdserverpb.Maintenance/Snapshot", &cbs, &st, &s) !=
	        0 ||
	    rpc_client_stream_send_msg(s, &req.base) != 0 || rpc_client_stream_half_close(s) != 0)
		ctl_die(EXIT_INTERRUPTED, "grpc: the client connection is closing");
	ctl_run(c, &st.done);
	if (st.status != 0 || st.io_error || fsync(st.fd) != 0) {
		close(st.fd);
		unlink(part);
		if (st.io_error)
			ctl_die(EXIT_INTERRUPTED, "write %s: %s", part, strerror(errno));
		if (st.status == RPC_UNAVAILABLE && strncmp(st.message, "etcdserver", 10) != 0)
			ctl_die(EXIT_INTERRUPTED, "context deadline exceeded");
		ctl_die(EXIT_INTERRUPTED, "%s", st.message);
	}
	close(st.fd);
	if (rename(part, path) != 0)
		ctl_die(EXIT_INTERRUPTED, "could not rename %s to %s (%s)", part, path,
		        strerror(errno));
	printf("Snapshot saved at %s\n", path);
	return 0;
}

/* ---------------------------------------------------------- move-leader */

static int cmd_move_leader(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("move-leader command needs 1 argument");
	char *end;
	errno = 0;
	unsigned long long target = strtoull(argv[0], &end, 16);
	if (!*argv[0] || *end || errno)
		ctl_bad_args("strconv.ParseUint: parsing \"%s\": invalid syntax", argv[0]);
	const char *leader_ep = NULL;
	uint64_t leader_id = 0;
	for (size_t i = 0; i < ctl_g.n_endpoints && !leader_ep; i++) {
		Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
		char err[CTL_ERR_LEN];
		ProtobufCMessage *out;
		if (call_ep(ctl_g.endpoints[i], "/etcdserverpb.Maintenance/Status", &req.base,
		            &etcdserverpb__status_response__descriptor, &out, err) != 0)
			ctl_die(EXIT_ERROR, "%s", err);
		Etcdserverpb__StatusResponse *s = (Etcdserverpb__StatusResponse *)out;
		if (s->header && s->header->member_id == s->leader) {
			leader_ep = ctl_g.endpoints[i];
			leader_id = s->leader;
		}
	}
	if (!leader_ep) {
		fputs("Error: no leader endpoint given at [", stderr);
		for (size_t i = 0; i < ctl_g.n_endpoints; i++)
			fprintf(stderr, "%s%s", i ? " " : "", ctl_g.endpoints[i]);
		fputs("]\n", stderr);
		exit(EXIT_BAD_ARGS);
	}
	Etcdserverpb__MoveLeaderRequest req = ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
	req.targetid = target;
	char err[CTL_ERR_LEN];
	ProtobufCMessage *out;
	if (call_ep(leader_ep, "/etcdserverpb.Maintenance/MoveLeader", &req.base,
	            &etcdserverpb__move_leader_response__descriptor, &out, err) != 0)
		ctl_die(EXIT_ERROR, "%s", err);
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		printf("Leadership transferred from %" PRIx64 " to %llx\n", leader_id, target);
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(out);
		break;
	case OUT_JSON:
		json_line(out);
		break;
	default:
		ctl_unsupported_output();
	}
	return 0;
}

/* -------------------------------------------------------------- version */

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("cairnctl version: 3.4.0-cairn\nAPI version: 3.4\n");
	return 0;
}

const struct ctl_cmd ctl_cluster_cmds[] = {
    {"lease grant", cmd_lease_grant, "lease grant <ttl>", "Creates leases", NULL},
    {"lease revoke", cmd_lease_revoke, "lease revoke <leaseID>", "Revokes leases", NULL},
    {"lease timetolive", cmd_lease_timetolive, "lease timetolive <leaseID> [options]",
     "Get lease information", ttl_flags},
    {"lease list", cmd_lease_list, "lease list", "List all active leases", NULL},
    {"lease keep-alive", cmd_lease_keepalive, "lease keep-alive [options] <leaseID>",
     "Keeps leases alive (renew)", ka_flags},
    {"member add", cmd_member_add, "member add <memberName> [options]",
     "Adds a member into the cluster", member_add_flags},
    {"member remove", cmd_member_remove, "member remove <memberID>",
     "Removes a member from the cluster", NULL},
    {"member update", cmd_member_update, "member update <memberID> [options]",
     "Updates a member in the cluster", member_update_flags},
    {"member list", cmd_member_list, "member list", "Lists all members in the cluster", NULL},
    {"member promote", cmd_member_promote, "member promote <memberID>",
     "Promotes a non-voting member in the cluster", NULL},
    {"endpoint health", cmd_endpoint_health, "endpoint health",
     "Checks the healthiness of endpoints specified in `--endpoints` flag", ep_flags},
    {"endpoint status", cmd_endpoint_status, "endpoint status",
     "Prints out the status of endpoints specified in `--endpoints` flag", ep_flags},
    {"endpoint hashkv", cmd_endpoint_hashkv, "endpoint hashkv",
     "Prints the KV history hash for each endpoint in --endpoints", hashkv_flags},
    {"alarm list", cmd_alarm_list, "alarm list", "Lists all alarms", NULL},
    {"alarm disarm", cmd_alarm_disarm, "alarm disarm", "Disarms all alarms", NULL},
    {"defrag", cmd_defrag, "defrag",
     "Defragments the storage of the etcd members with given "
     "endpoints",
     defrag_flags},
    {"snapshot save", cmd_snapshot_save, "snapshot save <filename>",
     "Stores an etcd node backend snapshot to a given file", NULL},
    {"move-leader", cmd_move_leader, "move-leader <transferee-member-id>",
     "Transfers leadership to another etcd cluster member.", NULL},
    {"version", cmd_version, "version", "Prints the version of cairnctl", NULL},
};
const size_t ctl_n_cluster_cmds = sizeof(ctl_cluster_cmds) / sizeof(ctl_cluster_cmds[0]);
