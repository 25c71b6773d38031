/*
 * cairnctl_kv.c — key-value commands: get, put, del, txn, compaction,
 * watch. Flags and argument checks follow etcdctl's get_command.go,
 * put_command.go, del_command.go, txn_command.go, watch_command.go.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/cairnctl.h"

#define BIN(s, l) ((ProtobufCBinaryData){.len = (l), .data = (uint8_t *)(s)})

/* ------------------------------------------------------------------ get */

static struct {
	const char *consistency, *order, *sort_by;
	int64_t limit, rev;
	bool prefix, from_key, keys_only, count_only, value_only;
} get_o;

static const struct ctl_flag get_flags[] = {
    {"consistency", 0, FLAG_STR, &get_o.consistency, "l", "Linearizable(l) or Serializable(s)"},
    {"order", 0, FLAG_STR, &get_o.order, "",
     "Order of results; ASCEND or DESCEND (ASCEND by default)"},
    {"sort-by", 0, FLAG_STR, &get_o.sort_by, "",
     "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"},
    {"limit", 0, FLAG_INT, &get_o.limit, "0", "Maximum number of results"},
    {"prefix", 0, FLAG_BOOL, &get_o.prefix, "false", "Get keys with matching prefix"},
    {"from-key", 0, FLAG_BOOL, &get_o.from_key, "false",
     "Get keys that are greater than or equal to the given key using byte compare"},
    {"rev", 0, FLAG_INT, &get_o.rev, "0", "Specify the kv revision"},
    {"keys-only", 0, FLAG_BOOL, &get_o.keys_only, "false", "Get only the keys"},
    {"count-only", 0, FLAG_BOOL, &get_o.count_only, "false", "Get only the count"},
    {"print-value-only", 0, FLAG_BOOL, &get_o.value_only, "false",
     "Only write values when using the \"simple\" output format"},
    {0},
};

static void reset_get(void)
{
	memset(&get_o, 0, sizeof(get_o));
	get_o.consistency = "l";
	get_o.order = "";
	get_o.sort_by = "";
}

/* Fills a RangeRequest from get's arguments (getGetOp). Exits on bad args.
 * Allocations (range end) are left to the process. */
static void get_op(int argc, char **argv, Etcdserverpb__RangeRequest *r)
{
	if (argc == 0)
		ctl_bad_args("get command needs one argument as key and an optional argument as "
		             "range_end");
	if (get_o.prefix && get_o.from_key)
		ctl_bad_args(
		    "`--prefix` and `--from-key` cannot be set at the same time, choose one");
	if (!strcmp(get_o.consistency, "s"))
		r->serializable = true;
	else if (strcmp(get_o.consistency, "l") != 0)
		ctl_die(EXIT_BAD_FEATURE, "unknown consistency flag \"%s\"", get_o.consistency);
	r->key = BIN(argv[0], strlen(argv[0]));
	if (argc > 1) {
		if (get_o.prefix || get_o.from_key)
			ctl_bad_args(
			    "too many arguments, only accept one argument when `--prefix` or "
			    "`--from-key` is set");
		r->range_end = BIN(argv[1], strlen(argv[1]));
	}
	r->limit = get_o.limit;
	if (get_o.rev > 0)
		r->revision = get_o.rev;
	if (!strcasecmp(get_o.order, "ASCEND"))
		r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	else if (!strcasecmp(get_o.order, "DESCEND"))
		r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	else if (*get_o.order)
		ctl_die(EXIT_BAD_FEATURE, "bad sort order %s", get_o.order);
	if (!strcasecmp(get_o.sort_by, "CREATE"))
		r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
	else if (!strcasecmp(get_o.sort_by, "KEY") || !*get_o.sort_by)
		r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
	else if (!strcasecmp(get_o.sort_by, "MODIFY"))
		r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
	else if (!strcasecmp(get_o.sort_by, "VALUE"))
		r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
	else if (!strcasecmp(get_o.sort_by, "VERSION"))
		r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
	else
		ctl_die(EXIT_BAD_FEATURE, "bad sort target %s", get_o.sort_by);
	/* clientv3.WithSort: sorting by key ascending is the default order;
	 * any other target with no order given sorts ascending. */
	if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
	    r->sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
		r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	ctl_key_range(&r->key, &r->range_end, get_o.prefix, get_o.from_key);
	r->keys_only = get_o.keys_only;
	r->count_only = get_o.count_only;
}

static int cmd_get(int argc, char **argv)
{
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get_op(argc, argv, &req);
	Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)ctl_must_call(
	    "/etcdserverpb.KV/Range", &req.base, &etcdserverpb__range_response__descriptor,
	    EXIT_ERROR);
	if (get_o.value_only && ctl_g.out != OUT_SIMPLE)
		ctl_bad_args("print-value-only is only for `--write-out=simple`");
	ctl_print_range(r, get_o.value_only);
	return 0;
}

/* ------------------------------------------------------------------ put */

static struct {
	const char *lease;
	bool prev_kv, ignore_value, ignore_lease;
} put_o;

