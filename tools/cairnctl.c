/*
 * cairnctl.c — the CLI's entry point: global flags and environment, the
 * flag parser (pflag's rules: --name=value, --name value, -w value, bool
 * flags bare or =true/false, "--" ends flags, flags anywhere), command
 * dispatch, help, and the output helpers shared by every command (etcdctl's
 * simple, json, table and fields printers).
 */
#include "tools/cairnctl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct ctl_globals ctl_g;

static const char *g_endpoints = "127.0.0.1:2379";
static const char *g_write_out = "simple";
static uint64_t g_dial_ms = 2000;
static uint64_t g_cmd_ms = 5000;
static bool g_hex;
static bool g_debug;
static bool g_insecure = true;
static const char *g_user = "";
static const char *g_password = "";
static uint64_t g_keepalive_ms;
static uint64_t g_keepalive_timeout_ms;

static const struct ctl_flag global_flags[] = {
    {"endpoints", 0, FLAG_SLICE, &g_endpoints, "[127.0.0.1:2379]", "gRPC endpoints"},
    {"write-out", 'w', FLAG_STR, &g_write_out, "simple",
     "set the output format (fields, json, protobuf, simple, table)"},
    {"hex", 0, FLAG_BOOL, &g_hex, "false", "print byte strings as hex encoded strings"},
    {"dial-timeout", 0, FLAG_DUR, &g_dial_ms, "2s", "dial timeout for client connections"},
    {"command-timeout", 0, FLAG_DUR, &g_cmd_ms, "5s",
     "timeout for short running command (excluding dial timeout)"},
    {"keepalive-time", 0, FLAG_DUR, &g_keepalive_ms, "2s", "keepalive time for client connections"},
    {"keepalive-timeout", 0, FLAG_DUR, &g_keepalive_timeout_ms, "6s",
     "keepalive timeout for client connections"},
    {"debug", 0, FLAG_BOOL, &g_debug, "false", "enable client-side debug logging"},
    {"insecure-transport", 0, FLAG_BOOL, &g_insecure, "true",
     "disable transport security for client connections"},
    {"user", 0, FLAG_STR, &g_user, "", "username[:password] for authentication (not supported)"},
    {"password", 0, FLAG_STR, &g_password, "", "password for authentication (not supported)"},
    {0},
};

/* ------------------------------------------------------------------ memory */

/* A CLI runs one command and exits: everything it allocates lives until
 * then. The blocks are chained from a global and freed at exit, so nothing
 * needs a matching free and LeakSanitizer sees no leak on any exit path. */
struct arena_blk {
	struct arena_blk *next;
	size_t size;
	max_align_t data[];
};
static struct arena_blk *arena;

static void arena_free(void)
{
	while (arena) {
		struct arena_blk *b = arena;
		arena = b->next;
		free(b);
	}
}

void *ctl_alloc(size_t n)
{
	struct arena_blk *b = calloc(1, sizeof(*b) + (n ? n : 1));
	if (!b) {
		fputs("Error: out of memory\n", stderr);
		exit(EXIT_ERROR);
	}
	b->size = n;
	b->next = arena;
	arena = b;
	return b->data;
}

void *ctl_realloc(void *old, size_t n)
{
	void *p = ctl_alloc(n);
	if (old) {
		const struct arena_blk *b =
		    (const struct arena_blk *)((char *)old - offsetof(struct arena_blk, data));
		memcpy(p, old, b->size < n ? b->size : n);
	}
	return p;
}

