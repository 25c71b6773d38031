/*
 * ctl_client.c — blocking unary calls for cairnctl; see ctl_client.h.
 */
#include "tools/ctl_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t ctl_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A client for endpoints[cur], trying the next ones if its URL is bad. */
static int make_client(struct ctl_conn *c)
{
	for (size_t tries = 0; tries < c->n_endpoints; tries++) {
		const char *ep = c->endpoints[c->cur];
		char url[300];
		snprintf(c->endpoint, sizeof(c->endpoint), "%s", ep);
		if (strstr(ep, "://"))
			snprintf(url, sizeof(url), "%s", ep);
		else
			snprintf(url, sizeof(url), "http://%s", ep);
		if (rpc_client_new(&c->loop, url, NULL, &c->cli) == 0)
			return 0;
		c->cli = NULL;
		c->cur = (c->cur + 1) % c->n_endpoints;
	}
	return -1;
}

int ctl_conn_open_list(struct ctl_conn *c, char *const *endpoints, size_t n,
                       uint64_t dial_timeout_ms, uint64_t command_timeout_ms)
{
	if (endpoints != c->self)
		memset(c, 0, sizeof(*c));
	c->endpoints = endpoints;
	c->n_endpoints = n;
	c->dial_timeout_ms = dial_timeout_ms;
	c->command_timeout_ms = command_timeout_ms;
	if (n == 0 || uv_loop_init(&c->loop) != 0)
		return -1;
	if (make_client(c) != 0) {
		uv_loop_close(&c->loop);
		return -1;
	}
	return 0;
}