static const struct ctl_flag put_flags[] = {
    {"lease", 0, FLAG_STR, &put_o.lease, "0", "lease ID (in hexadecimal) to attach to the key"},
    {"prev-kv", 0, FLAG_BOOL, &put_o.prev_kv, "false",
     "return the previous key-value pair before modification"},
    {"ignore-value", 0, FLAG_BOOL, &put_o.ignore_value, "false",
     "updates the key using its current value"},
    {"ignore-lease", 0, FLAG_BOOL, &put_o.ignore_lease, "false",
     "updates the key using its current lease"},
    {0},
};

static void reset_put(void)
{
	memset(&put_o, 0, sizeof(put_o));
	put_o.lease = "0";
}

static char *read_stdin(size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = ctl_alloc(cap);
	ssize_t k;
	while ((k = read(0, buf + n, cap - n)) > 0) {
		n += (size_t)k;
		if (n == cap)
			buf = ctl_realloc(buf, cap *= 2);
	}
	*len = n;
	return buf;
}

static void put_op(int argc, char **argv, Etcdserverpb__PutRequest *r, bool from_stdin_ok)
{
	if (argc == 0)
		ctl_bad_args("put command needs 1 argument and input from stdin or 2 arguments");
	r->key = BIN(argv[0], strlen(argv[0]));
	if (put_o.ignore_value && argc > 1)
		ctl_bad_args("put command needs only 1 argument when 'ignore-value' is set");
	if (argc > 1) {
		r->value = BIN(argv[1], strlen(argv[1]));
	} else if (!put_o.ignore_value) {
		if (!from_stdin_ok)
			ctl_bad_args("put command needs 1 argument and input from stdin or 2 "
			             "arguments");
		size_t len;
		char *v = read_stdin(&len);
		r->value = BIN(v, len);
	}
	char *end;
	unsigned long long id = strtoull(put_o.lease, &end, 16);
	if (*end)
		ctl_bad_args(
		    "bad lease ID (strconv.ParseInt: parsing \"%s\": invalid syntax), expecting "
		    "ID in Hex",
		    put_o.lease);
	r->lease = (int64_t)id;
	r->prev_kv = put_o.prev_kv;
	r->ignore_value = put_o.ignore_value;
	r->ignore_lease = put_o.ignore_lease;
}

static int cmd_put(int argc, char **argv)
{
	Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
	put_op(argc, argv, &req, true);
	Etcdserverpb__PutResponse *r = (Etcdserverpb__PutResponse *)ctl_must_call(
	    "/etcdserverpb.KV/Put", &req.base, &etcdserverpb__put_response__descriptor, EXIT_ERROR);
	ctl_print_put(r);
	return 0;
}

/* ------------------------------------------------------------------ del */

static struct {
	bool prefix, prev_kv, from_key;
} del_o;

static const struct ctl_flag del_flags[] = {
    {"prefix", 0, FLAG_BOOL, &del_o.prefix, "false", "delete keys with matching prefix"},
    {"prev-kv", 0, FLAG_BOOL, &del_o.prev_kv, "false", "return deleted key-value pairs"},
    {"from-key", 0, FLAG_BOOL, &del_o.from_key, "false",
     "delete keys that are greater than or equal to the given key using byte compare"},
    {0},
};

static void del_op(int argc, char **argv, Etcdserverpb__DeleteRangeRequest *r)
{
	if (argc == 0 || argc > 2)
		ctl_bad_args("del command needs one argument as key and an optional argument as "
		             "range_end");
	if (del_o.prefix && del_o.from_key)
		ctl_bad_args(
		    "`--prefix` and `--from-key` cannot be set at the same time, choose one");
	r->key = BIN(argv[0], strlen(argv[0]));
	if (argc > 1) {
		if (del_o.prefix || del_o.from_key)
			ctl_bad_args(
			    "too many arguments, only accept one argument when `--prefix` or "
			    "`--from-key` is set");
		r->range_end = BIN(argv[1], strlen(argv[1]));
	}
	ctl_key_range(&r->key, &r->range_end, del_o.prefix, del_o.from_key);
	r->prev_kv = del_o.prev_kv;
}

static int cmd_del(int argc, char **argv)
{
	Etcdserverpb__DeleteRangeRequest req = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	del_op(argc, argv, &req);
	Etcdserverpb__DeleteRangeResponse *r = (Etcdserverpb__DeleteRangeResponse *)ctl_must_call(
	    "/etcdserverpb.KV/DeleteRange", &req.base,
	    &etcdserverpb__delete_range_response__descriptor, EXIT_ERROR);
	ctl_print_del(r);
	return 0;
}

/* ------------------------------------------------------------------ txn */

static bool txn_interactive;

static const struct ctl_flag txn_flags[] = {
    {"interactive", 'i', FLAG_BOOL, &txn_interactive, "false",
     "Input transaction in interactive mode"},
    {0},
};