static void *pb_alloc(void *data, size_t size)
{
	(void)data;
	return ctl_alloc(size);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

/* protobuf-c unpacks the responses into the arena too. */
static ProtobufCAllocator arena_pb = {.alloc = pb_alloc, .free = pb_free};

ProtobufCAllocator *ctl_pb_allocator(void)
{
	return &arena_pb;
}

char *ctl_strndup(const char *s, size_t n)
{
	size_t l = strnlen(s, n);
	char *p = ctl_alloc(l + 1);
	memcpy(p, s, l);
	return p;
}

char *ctl_strdup(const char *s)
{
	return ctl_strndup(s, strlen(s));
}

/* ------------------------------------------------------------------ errors */

static _Noreturn void vdie(int code, const char *fmt, va_list ap)
{
	fflush(stdout);
	fputs("Error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	exit(code);
}

void ctl_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(code, fmt, ap);
}

void ctl_bad_args(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(EXIT_BAD_ARGS, fmt, ap);
}

void ctl_unsupported_output(void)
{
	static const char *const names[] = {"simple", "json", "table", "fields", "protobuf"};
	ctl_die(EXIT_BAD_FEATURE, "%s not supported as output format", names[ctl_g.out]);
}

/* -------------------------------------------------------------- connection */

static struct ctl_conn g_conn;
static bool g_conn_open;

struct ctl_conn *ctl_conn(void)
{
	if (!g_conn_open) {
		if (ctl_conn_open_list(&g_conn, ctl_g.endpoints, ctl_g.n_endpoints,
		                       ctl_g.dial_timeout_ms, ctl_g.command_timeout_ms) != 0)
			ctl_die(EXIT_BAD_CONNECTION, "bad endpoint %s", ctl_g.endpoints[0]);
		g_conn.alloc = &arena_pb;
		g_conn_open = true;
	}
	return &g_conn;
}

static void close_conn(void)
{
	if (g_conn_open)
		ctl_conn_close(&g_conn);
	g_conn_open = false;
}

ProtobufCMessage *ctl_must_call(const char *path, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *rd, int exit_code)
{
	char err[CTL_ERR_LEN];
	ProtobufCMessage *out;
	if (ctl_call(ctl_conn(), path, req, rd, &out, err) != 0)
		ctl_die(exit_code, "%s", err);
	return out;
}

/* ----------------------------------------------------------------- parsing */

int ctl_parse_duration_ms(const char *s, uint64_t *ms)
{
	/* Go's time.ParseDuration, enough of it: [0-9.]+(ns|us|µs|ms|s|m|h) ... */
	double total = 0;
	const char *p = s;
	if (!strcmp(s, "0")) {
		*ms = 0;
		return 0;
	}
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		if (end == p)
			return -1;
		p = end;
		double mul;
		if (!strncmp(p, "ns", 2)) {
			mul = 1e-6;
			p += 2;
		} else if (!strncmp(p, "us", 2)) {
			mul = 1e-3;
			p += 2;
		} else if (!strncmp(p, "\xc2\xb5s", 3)) {
			mul = 1e-3;
			p += 3;
		} else if (!strncmp(p, "ms", 2)) {
			mul = 1;
			p += 2;
		} else if (*p == 's') {
			mul = 1000;
			p++;
		} else if (*p == 'm') {
			mul = 60000;
			p++;
		} else if (*p == 'h') {
			mul = 3600000;
			p++;
		} else {
			return -1;
		}
		total += v * mul;
	}
	*ms = (uint64_t)(total + 0.5);
	return 0;
}

void ctl_prefix_end(const uint8_t *key, size_t len, uint8_t **out, size_t *out_len)
{
	uint8_t *end = ctl_alloc(len ? len : 1);
	if (!end)
		abort();
	memcpy(end, key, len);
	for (size_t i = len; i-- > 0;) {
		if (end[i] < 0xff) {
			end[i]++;
			*out = end;
			*out_len = i + 1;
			return;
		}
	}
	/* All 0xff (or empty): every key from `key` on. */
	end[0] = 0;
	*out = end;
	*out_len = 1;
}

void ctl_key_range(ProtobufCBinaryData *key, ProtobufCBinaryData *end, bool prefix, bool from_key)
{
	static uint8_t zero[1];
	if (prefix) {
		if (key->len == 0) {
			*key = (ProtobufCBinaryData){1, zero};
			*end = (ProtobufCBinaryData){1, zero};
		} else {
			ctl_prefix_end(key->data, key->len, &end->data, &end->len);
		}
	}
	if (from_key) {
		if (key->len == 0)
			*key = (ProtobufCBinaryData){1, zero};
		*end = (ProtobufCBinaryData){1, zero};
	}
}

/* Unquotes a Go %q string literal (the subset fmt.Sscanf accepts). */
static char *go_unquote(const char *s, size_t len)
{
	char *out = ctl_alloc(len + 1);
	size_t o = 0;
	if (!out)
		abort();
	for (size_t i = 1; i + 1 < len; i++) {
		if (s[i] != '\\') {
			out[o++] = s[i];
			continue;
		}
		i++;
		switch (s[i]) {
		case 'n':
			out[o++] = '\n';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case '0':
			out[o++] = '\0';
			break;
		case 'x':
			if (i + 2 < len) {
				char hx[3] = {s[i + 1], s[i + 2], 0};
				out[o++] = (char)strtol(hx, NULL, 16);
				i += 2;
			}
			break;
		default:
			out[o++] = s[i];
		}
	}
	out[o] = 0;
	return out;
}

