/*
 * config.c — flag parsing for cairnd with etcd's names and defaults.
 *
 * HOW IT WORKS: one table lists every flag with its type and the offset of
 * its field in struct srv_config. Defaults are applied first, then the
 * environment (CAIRN_X, then ETCD_X), then the command line, so the command
 * line wins. Validation runs last, on the merged result.
 */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"

enum flag_type { F_STR, F_URLS, F_INT, F_DUR, F_BOOL, F_STATE, F_LEVEL, F_FORMAT, F_IGNORED };

struct flag {
	const char *name;
	enum flag_type type;
	size_t off;
	const char *def;
	const char *help;
};

#define OFF(field) offsetof(struct srv_config, field)
static const struct flag flags[] = {
    {"name", F_STR, OFF(name), "default", "human-readable name for this member"},
    {"data-dir", F_STR, OFF(data_dir), NULL, "path to the data directory (default: ${name}.etcd)"},
    {"listen-client-urls", F_URLS, OFF(listen_client_urls), "http://localhost:2379",
     "URLs to listen on for client traffic"},
    {"advertise-client-urls", F_URLS, OFF(advertise_client_urls), "http://localhost:2379",
     "client URLs advertised to the rest of the cluster"},
    {"listen-peer-urls", F_URLS, OFF(listen_peer_urls), "http://localhost:2380",
     "URLs to listen on for peer traffic"},
    {"initial-advertise-peer-urls", F_URLS, OFF(initial_advertise_peer_urls),
     "http://localhost:2380", "this member's peer URLs to advertise to the rest of the cluster"},
    {"listen-metrics-urls", F_URLS, OFF(listen_metrics_urls), "",
     "extra URLs to serve /metrics and /health on"},
    {"initial-cluster", F_STR, OFF(initial_cluster), NULL,
     "initial cluster configuration for bootstrapping (default: ${name}=${peer url})"},
    {"initial-cluster-state", F_STATE, OFF(initial_cluster_existing), "new",
     "initial cluster state ('new' or 'existing')"},
    {"initial-cluster-token", F_STR, OFF(initial_cluster_token), "etcd-cluster",
     "initial cluster token for the cluster during bootstrap"},
    {"quota-backend-bytes", F_INT, OFF(quota_backend_bytes), "0",
     "raise an alarm when the backend size exceeds this (0 = 2 GiB default)"},
    {"max-request-bytes", F_INT, OFF(max_request_bytes), "1572864",
     "maximum client request size in bytes the server will accept"},
    {"max-txn-ops", F_INT, OFF(max_txn_ops), "128", "maximum number of operations per txn"},
    {"heartbeat-interval", F_INT, OFF(heartbeat_interval_ms), "100",
     "time (in milliseconds) of a heartbeat interval"},
    {"election-timeout", F_INT, OFF(election_timeout_ms), "1000",
     "time (in milliseconds) for an election to timeout"},
    {"snapshot-count", F_INT, OFF(snapshot_count), "100000",
     "number of committed transactions to trigger a snapshot"},
    {"experimental-snapshot-catchup-entries", F_INT, OFF(snapshot_catchup_entries), "5000",
     "entries kept behind a snapshot for slow followers to catch up"},
    {"experimental-watch-progress-notify-interval", F_DUR, OFF(watch_progress_notify_interval_ms),
     "10m", "duration of periodic watch progress notifications"},
    {"max-watchers-per-stream", F_INT, OFF(max_watchers_per_stream), "100000",
     "maximum watchers on one watch stream"},
    {"unsafe-no-fsync", F_BOOL, OFF(unsafe_no_fsync), "false",
     "disables fsync, unsafe, will cause data loss (tests only)"},
    {"log-level", F_LEVEL, OFF(log_level), "info",
     "log level: debug, info, warn, error, panic, fatal"},
    {"log-format", F_FORMAT, OFF(log_format), "text", "log format: text or json"},
    {"version", F_BOOL, OFF(show_version), "false", "print the version and exit"},
    {"help", F_BOOL, OFF(show_help), "false", "show this help"},
    /* Accepted for manifest compatibility, no effect in cairn. */
    {"logger", F_IGNORED, 0, NULL, "ignored (cairn has one logger)"},
    {"log-outputs", F_IGNORED, 0, NULL, "ignored (cairn logs to stderr)"},
    {"enable-pprof", F_IGNORED, 0, NULL, "ignored"},
    {"auto-compaction-retention", F_IGNORED, 0, NULL, "ignored (not yet supported)"},
    {"auto-compaction-mode", F_IGNORED, 0, NULL, "ignored (not yet supported)"},
    {"experimental-initial-corrupt-check", F_IGNORED, 0, NULL, "ignored"},
    {"enable-v2", F_IGNORED, 0, NULL, "ignored (v2 API is not served)"},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return CAIRN_ECONFIG;
}