int ctl_parse_request_op(int argc, char **argv, Etcdserverpb__RequestOp *op)
{
	char **pos;
	int npos;
	if (argc < 2)
		return -1;
	if (!strcmp(argv[0], "get")) {
		reset_get();
		ctl_parse_flags(get_flags, argc - 1, argv + 1, &pos, &npos);
		Etcdserverpb__RangeRequest *r = ctl_alloc(sizeof(*r));
		etcdserverpb__range_request__init(r);
		get_op(npos, pos, r);
		op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
		op->request_range = r;
	} else if (!strcmp(argv[0], "put")) {
		reset_put();
		ctl_parse_flags(put_flags, argc - 1, argv + 1, &pos, &npos);
		Etcdserverpb__PutRequest *r = ctl_alloc(sizeof(*r));
		etcdserverpb__put_request__init(r);
		put_op(npos, pos, r, false);
		op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		op->request_put = r;
	} else if (!strcmp(argv[0], "del")) {
		memset(&del_o, 0, sizeof(del_o));
		ctl_parse_flags(del_flags, argc - 1, argv + 1, &pos, &npos);
		Etcdserverpb__DeleteRangeRequest *r = ctl_alloc(sizeof(*r));
		etcdserverpb__delete_range_request__init(r);
		del_op(npos, pos, r);
		op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
		op->request_delete_range = r;
	} else {
		return -1;
	}
	return 0;
}

/* Reads one line (without the newline, trimmed); exits on EOF as etcdctl
 * (bufio ReadString error "EOF"). */
static char *read_line(FILE *in)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, in);
	if (n < 0)
		ctl_die(EXIT_INVALID_INPUT, "EOF");
	char *s = line;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = 0;
	char *out = ctl_strdup(s);
	free(line);
	return out;
}

static int parse_compare(const char *line, Etcdserverpb__Compare *c)
{
	const char *lp = strchr(line, '(');
	if (!lp)
		return -1;
	size_t tlen = (size_t)(lp - line);
	char target[16];
	if (tlen >= sizeof(target))
		return -1;
	memcpy(target, line, tlen);
	target[tlen] = 0;
	/* %q) %s %q */
	const char *p = lp + 1;
	if (*p != '"')
		return -1;
	const char *q = p + 1;
	while (*q && *q != '"') {
		if (*q == '\\' && q[1])
			q++;
		q++;
	}
	if (*q != '"' || q[1] != ')')
		return -1;
	char *qline = ctl_strndup(p, (size_t)(q - p + 1));
	char **kv;
	int nkv;
	if (ctl_argify(qline, &kv, &nkv) != 0 || nkv != 1)
		return -1;
	char **rest;
	int nrest;
	if (ctl_argify(q + 2, &rest, &nrest) != 0 || nrest != 2)
		return -1;
	const char *op = rest[0], *val = rest[1];
	c->key = BIN(kv[0], strlen(kv[0]));
	if (!strcmp(op, "="))
		c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	else if (!strcmp(op, "!="))
		c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
	else if (!strcmp(op, ">"))
		c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
	else if (!strcmp(op, "<"))
		c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
	else
		return -2;
	char *end;
	long long num = strtoll(val, &end, 10);
	bool numeric = *val && !*end;
	if (!strcmp(target, "ver") || !strcmp(target, "version")) {
		c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c->version = num;
	} else if (!strcmp(target, "c") || !strcmp(target, "create")) {
		c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c->create_revision = num;
	} else if (!strcmp(target, "m") || !strcmp(target, "mod")) {
		c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c->mod_revision = num;
	} else if (!strcmp(target, "val") || !strcmp(target, "value")) {
		c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
		c->value = BIN(val, strlen(val));
		numeric = true;
	} else if (!strcmp(target, "lease")) {
		c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE;
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		c->lease = (int64_t)strtoll(val, &end, 16);
		numeric = *val && !*end;
	} else {
		return -3;
	}
	return numeric ? 0 : -4;
}

static Etcdserverpb__RequestOp **read_ops(FILE *in, size_t *n)
{
	Etcdserverpb__RequestOp **ops = NULL;
	*n = 0;
	for (;;) {
		char *line = read_line(in);
		if (!*line)
			break;
		char **av;
		int ac;
		if (ctl_argify(line, &av, &ac) != 0)
			ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
		Etcdserverpb__RequestOp *op = ctl_alloc(sizeof(*op));
		etcdserverpb__request_op__init(op);
		if (ctl_parse_request_op(ac, av, op) != 0) {
			if (ac < 2)
				ctl_die(EXIT_INVALID_INPUT, "invalid txn compare request: %s",
				        line);
			ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
		}
		ops = ctl_realloc(ops, (*n + 1) * sizeof(*ops));
		ops[(*n)++] = op;
	}
	return ops;
}

