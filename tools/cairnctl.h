/*
 * cairnctl.h — what the cairnctl command files share: global options, the
 * flag parser, the command table and etcdctl's output helpers.
 *
 * cairnctl mirrors etcdctl v3: same commands, flags, output formats
 * (simple, json, table, fields) and exit codes, so scripts written for
 * etcdctl run unchanged. Each command is a function taking its positional
 * arguments; flags are parsed into the command's static option variables
 * before it runs (a CLI runs one command per process).
 */
#ifndef CAIRN_TOOLS_CAIRNCTL_H
#define CAIRN_TOOLS_CAIRNCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/rpc.pb-c.h"
#include "tools/ctl_client.h"
#include "tools/ctl_json.h"

/* etcdctl's exit codes (ctlv3/command/error.go). */
enum {
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_BAD_CONNECTION = 2,
	EXIT_INVALID_INPUT = 3,
	EXIT_BAD_FEATURE = 4,
	EXIT_INTERRUPTED = 5,
	EXIT_IO = 6,
	EXIT_BAD_ARGS = 128,
};

enum ctl_output { OUT_SIMPLE, OUT_JSON, OUT_TABLE, OUT_FIELDS, OUT_PROTOBUF };

/* FLAG_SLICE: a comma-separated list in a const char *, appended to when
 * the flag is given again (pflag's StringSlice). */
enum ctl_flag_type { FLAG_BOOL, FLAG_STR, FLAG_SLICE, FLAG_INT, FLAG_DUR };

struct ctl_flag {
	const char *name;
	char shorthand; /* 0 = none */
	enum ctl_flag_type type;
	void *ptr; /* bool *, const char ** (STR, SLICE), int64_t *, uint64_t * (ms) */
	const char *def;
	const char *help;
};

struct ctl_cmd {
	const char *name; /* "get", "lease grant" */
	int (*run)(int argc, char **argv);
	const char *use;
	const char *help;
	const struct ctl_flag *flags; /* terminated by a zero entry; may be NULL */
};

struct ctl_globals {
	char **endpoints;
	size_t n_endpoints;
	uint64_t dial_timeout_ms;
	uint64_t command_timeout_ms;
	enum ctl_output out;
	bool hex;
	const char *cmd_name;
	int dash; /* positional arguments before "--" (-1: no "--") */
};

extern struct ctl_globals ctl_g;

/* Prints "Error: <msg>" to stderr and exits with `code` (etcdctl's
 * ExitWithError). */
_Noreturn void ctl_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The connection to the endpoints, failing over from the first (opened on
 * first use). */
struct ctl_conn *ctl_conn(void);
/* Unary call on ctl_conn(); exits with `exit_code` on error. */
ProtobufCMessage *ctl_must_call(const char *path, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *rd, int exit_code);
/* The endpoints of every member (--cluster) or the given ones. */
void ctl_endpoints(bool cluster, char ***eps, size_t *n);

/* ---- memory: freed at exit (see cairnctl.c), never free() these ---- */
void *ctl_alloc(size_t n); /* zeroed */
void *ctl_realloc(void *old, size_t n);
char *ctl_strdup(const char *s);
char *ctl_strndup(const char *s, size_t n);
/* For protobuf_c_message_unpack: the arena (nothing to free). */
ProtobufCAllocator *ctl_pb_allocator(void);

/* ---- parsing ---- */
int ctl_parse_duration_ms(const char *s, uint64_t *ms);
/* clientv3.GetPrefixRangeEnd; *out is malloc'd. */
void ctl_prefix_end(const uint8_t *key, size_t len, uint8_t **out, size_t *out_len);
/* --prefix / --from-key as clientv3 applies them (WithPrefix, WithFromKey):
 * an empty key means every key ("\0"); end may become a malloc'd buffer. */
void ctl_key_range(ProtobufCBinaryData *key, ProtobufCBinaryData *end, bool prefix, bool from_key);
/* etcdctl's argify: split a line into arguments honouring quotes. */
int ctl_argify(const char *line, char ***argv, int *argc);
/* Parses args against `flags` (plus the globals); positional arguments are
 * returned in *pos. Exits on a bad flag. */
void ctl_parse_flags(const struct ctl_flag *flags, int argc, char **argv, char ***pos, int *npos);
/* The same without exiting: -1 with pflag's message in err; the global
 * flags only if `globals`; *dash (if not NULL) is the number of positional
 * arguments before "--", -1 if there was none. */
int ctl_parse_flags_err(const struct ctl_flag *flags, bool globals, int argc, char **argv,
                        char ***pos, int *npos, int *dash, char *err, size_t errlen);

/* Builds a request op from a txn line's arguments ("put k v", "get k --prefix"). */
int ctl_parse_request_op(int argc, char **argv, Etcdserverpb__RequestOp *op);

/* ---- printing ---- */
void ctl_print_kv(const Mvccpb__KeyValue *kv, bool value_only);
void ctl_print_range(const Etcdserverpb__RangeResponse *r, bool value_only);
void ctl_print_put(const Etcdserverpb__PutResponse *r);
void ctl_print_del(const Etcdserverpb__DeleteRangeResponse *r);
void ctl_print_txn(const Etcdserverpb__TxnResponse *r);
/* -w protobuf: the response's wire bytes, as etcdctl's printPB. */
void ctl_print_pb(const ProtobufCMessage *m);
/* Go's "%v" of a time.Duration given in nanoseconds. */
void ctl_go_duration(uint64_t ns, char *buf, size_t len);
/* go-humanize Bytes(): "20 kB". */
void ctl_humanize_bytes(uint64_t n, char *buf, size_t len);
/* tablewriter as etcdctl configures it (headers centred, cells right). */
void ctl_print_table(const char *const *hdr, size_t ncols, char **cells, size_t nrows);
/* The same with rows `stride` cells apart (extra columns not printed). */
void ctl_print_table_stride(const char *const *hdr, size_t ncols, size_t stride, char **cells,
                            size_t nrows);
/* Go's %q of a byte string. */
void ctl_go_quote(FILE *f, const uint8_t *p, size_t len);
/* "fields" printer pieces. */
void ctl_fields_header(const Etcdserverpb__ResponseHeader *h);
/* JSON of v3 lease responses: the header's fields promoted into the object. */
void ctl_json_open_flat(const Etcdserverpb__ResponseHeader *h, bool *first);
/* A usage error: "Error: <msg>" and exit 128 (etcdctl's ExitBadArgs). */
_Noreturn void ctl_bad_args(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_unsupported_output(void);

/* ---- commands ---- */
extern const struct ctl_cmd ctl_kv_cmds[];
extern const size_t ctl_n_kv_cmds;
extern const struct ctl_cmd ctl_cluster_cmds[];
extern const size_t ctl_n_cluster_cmds;
extern const struct ctl_cmd ctl_check_cmds[];
extern const size_t ctl_n_check_cmds;
extern const struct ctl_cmd ctl_snapshot_cmds[];
extern const size_t ctl_n_snapshot_cmds;
extern const struct ctl_cmd ctl_inspect_cmds[];
extern const size_t ctl_n_inspect_cmds;

#endif