static void url_list_free(struct srv_url_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->url[i]);
	l->n = 0;
}

static int url_list_parse(struct srv_url_list *l, const char *s, char *err, size_t errlen)
{
	url_list_free(l);
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		if (len > 0) {
			if (l->n == SRV_MAX_URLS)
				return fail(err, errlen, "too many URLs in %s", s);
			l->url[l->n] = strndup(s, len);
			if (!l->url[l->n])
				return CAIRN_ENOMEM;
			l->n++;
		}
		s += len + (comma ? 1 : 0);
	}
	return 0;
}

int srv_parse_duration_ms(const char *s, int64_t *out_ms)
{
	double total = 0;
	if (strcmp(s, "0") == 0) {
		*out_ms = 0;
		return 0;
	}
	if (!*s)
		return CAIRN_EINVAL;
	while (*s) {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || errno || v < 0)
			return CAIRN_EINVAL;
		s = end;
		double unit;
		if (strncmp(s, "ms", 2) == 0) {
			unit = 1;
			s += 2;
		} else if (strncmp(s, "us", 2) == 0) {
			unit = 0.001;
			s += 2;
		} else if (strncmp(s, "ns", 2) == 0) {
			unit = 0.000001;
			s += 2;
		} else if (*s == 's') {
			unit = 1000;
			s++;
		} else if (*s == 'm') {
			unit = 60000;
			s++;
		} else if (*s == 'h') {
			unit = 3600000;
			s++;
		} else {
			return CAIRN_EINVAL;
		}
		total += v * unit;
	}
	*out_ms = (int64_t)total;
	return 0;
}

int srv_url_split(const char *url, char *hostbuf, size_t hostlen, int *port)
{
	const char *p = url;
	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	else if (strstr(p, "://"))
		return CAIRN_EADDR; /* https and unix are not served (yet) */
	const char *colon = strrchr(p, ':');
	if (!colon || colon == p)
		return CAIRN_EADDR;
	size_t hl = (size_t)(colon - p);
	if (p[0] == '[' && hl >= 2 && p[hl - 1] == ']') { /* [::1]:2379 */
		p++;
		hl -= 2;
	}
	if (hl + 1 > hostlen)
		return CAIRN_EADDR;
	memcpy(hostbuf, p, hl);
	hostbuf[hl] = '\0';
	char *end;
	long v = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || (*end && *end != '/') || v < 0 || v > 65535)
		return CAIRN_EADDR;
	*port = (int)v;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!v || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "t"))
		*out = true;
	else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "f"))
		*out = false;
	else
		return CAIRN_EINVAL;
	return 0;
}

