/*
 * pbcheck.c — the walk of gogo/protobuf's generated Unmarshal over a
 * protobuf-c descriptor (see pbcheck.h for why).
 *
 * HOW IT WORKS
 *
 * check_msg() is one generated Unmarshal method: read a tag (a varint), fail
 * on wire type 4 and on a field number <= 0, then either decode the known
 * field, whose wire type must be the one its type has (a repeated scalar also
 * takes 2, packed), or hand the unknown field, tag included, to skip() — the
 * generated skipRpc — and check that what it skipped ends inside the message.
 * An embedded message is the same walk over its bytes, errors passed up
 * unchanged, as the generated code passes them. Every varint is read by the
 * same loop as the generated one: "proto: integer overflow" when ten bytes
 * all carry the continuation bit, "unexpected EOF" when the message ends
 * first; lengths are Go ints (a varint read as int64: negative means
 * "proto: negative length found during unmarshaling", and so does an end
 * offset that wraps around), and only then is the end checked against the
 * message ("unexpected EOF").
 */
#include "server/pbcheck.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/cairn_error.h"

#define E_EOF      "unexpected EOF"
#define E_OVERFLOW "proto: integer overflow"
#define E_LENGTH   "proto: negative length found during unmarshaling"
#define E_ENDGROUP "proto: unexpected end of group"

struct walk {
	char *why;
	size_t cap;
};

static int fail(struct walk *w, const char *fmt, ...)
{
	if (w->cap > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->why, w->cap, fmt, ap);
		va_end(ap);
	}
	return CAIRN_EPROTO;
}

/* Go's int addition: wraps instead of overflowing. */
static int64_t go_add(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int varint(struct walk *w, const uint8_t *d, int64_t l, int64_t *i, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0;; shift += 7) {
		if (shift >= 64)
			return fail(w, E_OVERFLOW);
		if (*i >= l)
			return fail(w, E_EOF);
		uint8_t b = d[(*i)++];
		x |= (uint64_t)(b & 0x7f) << shift;
		if (b < 0x80)
			break;
	}
	*v = x;
	return 0;
}

/* A length prefix and the end offset it gives: E_LENGTH when either is
 * negative (a wrapped sum). Whether the end lies inside the message is the
 * caller's check, as skipRpc leaves it to its own caller. */
static int length(struct walk *w, const uint8_t *d, int64_t l, int64_t *i, int64_t *end)
{
	uint64_t v;
	int rc = varint(w, d, l, i, &v);
	if (rc)
		return rc;
	int64_t n = (int64_t)v;
	if (n < 0)
		return fail(w, E_LENGTH);
	*end = go_add(*i, n);
	if (*end < 0)
		return fail(w, E_LENGTH);
	return 0;
}

/* skipRpc: the size of the unknown field at d (its tag included). */
static int skip(struct walk *w, const uint8_t *d, int64_t l, int64_t *size)
{
	int64_t i = 0, depth = 0;
	while (i < l) {
		uint64_t tag, v;
		int64_t end;
		int rc = varint(w, d, l, &i, &tag);
		if (rc)
			return rc;
		switch (tag & 7) {
		case 0:
			if ((rc = varint(w, d, l, &i, &v)))
				return rc;
			break;
		case 1:
			i = go_add(i, 8);
			break;
		case 2:
			if ((rc = length(w, d, l, &i, &end)))
				return rc;
			i = end;
			break;
		case 3:
			depth++;
			break;
		case 4:
			if (depth == 0)
				return fail(w, E_ENDGROUP);
			depth--;
			break;
		case 5:
			i = go_add(i, 4);
			break;
		default:
			return fail(w, "proto: illegal wireType %d", (int)(tag & 7));
		}
		if (i < 0)
			return fail(w, E_LENGTH);
		if (depth == 0) {
			*size = i;
			return 0;
		}
	}
	return fail(w, E_EOF);
}

/* protoc-gen-gogo's CamelCase: "range_end" -> "RangeEnd", "peerURLs" ->
 * "PeerURLs", "remaining_TTL" -> "Remaining_TTL", "_x" -> "XX". */