int ctl_conn_open(struct ctl_conn *c, const char *endpoint, uint64_t dial_timeout_ms,
                  uint64_t command_timeout_ms)
{
	/* A list of one, kept in c->one: the struct is not moved while open. */
	char ep[sizeof(c->one)];
	snprintf(ep, sizeof(ep), "%s", endpoint);
	memset(c, 0, sizeof(*c));
	memcpy(c->one, ep, sizeof(ep));
	c->self[0] = c->one;
	return ctl_conn_open_list(c, c->self, 1, dial_timeout_ms, command_timeout_ms);
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

static void close_client(struct ctl_conn *c)
{
	if (!c->cli)
		return;
	bool done = false;
	rpc_client_close(c->cli, closed_cb, &done);
	ctl_run(c, &done);
	c->cli = NULL;
}

void ctl_conn_close(struct ctl_conn *c)
{
	if (!c->endpoints)
		return;
	close_client(c);
	uv_run(&c->loop, UV_RUN_NOWAIT);
	uv_loop_close(&c->loop);
	c->endpoints = NULL;
}

int ctl_conn_next(struct ctl_conn *c)
{
	if (c->n_endpoints == 1 && c->cli)
		return 0; /* the client reconnects by itself */
	close_client(c);
	c->cur = (c->cur + 1) % c->n_endpoints;
	return make_client(c);
}

bool ctl_not_sent(int grpc_status, const char *message)
{
	return grpc_status == RPC_UNAVAILABLE && message &&
	       !strncmp(message, RPC_CONNECT_FAILED, strlen(RPC_CONNECT_FAILED));
}

bool ctl_retry(struct ctl_conn *c, uint64_t start, struct ctl_retry *r, bool not_sent)
{
	uint64_t spent = ctl_now_ms() - start;
	if (spent >= c->dial_timeout_ms)
		return false;
	if (not_sent && ++r->failed < c->n_endpoints)
		return ctl_conn_next(c) == 0;
	/* Every endpoint failed in this round, or the one in use lost a call:
	 * wait (50 ms, doubling up to 500: few attempts while a member starts),
	 * then a new round from the next endpoint. */
	r->failed = 0;
	r->backoff_ms = r->backoff_ms ? (r->backoff_ms * 2 > 500 ? 500 : r->backoff_ms * 2) : 50;
	uv_sleep(r->backoff_ms < c->dial_timeout_ms - spent
	             ? r->backoff_ms
	             : (unsigned)(c->dial_timeout_ms - spent));
	return !not_sent || ctl_conn_next(c) == 0;
}

void ctl_run(struct ctl_conn *c, const bool *done)
{
	while (!*done)
		if (uv_run(&c->loop, UV_RUN_ONCE) == 0 && !*done)
			break;
}

/* Go's codes.Code String(). */
static const char *go_code(int st)
{
	static const char *const names[] = {
	    "OK",
	    "Canceled",
	    "Unknown",
	    "InvalidArgument",
	    "DeadlineExceeded",
	    "NotFound",
	    "AlreadyExists",
	    "PermissionDenied",
	    "ResourceExhausted",
	    "FailedPrecondition",
	    "Aborted",
	    "OutOfRange",
	    "Unimplemented",
	    "Internal",
	    "Unavailable",
	    "DataLoss",
	    "Unauthenticated",
	};
	return st >= 0 && st < (int)(sizeof(names) / sizeof(names[0])) ? names[st] : "Unknown";
}

void ctl_format_error(int grpc_status, const char *message, char *err)
{
	if (grpc_status == RPC_DEADLINE_EXCEEDED)
		snprintf(err, CTL_ERR_LEN, "context deadline exceeded");
	else if (grpc_status == RPC_CANCELLED)
		snprintf(err, CTL_ERR_LEN, "context canceled");
	else if (!strncmp(message, "etcdserver: ", 12) || !strncmp(message, "mvcc: ", 6))
		snprintf(err, CTL_ERR_LEN, "%s", message);
	else
		snprintf(err, CTL_ERR_LEN, "rpc error: code = %s desc = %s", go_code(grpc_status),
		         message);
}

struct pending {
	bool done;
	int status;
	char *message;
	uint8_t *resp;
	size_t len;
};

static void unary_cb(int grpc_status, const char *message, const uint8_t *resp, size_t len,
                     void *arg)
{
	struct pending *p = arg;
	p->done = true;
	p->status = grpc_status;
	p->message = strdup(message ? message : "");
	if (len) {
		p->resp = malloc(len);
		if (p->resp)
			memcpy(p->resp, resp, len);
	}
	p->len = len;
}

/* Lost on the way (the connection broke after the request was sent), not
 * answered by the server. */
static bool lost(const struct pending *p)
{
	return p->status == RPC_UNAVAILABLE && strncmp(p->message, "etcdserver: ", 12) != 0;
}

/* The calls that only read, which clientv3 retries after a transport error
 * (its "repeatable" ones); a write that may have been applied is not. */
static bool read_only(const char *path)
{
	static const char *const paths[] = {
	    "/etcdserverpb.KV/Range",           "/etcdserverpb.Maintenance/Status",
	    "/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/Hash",
	    "/etcdserverpb.Cluster/MemberList", "/etcdserverpb.Lease/LeaseTimeToLive",
	    "/etcdserverpb.Lease/LeaseLeases",
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (!strcmp(path, paths[i]))
			return true;
	return false;
}

int ctl_call(struct ctl_conn *c, const char *path, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out, char *err)
{
	uint64_t start = ctl_now_ms();
	struct ctl_retry retry = {0};
	*out = NULL;
	for (;;) {
		struct pending p = {0};
		if (!c->cli || rpc_client_call_msg(c->cli, path, req, c->command_timeout_ms,
		                                   unary_cb, &p) != 0) {
			snprintf(err, CTL_ERR_LEN, "grpc: the client connection is closing");
			return RPC_UNAVAILABLE;
		}
		ctl_run(c, &p.done);
		bool not_sent = ctl_not_sent(p.status, p.message);
		bool again = not_sent || (lost(&p) && read_only(path));
		if (again && ctl_retry(c, start, &retry, not_sent)) {
			free(p.message);
			free(p.resp);
			continue;
		}
		int rc = p.status;
		if (rc == RPC_OK) {
			*out = protobuf_c_message_unpack(rd, c->alloc, p.len, p.resp);
			if (!*out) {
				snprintf(
				    err, CTL_ERR_LEN,
				    "rpc error: code = Internal desc = grpc: failed to unmarshal "
				    "the received message");
				rc = RPC_INTERNAL;
			}
		} else if (again) {
			snprintf(err, CTL_ERR_LEN, "context deadline exceeded");
		} else {
			ctl_format_error(p.status, p.message, err);
		}
		free(p.message);
		free(p.resp);
		return rc;
	}
}
