/*
 * http1.c — parse an HTTP/1.1 request head, format a response (see http1.h).
 */
#include "rpc/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cairn_error.h"

static const char *find_crlfcrlf(const char *buf, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
		    buf[i + 3] == '\n')
			return buf + i;
	return NULL;
}

/* Case-insensitive: does the header line [p, end) have name `name`? Sets
 * *value to the trimmed value. */
static bool header_is(const char *p, const char *end, const char *name, const char **value,
                      size_t *vlen)
{
	size_t n = strlen(name);
	if ((size_t)(end - p) <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
		return false;
	const char *v = p + n + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	const char *e = end;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*value = v;
	*vlen = (size_t)(e - v);
	return true;
}

static bool has_token(const char *v, size_t vlen, const char *tok)
{
	size_t n = strlen(tok);
	for (size_t i = 0; i + n <= vlen; i++)
		if (strncasecmp(v + i, tok, n) == 0)
			return true;
	return false;
}

int http1_parse(const char *buf, size_t len, struct http1_request *req)
{
	memset(req, 0, sizeof(*req));
	size_t scan = len < HTTP1_MAX_HEAD ? len : HTTP1_MAX_HEAD;
	const char *hend = find_crlfcrlf(buf, scan);
	if (hend == NULL)
		return len >= HTTP1_MAX_HEAD ? CAIRN_ETOOBIG : 0;
	/* Request line: METHOD SP TARGET SP HTTP/1.x CRLF */
	const char *eol = memchr(buf, '\r', (size_t)(hend - buf) + 1);
	const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (sp1 == NULL)
		return CAIRN_EPROTO;
	const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (sp2 == NULL || eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return CAIRN_EPROTO;
	size_t mlen = (size_t)(sp1 - buf);
	req->get = mlen == 3 && memcmp(buf, "GET", 3) == 0;
	req->head = mlen == 4 && memcmp(buf, "HEAD", 4) == 0;
	size_t plen = (size_t)(sp2 - sp1 - 1);
	if (plen == 0 || plen >= sizeof(req->path) || sp1[1] != '/')
		return CAIRN_EPROTO;
	memcpy(req->path, sp1 + 1, plen);
	req->path[plen] = '\0';
	for (size_t i = 0; i < plen; i++)
		if ((unsigned char)req->path[i] <= ' ' || req->path[i] == 0x7f)
			return CAIRN_EPROTO;
	bool http11 = sp2[8] == '1';
	req->keep_alive = http11;
	size_t clen = 0;
	const char *p = eol + 2;
	while (p < hend + 2) {
		const char *e = memchr(p, '\r', (size_t)(hend + 2 - p));
		if (e == NULL || e[1] != '\n')
			return CAIRN_EPROTO;
		const char *v;
		size_t vlen;
		if (header_is(p, e, "connection", &v, &vlen)) {
			if (has_token(v, vlen, "close"))
				req->keep_alive = false;
			else if (has_token(v, vlen, "keep-alive"))
				req->keep_alive = true;
		} else if (header_is(p, e, "content-length", &v, &vlen)) {
			clen = 0;
			if (vlen == 0 || vlen > 9)
				return vlen > 9 ? CAIRN_ETOOBIG : CAIRN_EPROTO;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return CAIRN_EPROTO;
				clen = clen * 10 + (size_t)(v[i] - '0');
			}
		} else if (header_is(p, e, "transfer-encoding", &v, &vlen)) {
			return CAIRN_EPROTO; /* chunked request bodies: not for health checks */
		}
		p = e + 2;
	}
	if (clen > HTTP1_MAX_BODY)
		return CAIRN_ETOOBIG;
	size_t total = (size_t)(hend + 4 - buf) + clen;
	if (len < total)
		return 0;
	return (int)total;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

int http1_format_response(const struct rpc_http_reply *reply, bool keep_alive, bool head_only,
                          uint8_t **out, size_t *outlen)
{
	int status = reply->status > 0 ? reply->status : 200;
	const char *ct =
	    reply->content_type != NULL ? reply->content_type : "text/plain; charset=utf-8";
	char head[512];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: %s\r\n\r\n",
	                 status, reason(status), ct, reply->body_len,
	                 keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof(head))
		return CAIRN_EINVAL;
	size_t blen = head_only ? 0 : reply->body_len;
	uint8_t *buf = malloc((size_t)n + blen + 1);
	if (buf == NULL)
		return CAIRN_ENOMEM;
	memcpy(buf, head, (size_t)n);
	if (blen > 0)
		memcpy(buf + n, reply->body, blen);
	*out = buf;
	*outlen = (size_t)n + blen;
	return 0;
}
