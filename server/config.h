/*
 * config.h — cairnd's configuration: etcd's flag names, defaults and meaning.
 *
 * Flags are taken as `--name=value`, `--name value` or with one dash, like
 * Go's flag package that etcd uses. A flag not given on the command line is
 * read from the environment as CAIRN_<NAME> or ETCD_<NAME> (upper case,
 * dashes as underscores), so existing etcd manifests and unit files carry over.
 * Flags that etcd has and cairn does not need are accepted and ignored with a
 * warning only where a manifest commonly carries them (see config.c).
 *
 * Ownership: srv_config_parse fills a caller-allocated struct whose strings
 * are owned by it; srv_config_free releases them (NULL is fine).
 * Threading: parse once on the main thread before anything starts.
 */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_MAX_URLS    8
#define SRV_MAX_MEMBERS 16

struct srv_url_list {
	int n;
	char *url[SRV_MAX_URLS];
};

struct srv_initial_member {
	char *name;
	struct srv_url_list peer_urls;
};

enum srv_log_format { SRV_LOG_TEXT, SRV_LOG_JSON };
enum srv_log_level { SRV_LOG_DEBUG, SRV_LOG_INFO, SRV_LOG_WARN, SRV_LOG_ERROR, SRV_LOG_FATAL };

struct srv_config {
	char *name;
	char *data_dir;
	struct srv_url_list listen_client_urls;
	struct srv_url_list advertise_client_urls;
	struct srv_url_list listen_peer_urls;
	struct srv_url_list initial_advertise_peer_urls;
	struct srv_url_list listen_metrics_urls;
	char *initial_cluster; /* raw "n1=url,n2=url"; parsed into members[] */
	int n_members;
	struct srv_initial_member members[SRV_MAX_MEMBERS];
	bool initial_cluster_existing; /* --initial-cluster-state existing */
	char *initial_cluster_token;
	int64_t quota_backend_bytes;
	int64_t max_request_bytes;
	int64_t max_txn_ops;
	int64_t heartbeat_interval_ms;
	int64_t election_timeout_ms;
	int64_t snapshot_count;
	int64_t snapshot_catchup_entries;
	int64_t watch_progress_notify_interval_ms;
	int64_t max_watchers_per_stream;
	bool unsafe_no_fsync;
	/* Not a flag: raft's PRNG seed (election timeouts), fixed by tests
	 * that must replay; 0 (the default) seeds it from the clock. */
	uint64_t raft_seed;
	enum srv_log_level log_level;
	enum srv_log_format log_format;
	bool show_version;
	bool show_help;
};

/* Parses argv (and the environment through getenv) into *cfg. On error returns
 * CAIRN_ECONFIG and writes a one-line explanation into err (size errlen);
 * *cfg is then freed. Validates: URLs are http://host:port, the initial
 * cluster names this member with its advertised peer URLs, timeouts are sane
 * (election ≥ 5 × heartbeat, as etcd requires). */
int srv_config_parse(struct srv_config *cfg, int argc, char **argv, char *err, size_t errlen);

void srv_config_free(struct srv_config *cfg);

/* Writes the flag list with defaults (for --help) to a FILE * given as void *
 * to keep stdio out of this header. */
void srv_config_usage(void *stream);

/* Parses a Go duration ("100ms", "10m", "1h30m", "5s", "0") into ms. */
int srv_parse_duration_ms(const char *s, int64_t *out_ms);

/* Splits "http://host:port" into host (NUL-terminated into hostbuf) and port. */
int srv_url_split(const char *url, char *hostbuf, size_t hostlen, int *port);

#endif