int ctl_argify(const char *line, char ***argv, int *argc)
{
	/* etcdctl's regexp: "(?:[^"\\]|\\.)*" | '[^']*' | [^'"\s]\S*[^'"\s]? */
	size_t cap = 8;
	char **v = ctl_alloc(cap * sizeof(*v));
	int n = 0;
	const char *p = line;
	while (*p) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		const char *start = p;
		char *arg;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p != '"')
				return -1;
			p++;
			arg = go_unquote(start, (size_t)(p - start));
		} else if (*p == '\'') {
			p++;
			while (*p && *p != '\'')
				p++;
			if (*p != '\'')
				return -1;
			p++;
			arg = ctl_strndup(start + 1, (size_t)(p - start - 2));
		} else {
			while (*p && !isspace((unsigned char)*p))
				p++;
			arg = ctl_strndup(start, (size_t)(p - start));
		}
		if ((size_t)n + 1 >= cap)
			v = ctl_realloc(v, (cap *= 2) * sizeof(*v));
		v[n++] = arg;
	}
	v[n] = NULL;
	*argv = v;
	*argc = n;
	return 0;
}

static const struct ctl_flag *find_flag(const struct ctl_flag *flags, bool globals,
                                        const char *name, size_t len, char shorthand)
{
	const struct ctl_flag *sets[2] = {flags, globals ? global_flags : NULL};
	for (int s = 0; s < 2; s++) {
		for (const struct ctl_flag *f = sets[s]; f && f->name; f++) {
			if (shorthand ? f->shorthand == shorthand
			              : strlen(f->name) == len && !strncmp(f->name, name, len))
				return f;
		}
	}
	return NULL;
}

/* Sets the flag from its text; on a bad value, pflag's message in err. */
static int set_flag(const struct ctl_flag *f, const char *val, const char *shown, char *err,
                    size_t errlen)
{
	switch (f->type) {
	case FLAG_BOOL:
		if (!val || !strcmp(val, "true") || !strcmp(val, "1"))
			*(bool *)f->ptr = true;
		else if (!strcmp(val, "false") || !strcmp(val, "0"))
			*(bool *)f->ptr = false;
		else
			goto bad;
		return 0;
	case FLAG_STR:
		*(const char **)f->ptr = val;
		return 0;
	case FLAG_SLICE: {
		/* pflag's StringSlice: the first use replaces the default (or
		 * the environment's value), each later one appends */
		static const void *seen[4];
		size_t i = 0;
		while (i < sizeof(seen) / sizeof(seen[0]) && seen[i] && seen[i] != f->ptr)
			i++;
		if (i < sizeof(seen) / sizeof(seen[0]) && seen[i] == f->ptr) {
			const char *old = *(const char **)f->ptr;
			char *both = ctl_alloc(strlen(old) + strlen(val) + 2);
			sprintf(both, "%s,%s", old, val);
			*(const char **)f->ptr = both;
		} else {
			if (i < sizeof(seen) / sizeof(seen[0]))
				seen[i] = f->ptr;
			*(const char **)f->ptr = val;
		}
		return 0;
	}
	case FLAG_INT: {
		char *end;
		errno = 0;
		long long v = strtoll(val, &end, 0);
		if (*val == 0 || *end || errno)
			goto bad;
		*(int64_t *)f->ptr = v;
		return 0;
	}
	case FLAG_DUR:
		if (ctl_parse_duration_ms(val, f->ptr) != 0)
			goto bad;
		return 0;
	}
bad:
	if (f->type == FLAG_DUR)
		snprintf(err, errlen,
		         "invalid argument \"%s\" for \"%s\" flag: time: invalid duration %s", val,
		         shown, val);
	else
		snprintf(err, errlen,
		         "invalid argument \"%s\" for \"%s\" flag: strconv.%s: parsing \"%s\": "
		         "invalid syntax",
		         val, shown, f->type == FLAG_BOOL ? "ParseBool" : "ParseInt", val);
	return -1;
}