static int cmd_txn(int argc, char **argv)
{
	(void)argv;
	if (argc != 0)
		ctl_bad_args("txn command does not accept argument");
	Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
	FILE *in = stdin;
	if (txn_interactive)
		puts("compares:");
	for (;;) {
		char *line = read_line(in);
		if (!*line)
			break;
		Etcdserverpb__Compare *c = ctl_alloc(sizeof(*c));
		etcdserverpb__compare__init(c);
		int rc = parse_compare(line, c);
		if (rc == -1)
			ctl_die(EXIT_INVALID_INPUT, "malformed comparison: %s", line);
		if (rc != 0)
			ctl_die(EXIT_INVALID_INPUT, "invalid txn compare request: %s", line);
		req.compare = ctl_realloc(req.compare, (req.n_compare + 1) * sizeof(*req.compare));
		req.compare[req.n_compare++] = c;
	}
	if (txn_interactive)
		puts("success requests (get, put, del):");
	req.success = read_ops(in, &req.n_success);
	if (txn_interactive)
		puts("failure requests (get, put, del):");
	req.failure = read_ops(in, &req.n_failure);
	Etcdserverpb__TxnResponse *r = (Etcdserverpb__TxnResponse *)ctl_must_call(
	    "/etcdserverpb.KV/Txn", &req.base, &etcdserverpb__txn_response__descriptor, EXIT_ERROR);
	ctl_print_txn(r);
	return 0;
}

/* ----------------------------------------------------------- compaction */

static bool compact_physical;

static const struct ctl_flag compact_flags[] = {
    {"physical", 0, FLAG_BOOL, &compact_physical, "false",
     "'true' to wait for compaction to physically remove all old revisions"},
    {0},
};

static int cmd_compaction(int argc, char **argv)
{
	if (argc != 1)
		ctl_bad_args("compaction command needs 1 argument");
	char *end;
	long long rev = strtoll(argv[0], &end, 10);
	if (!*argv[0] || *end)
		ctl_die(EXIT_ERROR, "strconv.ParseInt: parsing \"%s\": invalid syntax", argv[0]);
	Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
	req.revision = rev;
	req.physical = compact_physical;
	ctl_must_call("/etcdserverpb.KV/Compact", &req.base,
	              &etcdserverpb__compaction_response__descriptor, EXIT_ERROR);
	printf("compacted revision %lld\n", rev);
	return 0;
}

/* ---------------------------------------------------------------- watch */

static struct {
	bool interactive, prefix, prev_kv, progress_notify;
	int64_t rev;
} watch_o;

static const struct ctl_flag watch_flags[] = {
    {"interactive", 'i', FLAG_BOOL, &watch_o.interactive, "false", "Interactive mode"},
    {"prefix", 0, FLAG_BOOL, &watch_o.prefix, "false", "Watch on a prefix if prefix is set"},
    {"rev", 0, FLAG_INT, &watch_o.rev, "0", "Revision to start watching"},
    {"prev-kv", 0, FLAG_BOOL, &watch_o.prev_kv, "false",
     "get the previous key-value pair before the event happens"},
    {"progress-notify", 0, FLAG_BOOL, &watch_o.progress_notify, "false",
     "get periodic watch progress notification from server"},
    {0},
};

static void print_watch(const Etcdserverpb__WatchResponse *w)
{
	switch (ctl_g.out) {
	case OUT_SIMPLE:
		for (size_t i = 0; i < w->n_events; i++) {
			const Mvccpb__Event *e = w->events[i];
			puts(e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "DELETE" : "PUT");
			if (e->prev_kv)
				ctl_print_kv(e->prev_kv, false);
			if (e->kv)
				ctl_print_kv(e->kv, false);
		}
		break;
	case OUT_JSON: {
		/* clientv3.WatchResponse: exported Go fields, no json tags. */
		bool first = true;
		fputs("{\"Header\":{", stdout);
		if (w->header)
			ctl_json_fields(stdout, &w->header->base, &first);
		fputs("},\"Events\":", stdout);
		if (w->n_events == 0) {
			/* clientv3 makes the slice for every response it passes
			 * on; only the one it makes when a watch is closed without
			 * compaction has none */
			fputs(w->canceled && !w->compact_revision ? "null" : "[]", stdout);
		} else {
			putchar('[');
			for (size_t i = 0; i < w->n_events; i++) {
				if (i)
					putchar(',');
				ctl_json_msg(stdout, &w->events[i]->base);
			}
			putchar(']');
		}
		printf(",\"CompactRevision\":%lld,\"Canceled\":%s,\"Created\":%s}\n",
		       (long long)w->compact_revision, w->canceled ? "true" : "false",
		       w->created ? "true" : "false");
		break;
	}
	case OUT_FIELDS:
		ctl_fields_header(w->header);
		for (size_t i = 0; i < w->n_events; i++) {
			const Mvccpb__Event *e = w->events[i];
			printf("\"Type\" : \"%s\"\n",
			       e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "DELETE" : "PUT");
			if (e->prev_kv) {
				printf("\"PrevKV.Key\" : \"%.*s\"\n", (int)e->prev_kv->key.len,
				       (const char *)e->prev_kv->key.data);
			}
			if (e->kv) {
				printf("\"Key\" : \"%.*s\"\n", (int)e->kv->key.len,
				       (const char *)e->kv->key.data);
				printf("\"Value\" : \"%.*s\"\n", (int)e->kv->value.len,
				       (const char *)e->kv->value.data);
			}
		}
		break;
	default:
		ctl_unsupported_output();
	}
	fflush(stdout);
}

