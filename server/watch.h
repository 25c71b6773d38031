/*
 * watch.h — the watch hub: etcd's Watch service over the store's history.
 *
 * HOW IT WORKS
 * Each gRPC Watch stream holds watchers (etcd's fields: key, range_end,
 * start_revision, filters, prev_kv, progress_notify, fragment, watch_id).
 * A watcher is either synced (it has seen everything up to the store's
 * current revision and is fed live) or unsynced (it starts in the past, or
 * its stream was too slow). The member tells the hub when applied revisions
 * advance (srv_watch_hub_notify); the hub reads the new events once from
 * the store history and hands each synced watcher its matching events, one
 * WatchResponse per watcher per revision batch (a txn's events never split
 * unless fragmenting). Each event is encoded once per batch and a stream's
 * responses are queued with one rpc_stream_send_framed, so a put seen by
 * 100,000 watchers costs one copy of its bytes per watcher, not a protobuf
 * pack and an allocation each; past a few frames per stream the rest is
 * generated as rpc drains the stream (rpc_stream_want_pull / on_pull), not
 * all at once. Unsynced watchers catch up from the history
 * in bounded chunks while their stream is writable. A stream whose outbound
 * queue is full (rpc_stream_send says CAIRN_EAGAIN) turns its watchers
 * unsynced: nothing is buffered for it in the hub, so a client that stops
 * reading costs no memory beyond rpc's bounded queue, and resumes from the
 * history when it drains (on_writable). A watcher whose next revision was
 * compacted is cancelled with compact_revision set, as etcd does.
 *
 * Create replies are sent in request order; watch_id 0..n assigned per
 * stream unless the client picks one (duplicate → created with canceled,
 * as etcd). WatchProgressRequest answers with an empty response carrying
 * the current revision (watch_id -1) when every watcher on the stream is
 * synced. Periodic progress notifications (interval from the config) go to
 * synced watchers with progress_notify set.
 *
 * Threading: loop thread only. Reads the store through short read txns.
 */
#ifndef SRV_WATCH_H
#define SRV_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "server/apply.h"
#include "store/store.h"

struct srv_watch_hub;

struct srv_watch_config {
	struct store *store;          /* borrowed; outlives the hub */
	int64_t progress_interval_ms; /* periodic progress notify; 0 = off */
	size_t max_response_bytes;    /* fragment above this (max-request-bytes) */
	size_t catchup_chunk_events;  /* history events read per catch-up step */
	uint32_t max_watchers_per_stream;
	/* Fills the response header (cluster/member id, raft term). */
	void (*header)(void *ctx, struct srv_header *out);
	void *header_ctx;
};

/* Stats for /metrics. */
struct srv_watch_stats {
	uint64_t streams;
	uint64_t watchers;
	uint64_t unsynced;
};

int srv_watch_hub_new(const struct srv_watch_config *cfg, struct srv_watch_hub **out);

/* Closes every stream (rpc closes them; on_close frees per-stream state)
 * and frees the hub. Accepts NULL. */
void srv_watch_hub_free(struct srv_watch_hub *hub);

/* Callbacks to register for "/etcdserverpb.Watch/Watch" with the hub as
 * userdata: rpc_server_register_stream(srv, path, &srv_watch_stream_cbs, hub). */
extern const struct rpc_stream_cbs srv_watch_stream_cbs;

/* The store's applied revision is now `revision` (called after every
 * committed batch that changed it). Feeds synced watchers. */
void srv_watch_hub_notify(struct srv_watch_hub *hub, int64_t revision);

/* Called periodically (e.g. every 100 ms) with a monotonic clock in ms:
 * progress notifications and catch-up work for unsynced watchers. */
void srv_watch_hub_tick(struct srv_watch_hub *hub, uint64_t now_ms);

void srv_watch_hub_stats(const struct srv_watch_hub *hub, struct srv_watch_stats *out);

#endif