int ctl_parse_flags_err(const struct ctl_flag *flags, bool globals, int argc, char **argv,
                        char ***pos, int *npos, int *dash, char *err, size_t errlen)
{
	char **out = ctl_alloc(((size_t)argc + 1) * sizeof(*out));
	int n = 0;
	bool only_pos = false;
	if (dash)
		*dash = -1;
	for (int i = 0; i < argc; i++) {
		char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == 0) {
			out[n++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = true;
			if (dash)
				*dash = n;
			continue;
		}
		const struct ctl_flag *f;
		const char *val = NULL;
		char shown[80];
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			f = find_flag(flags, globals, name, len, 0);
			if (!f) {
				snprintf(err, errlen, "unknown flag: --%.*s", (int)len, name);
				return -1;
			}
			if (eq)
				val = eq + 1;
			snprintf(shown, sizeof(shown), "--%s", f->name);
		} else {
			f = find_flag(flags, globals, NULL, 0, a[1]);
			if (!f) {
				snprintf(err, errlen, "unknown shorthand flag: '%c' in %s", a[1],
				         a);
				return -1;
			}
			if (a[2])
				val = a[2] == '=' ? a + 3 : a + 2;
			snprintf(shown, sizeof(shown), "-%c, --%s", f->shorthand, f->name);
		}
		if (!val && f->type != FLAG_BOOL) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "flag needs an argument: %s", a);
				return -1;
			}
			val = argv[++i];
		}
		if (set_flag(f, val, shown, err, errlen) != 0)
			return -1;
	}
	out[n] = NULL;
	*pos = out;
	*npos = n;
	return 0;
}

void ctl_parse_flags(const struct ctl_flag *flags, int argc, char **argv, char ***pos, int *npos)
{
	char err[256];
	if (ctl_parse_flags_err(flags, true, argc, argv, pos, npos, NULL, err, sizeof(err)) != 0)
		ctl_die(EXIT_ERROR, "%s", err);
}

/* --------------------------------------------------------------- printing */

static void print_bytes_line(const uint8_t *p, size_t len)
{
	if (ctl_g.hex) {
		for (size_t i = 0; i < len; i++)
			printf("\\x%02x", p[i]);
	} else if (len) {
		fwrite(p, 1, len, stdout);
	}
	putchar('\n');
}

void ctl_print_kv(const Mvccpb__KeyValue *kv, bool value_only)
{
	if (!value_only)
		print_bytes_line(kv->key.data, kv->key.len);
	print_bytes_line(kv->value.data, kv->value.len);
}

void ctl_fields_header(const Etcdserverpb__ResponseHeader *h)
{
	printf("\"ClusterID\" : %llu\n", (unsigned long long)(h ? h->cluster_id : 0));
	printf("\"MemberID\" : %llu\n", (unsigned long long)(h ? h->member_id : 0));
	printf("\"Revision\" : %lld\n", (long long)(h ? h->revision : 0));
	printf("\"RaftTerm\" : %llu\n", (unsigned long long)(h ? h->raft_term : 0));
}

/* Length of the valid, printable (>= U+00A0) UTF-8 sequence at p, else 1. */
static size_t utf8_len(const uint8_t *p, size_t len)
{
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	if (p[0] >= 0xf5 || n > len)
		return 1;
	uint32_t cp = p[0] & (0xffu >> (n + 1));
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 1;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000) || cp < 0xa0)
		return 1;
	return n;
}

void ctl_go_quote(FILE *f, const uint8_t *p, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned c = p[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c >= 0xc2 && utf8_len(p + i, len - i) > 1) {
			size_t l = utf8_len(p + i, len - i);
			fwrite(p + i, 1, l, f);
			i += l - 1;
		} else if (c < 0x20 || c == 0x7f || c >= 0x80)
			fprintf(f, "\\x%02x", c);
		else
			fputc((int)c, f);
	}
	fputc('"', f);
}

static void fields_bytes(const char *name, const ProtobufCBinaryData *b)
{
	printf("\"%s\" : ", name);
	ctl_go_quote(stdout, b->data, b->len);
	putchar('\n');
}

static void fields_kv(const char *pfx, const Mvccpb__KeyValue *kv)
{
	char name[64];
	snprintf(name, sizeof(name), "%sKey", pfx);
	fields_bytes(name, &kv->key);
	printf("\"%sCreateRevision\" : %lld\n", pfx, (long long)kv->create_revision);
	printf("\"%sModRevision\" : %lld\n", pfx, (long long)kv->mod_revision);
	printf("\"%sVersion\" : %lld\n", pfx, (long long)kv->version);
	snprintf(name, sizeof(name), "%sValue", pfx);
	fields_bytes(name, &kv->value);
	printf("\"%sLease\" : %lld\n", pfx, (long long)kv->lease);
}

static void fields_range(const void *p)
{
	const Etcdserverpb__RangeResponse *r = p;
	ctl_fields_header(r->header);
	for (size_t i = 0; i < r->n_kvs; i++)
		fields_kv("", r->kvs[i]);
	printf("\"More\" : %s\n", r->more ? "true" : "false");
	printf("\"Count\" : %lld\n", (long long)r->count);
}