/* One Watch stream and its watchers, multiplexed as clientv3 does: creates
 * are answered in order, events and cancels name their watcher, and the
 * answer to a WatchProgressRequest (watch id -1) is every watcher's. */
struct watch_session {
	struct ctl_conn *c;
	struct rpc_client_stream *s; /* NULL until the first watch (or after close) */
	bool interactive;
	bool got;  /* a message came on the stream */
	bool stop; /* leave the loop: the stream ended, or (not interactive) the
	            * watch was cancelled, or stdin ended */
	int status;
	char *message; /* of the stream's end */
	size_t live;   /* watchers created and not cancelled */
	/* per create request in the order sent: the command to run for each
	 * of its events (NULL: none) and, once created, its watch id */
	char ***execs;
	int64_t *ids;
	size_t n_creates, n_created;
	/* interactive: what was sent on the stream, sent again on the next
	 * endpoint if the connection could not be made */
	Etcdserverpb__WatchRequest **sent;
	size_t n_sent;
	uint64_t start; /* of the attempts to open the stream */
	struct ctl_retry retry;
	/* interactive: stdin */
	uv_poll_t in;
	bool in_polled;
	char *line;
	size_t line_len, line_cap;
	bool eof;
};

/* Runs `exec` once per event as etcdctl does: ETCD_WATCH_REVISION,
 * _EVENT_TYPE, _KEY and _VALUE (Go-quoted) in its environment, our stdout
 * and stderr; a command that fails ends cairnctl (exit 1). */
static void watch_exec(char **exec, const Etcdserverpb__WatchResponse *w)
{
	for (size_t i = 0; i < w->n_events; i++) {
		const Mvccpb__Event *e = w->events[i];
		static const ProtobufCBinaryData none;
		const ProtobufCBinaryData *k = e->kv ? &e->kv->key : &none;
		const ProtobufCBinaryData *v = e->kv ? &e->kv->value : &none;
		char *key = NULL, *val = NULL, rev[32];
		size_t kl, vl;
		FILE *f = open_memstream(&key, &kl);
		ctl_go_quote(f, k->data, k->len);
		fclose(f);
		f = open_memstream(&val, &vl);
		ctl_go_quote(f, v->data, v->len);
		fclose(f);
		snprintf(rev, sizeof(rev), "%lld",
		         (long long)(w->header ? w->header->revision : 0));
		fflush(stdout);
		fflush(stderr);
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) != 0)
			ctl_die(EXIT_ERROR, "pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid == 0) {
			setenv("ETCD_WATCH_REVISION", rev, 1);
			setenv("ETCD_WATCH_EVENT_TYPE",
			       e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "\"DELETE\""
			                                                    : "\"PUT\"",
			       1);
			setenv("ETCD_WATCH_KEY", key, 1);
			setenv("ETCD_WATCH_VALUE", val, 1);
			execvp(exec[0], exec);
			int err = errno;
			ssize_t unused = write(fds[1], &err, sizeof(err));
			(void)unused;
			_exit(127);
		}
		free(key);
		free(val);
		close(fds[1]);
		int err = 0, st = 0;
		bool exec_failed =
		    pid > 0 && read(fds[0], &err, sizeof(err)) == (ssize_t)sizeof(err);
		close(fds[0]);
		char why[256] = "";
		if (pid < 0)
			snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		else if (waitpid(pid, &st, 0) < 0)
			snprintf(why, sizeof(why), "wait: %s", strerror(errno));
		else if (exec_failed && err == ENOENT && !strchr(exec[0], '/'))
			snprintf(why, sizeof(why),
			         "exec: \"%s\": executable file not found in $PATH", exec[0]);
		else if (exec_failed)
			snprintf(why, sizeof(why), "fork/exec %s: %s", exec[0], strerror(err));
		else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
			snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(st));
		else if (WIFSIGNALED(st))
			snprintf(why, sizeof(why), "signal: %s", strsignal(WTERMSIG(st)));
		if (!*why)
			continue;
		/* Go's %q of the []string, then the error */
		fputs("command [", stderr);
		for (size_t j = 0; exec[j]; j++) {
			if (j)
				fputc(' ', stderr);
			ctl_go_quote(stderr, (const uint8_t *)exec[j], strlen(exec[j]));
		}
		if (!strncmp(why, "signal: ", 8))
			why[8] = (char)tolower((unsigned char)why[8]);
		fprintf(stderr, "] error (%s)\n", why);
		exit(EXIT_ERROR);
	}
}

/* The command of the watcher with this id (NULL if none). */
static char **watch_exec_of(const struct watch_session *ws, int64_t id)
{
	for (size_t i = 0; i < ws->n_created; i++)
		if (ws->ids[i] == id)
			return ws->execs[i];
	return NULL;
}