static int set_flag(struct srv_config *cfg, const struct flag *f, const char *v, char *err,
                    size_t errlen)
{
	char *base = (char *)cfg + f->off;
	char *end;
	switch (f->type) {
	case F_STR: {
		char **dst = (char **)(void *)base;
		free(*dst);
		*dst = v ? strdup(v) : NULL;
		return (v && !*dst) ? CAIRN_ENOMEM : 0;
	}
	case F_URLS: {
		int rv = url_list_parse((struct srv_url_list *)(void *)base, v, err, errlen);
		if (rv)
			return rv;
		struct srv_url_list *l = (struct srv_url_list *)(void *)base;
		for (int i = 0; i < l->n; i++) {
			char host[256];
			int port;
			if (srv_url_split(l->url[i], host, sizeof(host), &port))
				return fail(err, errlen,
				            "--%s: %s is not a valid URL (want http://host:port)",
				            f->name, l->url[i]);
		}
		return 0;
	}
	case F_INT: {
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (end == v || *end || errno || x < 0)
			return fail(err, errlen, "invalid value \"%s\" for flag --%s", v, f->name);
		*(int64_t *)(void *)base = x;
		return 0;
	}
	case F_DUR:
		if (srv_parse_duration_ms(v, (int64_t *)(void *)base))
			return fail(err, errlen, "invalid duration \"%s\" for flag --%s", v,
			            f->name);
		return 0;
	case F_BOOL:
		if (parse_bool(v, (bool *)(void *)base))
			return fail(err, errlen, "invalid boolean \"%s\" for flag --%s", v,
			            f->name);
		return 0;
	case F_STATE:
		if (!strcmp(v, "new"))
			*(bool *)(void *)base = false;
		else if (!strcmp(v, "existing"))
			*(bool *)(void *)base = true;
		else
			return fail(err, errlen,
			            "invalid value \"%s\" for flag --initial-cluster-state: valid "
			            "values are \"new\" or \"existing\"",
			            v);
		return 0;
	case F_LEVEL: {
		static const char *const names[] = {"debug", "info", "warn", "error", "fatal"};
		for (int i = 0; i < 5; i++)
			if (!strcmp(v, names[i])) {
				*(enum srv_log_level *)(void *)base = (enum srv_log_level)i;
				return 0;
			}
		if (!strcmp(v, "panic") || !strcmp(v, "dpanic")) {
			*(enum srv_log_level *)(void *)base = SRV_LOG_FATAL;
			return 0;
		}
		return fail(err, errlen, "invalid value \"%s\" for flag --log-level", v);
	}
	case F_FORMAT:
		if (!strcmp(v, "text") || !strcmp(v, "console"))
			*(enum srv_log_format *)(void *)base = SRV_LOG_TEXT;
		else if (!strcmp(v, "json"))
			*(enum srv_log_format *)(void *)base = SRV_LOG_JSON;
		else
			return fail(err, errlen, "invalid value \"%s\" for flag --log-format", v);
		return 0;
	case F_IGNORED:
		return 0;
	}
	return CAIRN_EINVAL;
}

static const struct flag *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_FLAGS; i++)
		if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len))
			return &flags[i];
	return NULL;
}

static int parse_initial_cluster(struct srv_config *cfg, char *err, size_t errlen)
{
	const char *s = cfg->initial_cluster;
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		const char *eq = memchr(s, '=', len);
		if (!eq || eq == s)
			return fail(err, errlen, "--initial-cluster: \"%.*s\" is not name=url",
			            (int)len, s);
		char *name = strndup(s, (size_t)(eq - s));
		char *url = strndup(eq + 1, len - (size_t)(eq - s) - 1);
		if (!name || !url) {
			free(name);
			free(url);
			return CAIRN_ENOMEM;
		}
		int idx = -1;
		for (int i = 0; i < cfg->n_members; i++)
			if (!strcmp(cfg->members[i].name, name))
				idx = i;
		if (idx < 0) {
			if (cfg->n_members == SRV_MAX_MEMBERS) {
				free(name);
				free(url);
				return fail(err, errlen, "--initial-cluster: too many members");
			}
			idx = cfg->n_members++;
			cfg->members[idx].name = name;
		} else {
			free(name);
		}
		struct srv_url_list *l = &cfg->members[idx].peer_urls;
		char host[256];
		int port;
		if (l->n == SRV_MAX_URLS || srv_url_split(url, host, sizeof(host), &port)) {
			int rv = fail(err, errlen, "--initial-cluster: bad peer URL \"%s\"", url);
			free(url);
			return rv;
		}
		l->url[l->n++] = url;
		s += len + (comma ? 1 : 0);
	}
	return 0;
}

static int validate(struct srv_config *cfg, char *err, size_t errlen)
{
	if (!cfg->data_dir) {
		size_t n = strlen(cfg->name) + 6;
		cfg->data_dir = malloc(n);
		if (!cfg->data_dir)
			return CAIRN_ENOMEM;
		snprintf(cfg->data_dir, n, "%s.etcd", cfg->name);
	}
	if (!cfg->initial_cluster) {
		/* etcd's default: this member alone at its advertised peer URLs. */
		size_t n = strlen(cfg->name) + 2;
		for (int i = 0; i < cfg->initial_advertise_peer_urls.n; i++)
			n +=
			    strlen(cfg->name) + strlen(cfg->initial_advertise_peer_urls.url[i]) + 2;
		cfg->initial_cluster = calloc(1, n);
		if (!cfg->initial_cluster)
			return CAIRN_ENOMEM;
		for (int i = 0; i < cfg->initial_advertise_peer_urls.n; i++) {
			if (i)
				strcat(cfg->initial_cluster, ",");
			strcat(cfg->initial_cluster, cfg->name);
			strcat(cfg->initial_cluster, "=");
			strcat(cfg->initial_cluster, cfg->initial_advertise_peer_urls.url[i]);
		}
	}
	int rv = parse_initial_cluster(cfg, err, errlen);
	if (rv)
		return rv;
	int self = -1;
	for (int i = 0; i < cfg->n_members; i++)
		if (!strcmp(cfg->members[i].name, cfg->name))
			self = i;
	if (self < 0)
		return fail(err, errlen,
		            "couldn't find local name \"%s\" in the initial cluster configuration",
		            cfg->name);
	if (cfg->listen_client_urls.n == 0)
		return fail(err, errlen, "--listen-client-urls must name at least one URL");
	if (cfg->heartbeat_interval_ms <= 0)
		return fail(err, errlen, "--heartbeat-interval must be > 0");
	if (cfg->election_timeout_ms < 5 * cfg->heartbeat_interval_ms)
		return fail(err, errlen,
		            "--election-timeout[%lldms] should be at least as 5 times as "
		            "--heartbeat-interval[%lldms]",
		            (long long)cfg->election_timeout_ms,
		            (long long)cfg->heartbeat_interval_ms);
	if (cfg->quota_backend_bytes == 0)
		cfg->quota_backend_bytes = 2LL << 30;
	if (cfg->max_request_bytes == 0)
		return fail(err, errlen, "--max-request-bytes must be > 0");
	return 0;
}

