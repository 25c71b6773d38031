/*
 * http1.h — the small HTTP/1.1 server side: parse one request head, format
 * one response. Enough for /health, /livez, /readyz, /version and /metrics
 * (GET/HEAD, Content-Length responses, keep-alive or close). Pure functions,
 * fuzzable; server.c does the I/O.
 */
#ifndef CAIRN_RPC_HTTP1_H
#define CAIRN_RPC_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/rpc.h"

#define HTTP1_MAX_HEAD 8192        /* request line + headers */
#define HTTP1_MAX_BODY (64 * 1024) /* a request body is read and ignored */

struct http1_request {
	bool get, head;  /* the method, when one of these */
	bool keep_alive; /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive */
	char path[1024];
};

/* Parses the request at buf. Returns the bytes it occupies (head and body)
 * when complete, 0 when more bytes are needed, CAIRN_EPROTO when malformed,
 * CAIRN_ETOOBIG when the head or body is over the limits above. */
int http1_parse(const char *buf, size_t len, struct http1_request *req);

/* Formats a response into a malloc'd buffer (*out, freed by the caller). */
int http1_format_response(const struct rpc_http_reply *reply, bool keep_alive, bool head_only,
                          uint8_t **out, size_t *outlen);

#endif