static void watch_msg(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	struct watch_session *ws = rpc_client_stream_data(s);
	Etcdserverpb__WatchResponse *w = etcdserverpb__watch_response__unpack(NULL, len, msg);
	if (!w)
		return;
	ws->got = true;
	if (w->created && ws->n_created < ws->n_creates)
		ws->ids[ws->n_created++] = w->watch_id;
	if (w->created && !w->canceled) {
		ws->live++;
		etcdserverpb__watch_response__free_unpacked(w, NULL);
		return;
	}
	if (w->canceled) {
		const char *why = w->compact_revision
		                      ? "etcdserver: mvcc: required revision has been compacted"
		                  : *w->cancel_reason ? w->cancel_reason
		                                      : "etcdserver: mvcc: required revision is a "
		                                        "future revision";
		fflush(stdout);
		fprintf(stderr, "watch was canceled (%s)\n", why);
		if (!w->created && ws->live)
			ws->live--;
	}
	bool progress = w->n_events == 0 && !w->canceled && !w->created &&
	                w->compact_revision == 0 && w->header && w->header->revision != 0;
	size_t copies = progress && w->watch_id == -1 ? ws->live : 1;
	for (size_t i = 0; i < copies; i++) {
		if (progress)
			printf("progress notify: %lld\n", (long long)w->header->revision);
		print_watch(w);
	}
	char **exec = w->n_events ? watch_exec_of(ws, w->watch_id) : NULL;
	if (exec)
		watch_exec(exec, w);
	if (w->canceled && !ws->interactive) {
		ws->stop = true;
		rpc_client_stream_cancel(s);
	}
	etcdserverpb__watch_response__free_unpacked(w, NULL);
}

static void watch_close(struct rpc_client_stream *s, int grpc_status, const char *message)
{
	struct watch_session *ws = rpc_client_stream_data(s);
	ws->status = grpc_status;
	ws->message = ctl_strdup(message ? message : "");
	ws->s = NULL;
	ws->stop = true;
}

static int watch_open(struct watch_session *ws)
{
	struct rpc_client_stream_cbs cbs = {.on_message = watch_msg, .on_close = watch_close};
	ws->got = false;
	ws->live = 0;
	ws->n_created = 0; /* the creates are answered again, in order */
	ws->message = NULL;
	return ws->c->cli ? rpc_client_stream_open(ws->c->cli, "/etcdserverpb.Watch/Watch", &cbs,
	                                           ws, &ws->s)
	                  : -1;
}

/* A create request's command (exec), in the order they are sent. */
static void watch_add_create(struct watch_session *ws, char **exec)
{
	ws->execs = ctl_realloc(ws->execs, (ws->n_creates + 1) * sizeof(*ws->execs));
	ws->ids = ctl_realloc(ws->ids, (ws->n_creates + 1) * sizeof(*ws->ids));
	ws->execs[ws->n_creates++] = exec;
}

/* Sends on the stream (opened first if need be) and keeps the request;
 * `exec` is a create request's command. */
static void watch_send(struct watch_session *ws, Etcdserverpb__WatchRequest *req, char **exec)
{
	if (!ws->s) {
		ws->start = ctl_now_ms();
		ws->retry = (struct ctl_retry){0};
		ws->n_sent = 0;
		ws->n_creates = 0;
		if (watch_open(ws) != 0)
			ctl_die(EXIT_ERROR, "grpc: the client connection is closing");
	}
	if (req->request_union_case == ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST)
		watch_add_create(ws, exec);
	ws->sent = ctl_realloc(ws->sent, (ws->n_sent + 1) * sizeof(*ws->sent));
	ws->sent[ws->n_sent++] = req;
	rpc_client_stream_send_msg(ws->s, &req->base);
}

/* getWatchChan: the create request for a key (and range end) with the
 * watch flags; -1 with etcdctl's message if they conflict. */
static int watch_create(int argc, char **argv, Etcdserverpb__WatchRequest *req, const char **err)
{
	if (argc < 1) {
		*err = "bad number of arguments";
		return -1;
	}
	if (argc == 2 && watch_o.prefix) {
		*err = "`range_end` and `--prefix` are mutually exclusive";
		return -1;
	}
	Etcdserverpb__WatchCreateRequest *cr = ctl_alloc(sizeof(*cr));
	etcdserverpb__watch_create_request__init(cr);
	cr->key = BIN(argv[0], strlen(argv[0]));
	/* etcdctl: a range end only with exactly two arguments */
	if (argc == 2)
		cr->range_end = BIN(argv[1], strlen(argv[1]));
	ctl_key_range(&cr->key, &cr->range_end, watch_o.prefix, false);
	cr->start_revision = watch_o.rev;
	cr->prev_kv = watch_o.prev_kv;
	cr->progress_notify = watch_o.progress_notify;
	etcdserverpb__watch_request__init(req);
	req->request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	req->create_request = cr;
	return 0;
}