int srv_config_parse(struct srv_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	int rv;
	memset(cfg, 0, sizeof(*cfg));
	err[0] = '\0';
	for (size_t i = 0; i < N_FLAGS; i++)
		if (flags[i].def && (rv = set_flag(cfg, &flags[i], flags[i].def, err, errlen)))
			goto out;
	for (size_t i = 0; i < N_FLAGS; i++) {
		char env[96];
		for (const char *prefix = "ETCD_"; prefix;
		     prefix = (prefix[0] == 'E') ? "CAIRN_" : NULL) {
			/* CAIRN_ is applied after ETCD_, so it wins. */
			snprintf(env, sizeof(env), "%s%s", prefix, flags[i].name);
			for (char *c = env; *c; c++)
				*c = (*c == '-') ? '_' : (char)toupper((unsigned char)*c);
			const char *v = getenv(env);
			if (v && (rv = set_flag(cfg, &flags[i], v, err, errlen)))
				goto out;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-') {
			rv = fail(err, errlen, "'%s' is not a valid flag", a);
			goto out;
		}
		a += (a[1] == '-') ? 2 : 1;
		const char *eq = strchr(a, '=');
		size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
		const struct flag *f = find_flag(a, nlen);
		if (!f) {
			rv =
			    fail(err, errlen, "flag provided but not defined: -%.*s", (int)nlen, a);
			goto out;
		}
		const char *v = eq ? eq + 1 : NULL;
		if (!v && f->type != F_BOOL) {
			if (i + 1 >= argc) {
				rv = fail(err, errlen, "flag needs an argument: -%s", f->name);
				goto out;
			}
			v = argv[++i];
		}
		if ((rv = set_flag(cfg, f, v, err, errlen)))
			goto out;
	}
	if (cfg->show_help || cfg->show_version)
		return 0;
	rv = validate(cfg, err, errlen);
out:
	if (rv) {
		if (!err[0])
			snprintf(err, errlen, "%s", cairn_strerror(rv));
		srv_config_free(cfg);
		return CAIRN_ECONFIG;
	}
	return 0;
}

void srv_config_free(struct srv_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_FLAGS; i++) {
		char *base = (char *)cfg + flags[i].off;
		if (flags[i].type == F_STR) {
			free(*(char **)(void *)base);
			*(char **)(void *)base = NULL;
		} else if (flags[i].type == F_URLS) {
			url_list_free((struct srv_url_list *)(void *)base);
		}
	}
	for (int i = 0; i < cfg->n_members; i++) {
		free(cfg->members[i].name);
		url_list_free(&cfg->members[i].peer_urls);
	}
	cfg->n_members = 0;
}

void srv_config_usage(void *stream)
{
	FILE *out = stream;
	fprintf(out, "Usage: cairnd [flags]\n\nFlags (etcd's names; also from CAIRN_<FLAG> or "
	             "ETCD_<FLAG> in the environment):\n");
	for (size_t i = 0; i < N_FLAGS; i++) {
		if (flags[i].type == F_IGNORED)
			continue;
		fprintf(out, "  --%s\n\t%s", flags[i].name, flags[i].help);
		if (flags[i].def && flags[i].type != F_BOOL)
			fprintf(out, " (default \"%s\")", flags[i].def);
		fprintf(out, "\n");
	}
}
