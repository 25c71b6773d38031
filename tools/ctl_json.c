/*
 * ctl_json.c — Go encoding/json lookalike for protobuf-c messages; see
 * ctl_json.h for the rules it copies.
 */
#include "tools/ctl_json.h"

#include <string.h>

/* Fields of later etcd releases that etcdctl 3.4 has no Go field for. */
static const struct {
	const char *msg;
	const char *field;
} skipped[] = {
    {"etcdserverpb.HashKVResponse", "hash_revision"},
    {"etcdserverpb.StatusResponse", "storageVersion"},
    {"etcdserverpb.StatusResponse", "dbSizeQuota"},
    {"etcdserverpb.StatusResponse", "downgradeInfo"},
    {"etcdserverpb.SnapshotResponse", "version"},
};

/* Go names of the oneof interface fields (protobuf-c keeps no oneof name). */
static const struct {
	const char *msg;
	const char *name;
} oneofs[] = {
    {"etcdserverpb.ResponseOp", "Response"},
    {"etcdserverpb.RequestOp", "Request"},
    {"etcdserverpb.Compare", "TargetUnion"},
    {"etcdserverpb.WatchRequest", "RequestUnion"},
};

static bool is_skipped(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *fd)
{
	for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
		if (!strcmp(d->name, skipped[i].msg) && !strcmp(fd->name, skipped[i].field))
			return true;
	return false;
}

static const char *oneof_name(const ProtobufCMessageDescriptor *d)
{
	for (size_t i = 0; i < sizeof(oneofs) / sizeof(oneofs[0]); i++)
		if (!strcmp(d->name, oneofs[i].msg))
			return oneofs[i].name;
	return "Oneof";
}

void ctl_json_str(FILE *f, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned c = p[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc((int)c, f);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\r') {
			fputs("\\r", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
		} else if (c == 0xe2 && i + 2 < len && p[i + 1] == 0x80 &&
		           (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			fprintf(f, "\\u202%c", p[i + 2] == 0xa8 ? '8' : '9');
			i += 2;
		} else {
			fputc((int)c, f);
		}
	}
	fputc('"', f);
}

void ctl_json_b64(FILE *f, const uint8_t *p, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	fputc('"', f);
	size_t i = 0;
	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputc(tab[(v >> 6) & 63], f);
		fputc(tab[v & 63], f);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		fprintf(f, "%c%c==", tab[v >> 18], tab[(v >> 12) & 63]);
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fprintf(f, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63]);
	}
	fputc('"', f);
}

/* Go's CamelCase of a proto field name: response_put -> ResponsePut. */
static void go_camel(FILE *f, const char *name)
{
	bool up = true;
	fputc('"', f);
	for (const char *p = name; *p; p++) {
		if (*p == '_') {
			up = true;
			continue;
		}
		fputc(up && *p >= 'a' && *p <= 'z' ? *p - 32 : *p, f);
		up = false;
	}
	fputc('"', f);
}

static size_t elem_size(const ProtobufCFieldDescriptor *fd)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	}
	return 0;
}

/* True when the Go value would be left out by omitempty. */
static bool is_empty(const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)p;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)p;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(const void *const *)p == NULL;
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	}
	return true;
}

static void value(FILE *f, const ProtobufCFieldDescriptor *fd, const void *p)
{
	switch (fd->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		fprintf(f, "%d", *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(f, "%u", *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(f, "%lld", (long long)*(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		fprintf(f, "%g", (double)*(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		fprintf(f, "%g", *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)p;
		ctl_json_str(f, s ? s : "", s ? strlen(s) : 0);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		ctl_json_msg(f, *(const ProtobufCMessage *const *)p);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		ctl_json_b64(f, b->data, b->len);
		break;
	}
	}
}

void ctl_json_fields(FILE *f, const ProtobufCMessage *msg, bool *first)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		const void *p = base + fd->offset;
		if (is_skipped(d, fd))
			continue;
		if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)(base + fd->quantifier_offset);
			if (which != fd->id)
				continue;
			fprintf(f, "%s\"%s\":{", *first ? "" : ",", oneof_name(d));
			go_camel(f, fd->name);
			fputc(':', f);
			value(f, fd, p);
			fputc('}', f);
			*first = false;
			continue;
		}
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			if (n == 0)
				continue;
			const char *arr = *(const char *const *)p;
			fprintf(f, "%s\"%s\":[", *first ? "" : ",", fd->name);
			for (size_t j = 0; j < n; j++) {
				if (j)
					fputc(',', f);
				value(f, fd, arr + j * elem_size(fd));
			}
			fputc(']', f);
			*first = false;
			continue;
		}
		if (is_empty(fd, p))
			continue;
		fprintf(f, "%s\"%s\":", *first ? "" : ",", fd->name);
		value(f, fd, p);
		*first = false;
	}
}

void ctl_json_msg(FILE *f, const ProtobufCMessage *msg)
{
	if (!msg) {
		fputs("null", f);
		return;
	}
	bool first = true;
	fputc('{', f);
	ctl_json_fields(f, msg, &first);
	fputc('}', f);
}