/* The key (and range end) from ETCDCTL_WATCH_KEY / _RANGE_END before the
 * arguments, as parseWatchArgs does; exits on a conflict. */
static void watch_args(int argc, char **argv, char ***out, int *nout)
{
	const char *env_key = getenv("ETCDCTL_WATCH_KEY");
	const char *env_end = getenv("ETCDCTL_WATCH_RANGE_END");
	bool have_key = env_key && *env_key;
	if (!have_key && argc < 1)
		ctl_bad_args("bad number of arguments");
	if (have_key && argc > 0)
		ctl_bad_args("bad number of arguments (found conflicting environment key)");
	if (!have_key) {
		*out = argv;
		*nout = argc;
		return;
	}
	char **v = ctl_alloc(3 * sizeof(*v));
	int n = 0;
	v[n++] = (char *)env_key;
	if (env_end && *env_end)
		v[n++] = (char *)env_end;
	*out = v;
	*nout = n;
}

/* The command after "--" (NULL if none); *argc becomes the count of the
 * arguments before it. `dash` as ctl_parse_flags_err gives it. */
static char **watch_split_exec(int *argc, char **argv, int dash)
{
	if (dash < 0)
		return NULL;
	if (dash == *argc)
		ctl_bad_args("bad number of arguments (found separator --, but no commands)");
	char **exec = argv + dash; /* argv ends with NULL */
	*argc = dash;
	return exec;
}

/* One line of interactive input (watchInteractiveFunc). */
static void watch_line(struct watch_session *ws, char *line)
{
	char **av;
	int ac;
	if (ctl_argify(line, &av, &ac) != 0 || ac < 1) {
		fprintf(stderr, "Invalid command: %s (watch and progress supported)\n", line);
		return;
	}
	const char *env_key = getenv("ETCDCTL_WATCH_KEY");
	if (!strcmp(av[0], "progress")) {
		Etcdserverpb__WatchProgressRequest *pr = ctl_alloc(sizeof(*pr));
		etcdserverpb__watch_progress_request__init(pr);
		Etcdserverpb__WatchRequest *req = ctl_alloc(sizeof(*req));
		etcdserverpb__watch_request__init(req);
		req->request_union_case =
		    ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
		req->progress_request = pr;
		watch_send(ws, req, NULL);
		return;
	}
	if (strcmp(av[0], "watch") != 0) {
		fprintf(stderr, "Invalid command %s (only support watch)\n", line);
		return;
	}
	if (ac < 2 && !(env_key && *env_key)) {
		fprintf(stderr, "Invalid command %s (command type or key is not provided)\n", line);
		return;
	}
	if (!strcmp(av[ac - 1], "--"))
		ctl_bad_args("bad number of arguments (found separator --, but no commands)");
	/* Each line's flags alone count (etcdctl parses it with a fresh flag
	 * set of the watch command: no global flags, defaults reset). */
	memset(&watch_o, 0, sizeof(watch_o));
	char **pos, **keys;
	int npos, nkeys, dash;
	char err[256];
	if (ctl_parse_flags_err(watch_flags, false, ac - 1, av + 1, &pos, &npos, &dash, err,
	                        sizeof(err)) != 0)
		ctl_bad_args("%s", err);
	char **exec = watch_split_exec(&npos, pos, dash);
	watch_args(npos, pos, &keys, &nkeys);
	Etcdserverpb__WatchRequest *req = ctl_alloc(sizeof(*req));
	const char *why;
	if (watch_create(nkeys, keys, req, &why) != 0) {
		fprintf(stderr, "Invalid command %s (%s)\n", line, why);
		return;
	}
	watch_send(ws, req, exec);
}

/* Reads what stdin has and runs each complete line; a partial last line
 * at EOF is dropped, as bufio's ReadString('\n') returns it with EOF. */
static void watch_read(struct watch_session *ws)
{
	if (ws->line_cap - ws->line_len < 4096)
		ws->line = ctl_realloc(ws->line, ws->line_cap = ws->line_cap * 2 + 4096);
	ssize_t n = read(0, ws->line + ws->line_len, ws->line_cap - ws->line_len - 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ws->eof = true;
		ws->stop = true;
		return;
	}
	ws->line_len += (size_t)n;
	char *nl;
	while ((nl = memchr(ws->line, '\n', ws->line_len))) {
		*nl = 0;
		size_t used = (size_t)(nl - ws->line) + 1;
		watch_line(ws, ctl_strdup(ws->line));
		memmove(ws->line, nl + 1, ws->line_len - used);
		ws->line_len -= used;
	}
	fflush(stdout);
}

static void stdin_cb(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct watch_session *ws = h->data;
	if (status < 0) {
		ws->eof = true;
		ws->stop = true;
		return;
	}
	watch_read(ws);
}

static void poll_closed(uv_handle_t *h)
{
	(void)h;
}