static void fields_put(const void *p)
{
	const Etcdserverpb__PutResponse *r = p;
	ctl_fields_header(r->header);
	if (r->prev_kv)
		fields_kv("PrevKV.", r->prev_kv);
}

static void fields_del(const void *p)
{
	const Etcdserverpb__DeleteRangeResponse *r = p;
	ctl_fields_header(r->header);
	printf("\"Deleted\" : %lld\n", (long long)r->deleted);
	for (size_t i = 0; i < r->n_prev_kvs; i++)
		fields_kv("PrevKV.", r->prev_kvs[i]);
}

/* The json and unsupported cases every KV printer shares; simple and
 * fields are given as callbacks. */
static void print_kv_resp(const ProtobufCMessage *m, void (*simple)(const void *, bool),
                          bool value_only, void (*fields)(const void *))
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		simple(m, value_only);
		break;
	case OUT_JSON:
		ctl_json_msg(stdout, m);
		putchar('\n');
		break;
	case OUT_FIELDS:
		fields(m);
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(m);
		break;
	default:
		ctl_unsupported_output();
	}
}

void ctl_print_pb(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = ctl_alloc(n);
	protobuf_c_message_pack(m, buf);
	fwrite(buf, 1, n, stdout);
}

static void simple_range(const void *p, bool value_only)
{
	const Etcdserverpb__RangeResponse *r = p;
	for (size_t i = 0; i < r->n_kvs; i++)
		ctl_print_kv(r->kvs[i], value_only);
}

static void simple_put(const void *p, bool value_only)
{
	const Etcdserverpb__PutResponse *r = p;
	(void)value_only;
	puts("OK");
	if (r->prev_kv)
		ctl_print_kv(r->prev_kv, false);
}

static void simple_del(const void *p, bool value_only)
{
	const Etcdserverpb__DeleteRangeResponse *r = p;
	(void)value_only;
	printf("%lld\n", (long long)r->deleted);
	for (size_t i = 0; i < r->n_prev_kvs; i++)
		ctl_print_kv(r->prev_kvs[i], false);
}

void ctl_print_range(const Etcdserverpb__RangeResponse *r, bool value_only)
{
	print_kv_resp(&r->base, simple_range, value_only, fields_range);
}

void ctl_print_put(const Etcdserverpb__PutResponse *r)
{
	print_kv_resp(&r->base, simple_put, false, fields_put);
}

void ctl_print_del(const Etcdserverpb__DeleteRangeResponse *r)
{
	print_kv_resp(&r->base, simple_del, false, fields_del);
}

void ctl_print_txn(const Etcdserverpb__TxnResponse *r)
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		puts(r->succeeded ? "SUCCESS" : "FAILURE");
		for (size_t i = 0; i < r->n_responses; i++) {
			const Etcdserverpb__ResponseOp *op = r->responses[i];
			putchar('\n');
			switch (op->response_case) {
			case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
				ctl_print_range(op->response_range, false);
				break;
			case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
				ctl_print_put(op->response_put);
				break;
			case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
				ctl_print_del(op->response_delete_range);
				break;
			default:
				printf("unexpected response %d\n", (int)op->response_case);
			}
		}
		break;
	case OUT_PROTOBUF:
		ctl_print_pb(&r->base);
		break;
	case OUT_JSON:
		ctl_json_msg(stdout, &r->base);
		putchar('\n');
		break;
	case OUT_FIELDS:
		ctl_fields_header(r->header);
		printf("\"Succeeded\" : %s\n", r->succeeded ? "true" : "false");
		for (size_t i = 0; i < r->n_responses; i++) {
			const Etcdserverpb__ResponseOp *op = r->responses[i];
			if (op->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE)
				fields_range(op->response_range);
			else if (op->response_case ==
			         ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT)
				fields_put(op->response_put);
			else if (op->response_case ==
			         ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE)
				fields_del(op->response_delete_range);
		}
		break;
	default:
		ctl_unsupported_output();
	}
}

void ctl_json_open_flat(const Etcdserverpb__ResponseHeader *h, bool *first)
{
	putchar('{');
	*first = true;
	if (h)
		ctl_json_fields(stdout, &h->base, first);
}