static size_t go_camel(const char *s, size_t n, char *out, size_t cap, size_t o)
{
#define PUT(c)                                                                                     \
	do {                                                                                       \
		if (o + 1 < cap)                                                                   \
			out[o++] = (c);                                                            \
	} while (0)
#define LOWER(c) ((c) >= 'a' && (c) <= 'z')
	size_t i = 0;
	if (n > 0 && s[0] == '_') {
		PUT('X');
		i++;
	}
	for (; i < n; i++) {
		char c = s[i];
		if (c == '_' && i + 1 < n && LOWER(s[i + 1]))
			continue;
		if (c >= '0' && c <= '9') {
			PUT(c);
			continue;
		}
		if (LOWER(c))
			c = (char)(c ^ ' ');
		PUT(c);
		while (i + 1 < n && LOWER(s[i + 1]))
			PUT(s[++i]);
	}
	if (cap > 0)
		out[o < cap ? o : cap - 1] = '\0';
	return o;
#undef PUT
#undef LOWER
}

/* The Go type name: "etcdserverpb.RangeRequest" -> "RangeRequest", a nested
 * "pkg.Parent.Child" -> "Parent_Child". */
static void go_type_name(const ProtobufCMessageDescriptor *desc, char *out, size_t cap)
{
	const char *s = desc->name;
	size_t plen = desc->package_name != NULL ? strlen(desc->package_name) : 0;
	if (plen > 0 && strncmp(s, desc->package_name, plen) == 0 && s[plen] == '.')
		s += plen + 1;
	size_t o = 0;
	out[0] = '\0';
	while (*s != '\0') {
		const char *dot = strchr(s, '.');
		size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);
		if (o > 0 && o + 1 < cap)
			out[o++] = '_';
		o = go_camel(s, n, out, cap, o);
		s += n + (dot != NULL);
	}
}

static int wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 1;
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return 5;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return 2;
	default:
		return 0;
	}
}

/* One scalar of wire type 0, 1 or 5; fixed sizes are checked against the
 * message's end. */
static int scalar(struct walk *w, int wt, const uint8_t *d, int64_t l, int64_t *i)
{
	uint64_t v;
	if (wt == 0)
		return varint(w, d, l, i, &v);
	int64_t size = wt == 1 ? 8 : 4;
	if (go_add(*i, size) > l)
		return fail(w, E_EOF);
	*i += size;
	return 0;
}

static int check_msg(struct walk *w, const ProtobufCMessageDescriptor *desc, const uint8_t *d,
                     int64_t l, int depth)
{
	int64_t i = 0;
	while (i < l) {
		int64_t pre = i, end;
		uint64_t tag;
		int rc = varint(w, d, l, &i, &tag);
		if (rc)
			return rc;
		int32_t num = (int32_t)(uint32_t)(tag >> 3);
		int wt = (int)(tag & 7);
		if (wt == 4 || num <= 0) {
			char type[128];
			go_type_name(desc, type, sizeof(type));
			if (wt == 4)
				return fail(w, "proto: %s: wiretype end group for non-group", type);
			return fail(w, "proto: %s: illegal tag %" PRId32 " (wire type %" PRIu64 ")",
			            type, num, tag);
		}
		const ProtobufCFieldDescriptor *f =
		    protobuf_c_message_descriptor_get_field(desc, (unsigned)num);
		if (f == NULL) {
			int64_t size = 0;
			if ((rc = skip(w, d + pre, l - pre, &size)))
				return rc;
			if (size < 0 || go_add(pre, size) < 0)
				return fail(w, E_LENGTH);
			if (go_add(pre, size) > l)
				return fail(w, E_EOF);
			i = pre + size;
			continue;
		}
		int want = wire_type_of(f->type);
		if (f->label == PROTOBUF_C_LABEL_REPEATED && want != 2 && wt == 2) {
			/* Packed: each element is read up to the message's end, not
			 * the field's, and the walk goes on from where the last one
			 * stopped. */
			if ((rc = length(w, d, l, &i, &end)))
				return rc;
			if (end > l)
				return fail(w, E_EOF);
			while (i < end)
				if ((rc = scalar(w, want, d, l, &i)))
					return rc;
			continue;
		}
		if (wt != want) {
			char field[128];
			go_camel(f->name, strlen(f->name), field, sizeof(field), 0);
			return fail(w, "proto: wrong wireType = %d for field %s", wt, field);
		}
		if (want != 2) {
			if ((rc = scalar(w, want, d, l, &i)))
				return rc;
			continue;
		}
		if ((rc = length(w, d, l, &i, &end)))
			return rc;
		if (end > l)
			return fail(w, E_EOF);
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < SRV_PB_MAX_DEPTH &&
		    (rc = check_msg(w, f->descriptor, d + i, end - i, depth + 1)))
			return rc;
		i = end;
	}
	return 0;
}

int srv_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len, char *why,
                 size_t cap)
{
	struct walk w = {why, cap};
	if (cap > 0)
		why[0] = '\0';
	return check_msg(&w, desc, buf, (int64_t)len, 0);
}
