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

int ctl_conn_open(struct ctl_conn *c, const char *endpoint, uint64_t dial_timeout_ms,
                  uint64_t command_timeout_ms)
{
	char url[300];
	memset(c, 0, sizeof(*c));
	snprintf(c->endpoint, sizeof(c->endpoint), "%s", endpoint);
	if (strstr(endpoint, "://"))
		snprintf(url, sizeof(url), "%s", endpoint);
	else
		snprintf(url, sizeof(url), "http://%s", endpoint);
	c->dial_timeout_ms = dial_timeout_ms;
	c->command_timeout_ms = command_timeout_ms;
	if (uv_loop_init(&c->loop) != 0)
		return -1;
	if (rpc_client_new(&c->loop, url, NULL, &c->cli) != 0) {
		uv_loop_close(&c->loop);
		return -1;
	}
	return 0;
}

static void closed_cb(void *arg)
{
	*(bool *)arg = true;
}

void ctl_conn_close(struct ctl_conn *c)
{
	if (!c->cli)
		return;
	bool done = false;
	rpc_client_close(c->cli, closed_cb, &done);
	ctl_run(c, &done);
	c->cli = NULL;
	uv_run(&c->loop, UV_RUN_NOWAIT);
	uv_loop_close(&c->loop);
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

/* Was this UNAVAILABLE a failed connect (retry) rather than the server's? */
static bool connect_failed(const struct pending *p)
{
	return p->status == RPC_UNAVAILABLE && strncmp(p->message, "etcdserver: ", 12) != 0;
}

int ctl_call(struct ctl_conn *c, const char *path, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out, char *err)
{
	uint64_t start = ctl_now_ms();
	unsigned backoff_ms = 50; /* doubles up to 500: few "connect" log lines */
	*out = NULL;
	for (;;) {
		struct pending p = {0};
		if (rpc_client_call_msg(c->cli, path, req, c->command_timeout_ms, unary_cb, &p) !=
		    0) {
			snprintf(err, CTL_ERR_LEN, "grpc: the client connection is closing");
			return RPC_UNAVAILABLE;
		}
		ctl_run(c, &p.done);
		if (connect_failed(&p) && ctl_now_ms() - start < c->dial_timeout_ms) {
			free(p.message);
			free(p.resp);
			uv_sleep(backoff_ms);
			backoff_ms = backoff_ms * 2 > 500 ? 500 : backoff_ms * 2;
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
		} else if (connect_failed(&p)) {
			snprintf(err, CTL_ERR_LEN, "context deadline exceeded");
		} else {
			ctl_format_error(p.status, p.message, err);
		}
		free(p.message);
		free(p.resp);
		return rc;
	}
}