void ctl_go_duration(uint64_t ns, char *buf, size_t len)
{
	/* time.Duration.String(): "0s", "950ns", "1.5µs", "2.123456ms", "1.5s". */
	const char *unit;
	uint64_t div;
	if (ns == 0) {
		snprintf(buf, len, "0s");
		return;
	}
	if (ns < 1000) {
		snprintf(buf, len, "%lluns", (unsigned long long)ns);
		return;
	}
	if (ns < 1000000) {
		unit = "\xc2\xb5s";
		div = 1000;
	} else if (ns < 1000000000ull) {
		unit = "ms";
		div = 1000000;
	} else {
		unit = "s";
		div = 1000000000ull;
	}
	if (div == 1000000000ull && ns >= 60000000000ull) {
		uint64_t s = ns / 1000000000ull;
		snprintf(buf, len, "%llum%llus", (unsigned long long)(s / 60),
		         (unsigned long long)(s % 60));
		return;
	}
	char frac[16];
	int digits = div == 1000 ? 3 : div == 1000000 ? 6 : 9;
	snprintf(frac, sizeof(frac), "%0*llu", digits, (unsigned long long)(ns % div));
	for (int i = digits - 1; i >= 0 && frac[i] == '0'; i--)
		frac[i] = 0;
	if (frac[0])
		snprintf(buf, len, "%llu.%s%s", (unsigned long long)(ns / div), frac, unit);
	else
		snprintf(buf, len, "%llu%s", (unsigned long long)(ns / div), unit);
}

void ctl_humanize_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const sizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
	if (n < 10) {
		snprintf(buf, len, "%llu B", (unsigned long long)n);
		return;
	}
	double e = floor(log((double)n) / log(1000.0));
	double val = floor((double)n / pow(1000.0, e) * 10 + 0.5) / 10;
	snprintf(buf, len, val < 10 ? "%.1f %s" : "%.0f %s", val, sizes[(int)e]);
}

static void table_rule(const size_t *w, size_t ncols)
{
	putchar('+');
	for (size_t c = 0; c < ncols; c++) {
		for (size_t i = 0; i < w[c] + 2; i++)
			putchar('-');
		putchar('+');
	}
	putchar('\n');
}

void ctl_print_table(const char *const *hdr, size_t ncols, char **cells, size_t nrows)
{
	ctl_print_table_stride(hdr, ncols, ncols, cells, nrows);
}

void ctl_print_table_stride(const char *const *hdr, size_t ncols, size_t stride, char **cells,
                            size_t nrows)
{
	size_t w[32] = {0};
	for (size_t c = 0; c < ncols; c++) {
		w[c] = strlen(hdr[c]);
		for (size_t r = 0; r < nrows; r++)
			if (strlen(cells[r * stride + c]) > w[c])
				w[c] = strlen(cells[r * stride + c]);
	}
	table_rule(w, ncols);
	putchar('|');
	for (size_t c = 0; c < ncols; c++) {
		size_t l = strlen(hdr[c]), gap = w[c] - l, left = gap / 2;
		printf(" %*s", (int)left, "");
		for (size_t i = 0; i < l; i++)
			putchar(toupper((unsigned char)hdr[c][i]));
		printf("%*s |", (int)(gap - left), "");
	}
	putchar('\n');
	table_rule(w, ncols);
	for (size_t r = 0; r < nrows; r++) {
		putchar('|');
		for (size_t c = 0; c < ncols; c++)
			printf(" %*s |", (int)w[c], cells[r * stride + c]);
		putchar('\n');
	}
	if (nrows)
		table_rule(w, ncols);
}

/* ------------------------------------------------------------- endpoints */

void ctl_endpoints(bool cluster, char ***eps, size_t *n)
{
	if (!cluster) {
		*eps = ctl_g.endpoints;
		*n = ctl_g.n_endpoints;
		return;
	}
	Etcdserverpb__MemberListRequest req = ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
	Etcdserverpb__MemberListResponse *r = (Etcdserverpb__MemberListResponse *)ctl_must_call(
	    "/etcdserverpb.Cluster/MemberList", &req.base,
	    &etcdserverpb__member_list_response__descriptor, EXIT_ERROR);
	size_t cap = 4, k = 0;
	char **out = ctl_alloc(cap * sizeof(*out));
	for (size_t i = 0; i < r->n_members; i++) {
		for (size_t j = 0; j < r->members[i]->n_clienturls; j++) {
			if (k == cap)
				out = ctl_realloc(out, (cap *= 2) * sizeof(*out));
			out[k++] = ctl_strdup(r->members[i]->clienturls[j]);
		}
	}
	*eps = out;
	*n = k;
}

/* ---------------------------------------------------------------- dispatch */