static _Noreturn void watch_interactive(struct watch_session *ws)
{
	ws->interactive = true;
	ws->in.data = ws;
	/* a regular file (or /dev/null) cannot be polled: it never blocks, so
	 * it is read in one go, as etcdctl would before its watches answer */
	if (uv_poll_init(&ws->c->loop, &ws->in, 0) == 0) {
		ws->in_polled = true;
		uv_poll_start(&ws->in, UV_READABLE, stdin_cb);
	} else {
		while (!ws->eof)
			watch_read(ws);
	}
	while (!ws->eof) {
		ws->stop = false;
		ctl_run(ws->c, &ws->stop);
		if (!ws->eof && !ws->s && ws->message && !ws->got &&
		    ctl_not_sent(ws->status, ws->message) &&
		    ctl_retry(ws->c, ws->start, &ws->retry, true)) {
			/* the same requests on the next endpoint */
			if (watch_open(ws) != 0)
				ctl_die(EXIT_ERROR, "grpc: the client connection is closing");
			for (size_t i = 0; i < ws->n_sent; i++)
				rpc_client_stream_send_msg(ws->s, &ws->sent[i]->base);
			continue;
		}
		if (!ws->eof && !ws->s && ws->message && ws->status != RPC_OK) {
			/* the stream ended under its watchers */
			char err[CTL_ERR_LEN];
			ctl_format_error(ws->status, ws->message, err);
			fflush(stdout);
			fprintf(stderr, "watch was canceled (%s)\n", err);
			ctl_die(EXIT_INTERRUPTED, "watch is canceled by the server");
		}
	}
	if (ws->in_polled) {
		uv_poll_stop(&ws->in);
		uv_close((uv_handle_t *)&ws->in, poll_closed);
	}
	if (ws->s)
		rpc_client_stream_cancel(ws->s);
	ctl_die(EXIT_INVALID_INPUT, "Error reading watch request line: EOF");
}

static int cmd_watch(int argc, char **argv)
{
	const char *env_key = getenv("ETCDCTL_WATCH_KEY");
	const char *env_end = getenv("ETCDCTL_WATCH_RANGE_END");
	if ((!env_key || !*env_key) && env_end && *env_end)
		ctl_bad_args("ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END=\"%s\"",
		             env_end);
	struct watch_session ws = {.c = ctl_conn()};
	if (watch_o.interactive)
		watch_interactive(&ws);
	char **keys;
	int nkeys;
	char **exec = watch_split_exec(&argc, argv, ctl_g.dash);
	watch_args(argc, argv, &keys, &nkeys);
	Etcdserverpb__WatchRequest req;
	const char *why;
	if (watch_create(nkeys, keys, &req, &why) != 0)
		ctl_bad_args("%s", why);
	watch_add_create(&ws, exec);
	uint64_t start = ctl_now_ms();
	struct ctl_retry retry = {0};
	for (;;) {
		ws.stop = false;
		if (watch_open(&ws) != 0 || rpc_client_stream_send_msg(ws.s, &req.base) != 0)
			ctl_die(EXIT_BAD_CONNECTION, "grpc: the client connection is closing");
		ctl_run(ws.c, &ws.stop);
		/* nothing came yet: the watch may be made again, elsewhere if the
		 * connection could not be made */
		bool not_sent = ctl_not_sent(ws.status, ws.message);
		if (!ws.s && !ws.got && ws.message && ws.status == RPC_UNAVAILABLE &&
		    strncmp(ws.message, "etcdserver: ", 12) != 0 &&
		    ctl_retry(ws.c, start, &retry, not_sent))
			continue;
		break;
	}
	if (ws.message && ws.status != RPC_OK && ws.status != RPC_CANCELLED) {
		char err[CTL_ERR_LEN];
		ctl_format_error(ws.status, ws.message, err);
		fflush(stdout);
		fprintf(stderr, "watch was canceled (%s)\n", err);
	}
	ctl_die(EXIT_INTERRUPTED, "watch is canceled by the server");
}

const struct ctl_cmd ctl_kv_cmds[] = {
    {"get", cmd_get, "get [options] <key> [range_end]", "Gets the key or a range of keys",
     get_flags},
    {"put", cmd_put, "put [options] <key> <value> (<value> can also be given from stdin)",
     "Puts the given key into the store", put_flags},
    {"del", cmd_del, "del [options] <key> [range_end]",
     "Removes the specified key or range of keys [key, range_end)", del_flags},
    {"txn", cmd_txn, "txn [options]", "Txn processes all the requests in one transaction",
     txn_flags},
    {"compaction", cmd_compaction, "compaction [options] <revision>",
     "Compacts the event history in etcd", compact_flags},
    {"watch", cmd_watch,
     "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
     "Watches events stream on keys or prefixes", watch_flags},
};
const size_t ctl_n_kv_cmds = sizeof(ctl_kv_cmds) / sizeof(ctl_kv_cmds[0]);

/* Flag defaults are set before parsing (static storage starts zeroed). */
__attribute__((constructor)) static void kv_defaults(void)
{
	reset_get();
	reset_put();
}