static const struct {
	const struct ctl_cmd *cmds;
	const size_t *n;
} tables[] = {
    {ctl_kv_cmds, &ctl_n_kv_cmds},
    {ctl_cluster_cmds, &ctl_n_cluster_cmds},
    {ctl_snapshot_cmds, &ctl_n_snapshot_cmds},
    {ctl_check_cmds, &ctl_n_check_cmds},
    {ctl_inspect_cmds, &ctl_n_inspect_cmds},
};

static const struct ctl_cmd *lookup(const char *name)
{
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (size_t i = 0; i < *tables[t].n; i++)
			if (!strcmp(tables[t].cmds[i].name, name))
				return &tables[t].cmds[i];
	return NULL;
}

/* True if some command's name starts with "word " (a command group). */
static bool is_group(const char *word)
{
	size_t l = strlen(word);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (size_t i = 0; i < *tables[t].n; i++)
			if (!strncmp(tables[t].cmds[i].name, word, l) &&
			    tables[t].cmds[i].name[l] == ' ')
				return true;
	return false;
}

static void print_flags(const struct ctl_flag *flags)
{
	for (const struct ctl_flag *f = flags; f && f->name; f++) {
		char left[64];
		if (f->shorthand)
			snprintf(left, sizeof(left), "-%c, --%s", f->shorthand, f->name);
		else
			snprintf(left, sizeof(left), "    --%s", f->name);
		const char *ty = f->type == FLAG_STR     ? " string"
		                 : f->type == FLAG_SLICE ? " strings"
		                 : f->type == FLAG_INT   ? " int"
		                 : f->type == FLAG_DUR   ? " duration"
		                                         : "";
		char l2[96];
		snprintf(l2, sizeof(l2), "%s%s", left, ty);
		printf("      %-38s %s", l2, f->help);
		if (f->def && *f->def && strcmp(f->def, "false") != 0 && strcmp(f->def, "0") != 0)
			printf(" (default %s)", f->def);
		putchar('\n');
	}
}

static void usage_root(void)
{
	printf("NAME:\n\tcairnctl - A simple command line client for cairn (etcd v3 API).\n\n"
	       "USAGE:\n\tcairnctl [flags] <command> [args]\n\n"
	       "ENVIRONMENT:\n\tEvery global flag may be set as CAIRNCTL_<FLAG> (e.g. "
	       "CAIRNCTL_ENDPOINTS);\n\tETCDCTL_<FLAG> is understood too.\n\nCOMMANDS:\n");
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (size_t i = 0; i < *tables[t].n; i++)
			printf("\t%-24s %s\n", tables[t].cmds[i].name, tables[t].cmds[i].help);
	printf("\nOPTIONS:\n");
	print_flags(global_flags);
}

static void usage_cmd(const struct ctl_cmd *c)
{
	printf("NAME:\n\t%s - %s\n\nUSAGE:\n\tcairnctl %s\n", c->name, c->help, c->use);
	if (c->flags && c->flags->name) {
		printf("\nOPTIONS:\n");
		print_flags(c->flags);
	}
	printf("\nGLOBAL OPTIONS:\n");
	print_flags(global_flags);
}

static void usage_group(const char *word)
{
	printf("NAME:\n\t%s - command group\n\nCOMMANDS:\n", word);
	size_t l = strlen(word);
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (size_t i = 0; i < *tables[t].n; i++)
			if (!strncmp(tables[t].cmds[i].name, word, l) &&
			    tables[t].cmds[i].name[l] == ' ')
				printf("\t%-24s %s\n", tables[t].cmds[i].name + l + 1,
				       tables[t].cmds[i].help);
}

/* Global flags from CAIRNCTL_* (first) or ETCDCTL_* variables. */
static void env_flags(void)
{
	for (const struct ctl_flag *f = global_flags; f->name; f++) {
		char name[64];
		const char *prefixes[] = {"CAIRNCTL_", "ETCDCTL_"};
		for (int p = 0; p < 2; p++) {
			size_t o = (size_t)snprintf(name, sizeof(name), "%s", prefixes[p]);
			for (const char *s = f->name; *s && o + 1 < sizeof(name); s++)
				name[o++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
			name[o] = 0;
			const char *v = getenv(name);
			if (v && f->type == FLAG_SLICE) {
				/* a default: the command line's flag replaces it */
				*(const char **)f->ptr = v;
				break;
			}
			if (v) {
				char shown[80], err[256];
				snprintf(shown, sizeof(shown), "--%s", f->name);
				if (set_flag(f, v, shown, err, sizeof(err)) != 0)
					ctl_die(EXIT_ERROR, "%s", err);
				break;
			}
		}
	}
}

static void split_endpoints(void)
{
	char *s = ctl_strdup(g_endpoints);
	size_t cap = 4;
	ctl_g.endpoints = ctl_alloc(cap * sizeof(char *));
	ctl_g.n_endpoints = 0;
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		if (ctl_g.n_endpoints == cap)
			ctl_g.endpoints = ctl_realloc(ctl_g.endpoints, (cap *= 2) * sizeof(char *));
		ctl_g.endpoints[ctl_g.n_endpoints++] = tok;
	}
	if (ctl_g.n_endpoints == 0)
		ctl_die(EXIT_ERROR, "no endpoints given");
}

/* Skips global flags (and their values) to find the first word. */
static int next_word(int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || !a[1])
			return i;
		if (!strcmp(a, "--"))
			return -1;
		const struct ctl_flag *f = NULL;
		if (a[1] == '-' && !strchr(a, '='))
			f = find_flag(NULL, true, a + 2, strlen(a + 2), 0);
		else if (a[1] != '-' && !a[2])
			f = find_flag(NULL, true, NULL, 0, a[1]);
		if (f && f->type != FLAG_BOOL)
			i++;
	}
	return -1;
}

/* cairnctl reports a failed call (connect failures included) through the
 * command's own error, as etcdctl does: rpc's diagnostic lines would only
 * repeat it on stderr. */
static void drop_rpc_line(void *ud, const char *line)
{
	(void)ud;
	(void)line;
}

int main(int argc, char **argv)
{
	atexit(arena_free);
	rpc_set_log_sink(drop_rpc_line, NULL);
	env_flags();
	bool help = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			help = true;
	}
	int w = next_word(argc, argv, 1);
	if (w < 0) {
		usage_root();
		return help ? 0 : EXIT_BAD_ARGS;
	}
	char name[128];
	int w2 = -1;
	snprintf(name, sizeof(name), "%s", argv[w]);
	if (!strcmp(name, "help")) {
		usage_root();
		return 0;
	}
	if (is_group(name)) {
		w2 = next_word(argc, argv, w + 1);
		if (w2 >= 0)
			snprintf(name, sizeof(name), "%s %s", argv[w], argv[w2]);
		if (w2 >= 0 && (lookup(name) || strcmp(argv[w], "inspect") != 0)) {
			/* a subcommand (or an unknown one, reported below) */
		} else if (!strcmp(argv[w], "inspect")) {
			w2 = -1;
			/* `cairnctl inspect --data-dir DIR` is the summary */
			snprintf(name, sizeof(name), "inspect summary");
		} else {
			usage_group(name);
			return help ? 0 : EXIT_BAD_ARGS;
		}
	}
	const struct ctl_cmd *c = lookup(name);
	if (!c) {
		fprintf(stderr, "Error: unknown command \"%s\" for \"cairnctl\"\n", name);
		return EXIT_ERROR;
	}
	if (help) {
		usage_cmd(c);
		return 0;
	}
	/* Everything but the command words goes to the flag parser. */
	char **rest = ctl_alloc((size_t)argc * sizeof(*rest));
	int nrest = 0;
	for (int i = 1; i < argc; i++)
		if (i != w && i != w2)
			rest[nrest++] = argv[i];
	char **pos;
	int npos;
	char err[256];
	if (ctl_parse_flags_err(c->flags, true, nrest, rest, &pos, &npos, &ctl_g.dash, err,
	                        sizeof(err)) != 0)
		ctl_die(EXIT_ERROR, "%s", err);
	ctl_g.cmd_name = c->name;
	ctl_g.hex = g_hex;
	ctl_g.dial_timeout_ms = g_dial_ms;
	ctl_g.command_timeout_ms = g_cmd_ms;
	if (!strcmp(g_write_out, "simple"))
		ctl_g.out = OUT_SIMPLE;
	else if (!strcmp(g_write_out, "json"))
		ctl_g.out = OUT_JSON;
	else if (!strcmp(g_write_out, "table"))
		ctl_g.out = OUT_TABLE;
	else if (!strcmp(g_write_out, "fields"))
		ctl_g.out = OUT_FIELDS;
	else if (!strcmp(g_write_out, "protobuf"))
		ctl_g.out = OUT_PROTOBUF;
	else
		ctl_die(EXIT_BAD_FEATURE, "unsupported output format");
	split_endpoints();
	int rc = c->run(npos, pos);
	fflush(stdout);
	close_conn();
	return rc;
}
