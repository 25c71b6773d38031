/*
 * fuzz_handlers.c — libFuzzer target for every gRPC method cairnd serves,
 * through its real handlers: KV (Range, Put, DeleteRange, Txn, Compact),
 * Lease (Grant, Revoke, TimeToLive, Leases, the KeepAlive stream),
 * Maintenance (Status, Alarm, Defragment, Hash, HashKV, MoveLeader, the
 * Snapshot stream), Cluster (MemberList/Add/Remove/Update/Promote) and the
 * Watch stream.
 *
 * THE SEAM
 * Each input gets a whole single-voter member (srv_member_start) on a fresh
 * data directory, with everything cairnd runs: the raft core, the storage
 * thread and its batches, the store, the watch hub and the rpc server with
 * the real services registered. Requests come from an rpc client on the
 * same libuv loop over a unix socket, so every one goes through HTTP/2,
 * gRPC framing, the handler's decode and checks, raft, the apply on the
 * storage thread and the answer, as a client's would. A member per input
 * (not one for the whole run) keeps inputs independent: a crash replays
 * from its input alone, the store does not grow across the run, and
 * srv_member_close must free everything, which LeakSanitizer checks. That
 * costs about 8 ms per input under ASan (half of it LMDB's env open and
 * close), so this target runs some 60 inputs/s where the decode-only ones
 * run thousands. Calling the handlers with fake rpc calls and a fake
 * storage thread would be faster, but would skip what a handler's bugs
 * come from: calls answered after raft and the storage thread, cancelled
 * meanwhile, streams closed by either side while a handler still holds
 * them, watch fan-out paced by rpc's pulls.
 *
 * What the member would do on its own is driven instead, so an input is
 * deterministic:
 *   - Time: the heartbeat is 1000 s, so the tick timer never fires; the
 *     input's tick op calls srv_member_tick. Lease TTLs and request
 *     deadlines (from the election timeout) are far beyond an input, so
 *     nothing expires by the clock; periodic watch progress is off.
 *   - Randomness: raft's seed is fixed (srv_config.raft_seed) and so are
 *     request ids (next_req, which cairnd takes from the clock).
 *   - Threads: after each op the loop runs until the storage thread and
 *     libuv's workers (Snapshot) are idle and no bytes moved for a few
 *     turns (settle), so the order of events does not depend on timing.
 *   - Peers: the peer network is closed after start. A MemberAdd names
 *     arbitrary URLs; the fuzzer must not dial them. Raft messages to
 *     added members are dropped, as if they were down: enough to reach
 *     quorum loss, step-down and the follower paths with a few ticks.
 *
 * Not reached: peer traffic (forwarded keep-alives, relayed MemberPromote,
 * snapshots to and from peers), a stream over rpc's 256 KiB high-water mark
 * (on_writable: the client always reads and an input is a few KiB), lease
 * expiry by the clock, periodic watch progress notifications.
 *
 * INPUT: a sequence of ops, each an op byte o (kind o & 7, argument o >> 3)
 * and its operands; lengths are u16 little-endian, cut to what remains.
 *   kind 0-2  unary call of method (arg % 23) with len + bytes; settle
 *   kind 3    the same without settling (pipelined with the next op)
 *   kind 4    open a stream on method (arg % 23) in the first free slot
 *   kind 5    send len + bytes on slot (arg & 3)
 *   kind 6    half-close slot (arg & 3), or cancel it when arg & 4
 *   kind 7    one heartbeat tick when (arg & 4) == 0, else an HTTP/1.1
 *             GET of /metrics, /health, /readyz or /version (arg & 3)
 * Methods 0-19 are unary, 20-22 streaming (see METHODS); either op may use
 * either kind of path (a unary call to a stream path is a stream that
 * sends one message and half-closes).
 *
 *   make fuzz-handlers FUZZ_SECONDS=600
 *   FUZZ_HANDLERS_TRACE=1 build-fuzz/fuzz_handlers INPUT   (each op and answer)
 *   seeds: tests/fuzz/seeds_handlers (tests/fuzz/seeds_handlers.py)
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/member.h"
#include "tests/fuzz/fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const METHODS[] = {
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberPromote",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Maintenance/Snapshot",
};
#define N_METHODS (sizeof(METHODS) / sizeof(METHODS[0]))
#define N_SLOTS   4

static uv_loop_t loop;
static struct srv_config cfg;
static struct srv_log lg;
static struct srv_member member;
static struct rpc_client *client;
static struct rpc_client_stream *slots[N_SLOTS];
static char base_dir[64];
static uint64_t events; /* client-side completions and messages: progress */
static bool trace;      /* FUZZ_HANDLERS_TRACE set: each answer on stderr */

/* ------------------------------------------------------------ setup */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

static void rmtree(const char *path)
{
	if (access(path, F_OK) == 0 && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		FUZZ_FAIL("fuzz_handlers", "cannot remove %s", path);
}

static void cleanup_dir(void)
{
	rmtree(base_dir);
}

/* The configuration every input's member starts from. Limits are small so
 * that an input of a few KiB reaches them: fragmented watch responses and
 * "request too large" above 4 KiB, the NOSPACE alarm above 1 MiB of store,
 * "too many watchers" above 8 per stream, raft log compaction every 8
 * applied entries. */
static void setup(void)
{
	snprintf(base_dir, sizeof(base_dir), "/tmp/cairn-fuzzh-%d", (int)getpid());
	rmtree(base_dir);
	if (mkdir(base_dir, 0700))
		FUZZ_FAIL("fuzz_handlers", "mkdir %s: %s", base_dir, strerror(errno));
	atexit(cleanup_dir);
	char data_dir[128];
	snprintf(data_dir, sizeof(data_dir), "--data-dir=%s/data", base_dir);
	char *argv[] = {
	    "cairnd",
	    "--name=f",
	    data_dir,
	    "--listen-client-urls=http://127.0.0.1:1",
	    "--advertise-client-urls=http://127.0.0.1:2379",
	    "--initial-advertise-peer-urls=http://127.0.0.1:2380",
	    "--heartbeat-interval=1000000",
	    "--election-timeout=10000000",
	    "--quota-backend-bytes=32768",
	    "--max-request-bytes=4096",
	    "--max-watchers-per-stream=8",
	    "--snapshot-count=8",
	    "--experimental-snapshot-catchup-entries=2",
	    "--experimental-watch-progress-notify-interval=0",
	    "--unsafe-no-fsync",
	};
	char err[512];
	if (srv_config_parse(&cfg, (int)(sizeof(argv) / sizeof(argv[0])), argv, err, sizeof(err)))
		FUZZ_FAIL("fuzz_handlers", "config: %s", err);
	/* The config takes only http URLs; rpc also listens on unix sockets,
	 * which need no port and reach nothing outside this process. */
	free(cfg.listen_client_urls.url[0]);
	size_t n = strlen(base_dir) + 32;
	cfg.listen_client_urls.url[0] = malloc(n);
	snprintf(cfg.listen_client_urls.url[0], n, "unix://%s/client.sock", base_dir);
	for (int i = 0; i < cfg.listen_peer_urls.n; i++)
		free(cfg.listen_peer_urls.url[i]);
	cfg.listen_peer_urls.n = 0;
	cfg.raft_seed = 1;
	trace = getenv("FUZZ_HANDLERS_TRACE") != NULL;
	int devnull = open("/dev/null", O_WRONLY);
	if (devnull < 0)
		FUZZ_FAIL("fuzz_handlers", "open /dev/null");
	srv_log_init(&lg, SRV_LOG_DEBUG, SRV_LOG_TEXT, devnull);
}

/* ------------------------------------------------------------ the loop */

static uint64_t progress(void)
{
	struct rpc_server_stats st;
	rpc_server_get_stats(member.rpc, &st);
	return st.bytes_sent + st.bytes_received + events;
}

/* Runs the loop until nothing is left to happen by itself: no batch on the
 * storage thread, no libuv request in flight (writes, Snapshot's worker)
 * and three turns in a row that moved no byte. Blocking turns only while
 * something is certain to wake the loop. */
static void settle(void)
{
	uint64_t last = progress();
	int quiet = 0;
	for (int turns = 0; quiet < 3; turns++) {
		if (turns > 1000000)
			FUZZ_FAIL("fuzz_handlers", "the loop never settles");
		bool busy = member.inflight || loop.active_reqs.count > 0;
		uv_run(&loop, busy ? UV_RUN_ONCE : UV_RUN_NOWAIT);
		uint64_t now = progress();
		quiet = (!busy && now == last) ? quiet + 1 : 0;
		last = now;
	}
}

/* ------------------------------------------------------------ the client */

static void unary_done(int status, const char *message, const uint8_t *resp, size_t len, void *arg)
{
	(void)resp;
	events++;
	if (trace)
		fprintf(stderr, "  %s: %s %s (%zu bytes)\n", (const char *)arg,
		        rpc_status_name(status), message, len);
}

static int slot_of(const struct rpc_client_stream *s)
{
	for (int i = 0; i < N_SLOTS; i++)
		if (slots[i] == s)
			return i;
	return -1;
}

static void stream_message(struct rpc_client_stream *s, const uint8_t *msg, size_t len)
{
	(void)msg;
	events++;
	if (trace)
		fprintf(stderr, "  slot %d: message (%zu bytes)\n", slot_of(s), len);
}

static void stream_close(struct rpc_client_stream *s, int status, const char *message)
{
	events++;
	int i = slot_of(s);
	if (trace)
		fprintf(stderr, "  slot %d: closed %s %s\n", i, rpc_status_name(status), message);
	if (i >= 0)
		slots[i] = NULL;
}

static void client_closed(void *arg)
{
	*(bool *)arg = true;
}

/* ------------------------------------------------------------ HTTP */

/* A plain HTTP/1.1 GET on the client port (what curl and health checks
 * send), read until the server closes: its answer comes from the member's
 * HTTP handler (/metrics renders every method's counters). */
static void http_get(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/client.sock", base_dir);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		FUZZ_FAIL("fuzz_handlers", "connect %s: %s", sa.sun_path, strerror(errno));
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: f\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		FUZZ_FAIL("fuzz_handlers", "write: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
	for (int turns = 0;; turns++) {
		if (turns > 1000000)
			FUZZ_FAIL("fuzz_handlers", "GET %s never ends", path);
		uv_run(&loop, UV_RUN_NOWAIT);
		char buf[4097];
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		if (r > 0)
			buf[r] = '\0';
		if (trace && r > 0 && !strncmp(buf, "HTTP/", 5))
			fprintf(stderr, "  %.*s\n", (int)strcspn(buf, "\r\n"), buf);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			break;
	}
	close(fd);
}

/* ------------------------------------------------------------ one input */

static size_t get_len(struct fuzz_in *in)
{
	uint8_t b[2] = {0, 0};
	fuzz_get(in, b, in->n < 2 ? in->n : 2);
	size_t len = (size_t)b[0] | (size_t)b[1] << 8;
	return len < in->n ? len : in->n;
}

static void run_op(struct fuzz_in *in)
{
	uint8_t o;
	fuzz_get(in, &o, 1);
	unsigned arg = o >> 3;
	struct rpc_client_stream *s = slots[arg & 3];
	switch (o & 7) {
	case 0:
	case 1:
	case 2:
	case 3: {
		size_t len = get_len(in);
		const char *path = METHODS[arg % N_METHODS];
		if (trace)
			fprintf(stderr, "call %s%s\n", path, (o & 7) == 3 ? " (no wait)" : "");
		if (rpc_client_call(client, path, in->p, len, 0, unary_done, (void *)path))
			FUZZ_FAIL("fuzz_handlers", "rpc_client_call refused");
		in->p += len;
		in->n -= len;
		if ((o & 7) == 3)
			return;
		break;
	}
	case 4: {
		int i = 0;
		while (i < N_SLOTS && slots[i])
			i++;
		if (i == N_SLOTS)
			return;
		static const struct rpc_client_stream_cbs cbs = {.on_message = stream_message,
		                                                 .on_close = stream_close};
		if (trace)
			fprintf(stderr, "open %s in slot %d\n", METHODS[arg % N_METHODS], i);
		if (rpc_client_stream_open(client, METHODS[arg % N_METHODS], &cbs, NULL, &slots[i]))
			FUZZ_FAIL("fuzz_handlers", "rpc_client_stream_open refused");
		break;
	}
	case 5: {
		size_t len = get_len(in);
		if (trace)
			fprintf(stderr, "send %zu bytes on slot %u%s\n", len, arg & 3,
			        s ? "" : " (empty)");
		if (s)
			rpc_client_stream_send(s, in->p, len);
		in->p += len;
		in->n -= len;
		break;
	}
	case 6:
		if (trace)
			fprintf(stderr, "%s slot %u\n", (arg & 4) ? "cancel" : "half-close",
			        arg & 3);
		if (s && (arg & 4))
			rpc_client_stream_cancel(s);
		else if (s)
			rpc_client_stream_half_close(s);
		break;
	case 7:
		if (arg & 4) {
			static const char *const paths[] = {"/metrics", "/health", "/readyz",
			                                    "/version"};
			if (trace)
				fprintf(stderr, "GET %s\n", paths[arg & 3]);
			http_get(paths[arg & 3]);
			break;
		}
		if (trace)
			fprintf(stderr, "tick (role %s, term %llu)\n", raft_role_name(member.role),
			        (unsigned long long)member.term);
		srv_member_tick(&member);
		break;
	}
	settle();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/client.sock", base_dir);
	unlink(sock);
	uv_loop_init(&loop);
	int rv = srv_member_start(&member, &loop, &cfg, &lg);
	if (rv)
		FUZZ_FAIL("fuzz_handlers", "member start: %s", cairn_strerror(rv));
	member.next_req = 1 << 8;
	srv_cluster_stop(&member);
	settle();
	if (member.role != RAFT_LEADER)
		FUZZ_FAIL("fuzz_handlers", "the single voter did not lead");
	if (rpc_client_new(&loop, cfg.listen_client_urls.url[0], NULL, &client))
		FUZZ_FAIL("fuzz_handlers", "rpc_client_new");

	struct fuzz_in in = {data, size};
	while (in.n > 0)
		run_op(&in);
	settle();

	/* The client goes first (streams and calls left open are cancelled on
	 * the server as when a connection drops), then the member stops as on
	 * SIGTERM, failing what still waits for raft. */
	bool closed = false;
	rpc_client_close(client, client_closed, &closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	client = NULL;
	memset(slots, 0, sizeof(slots));
	settle();
	srv_member_stop(&member);
	/* As in cairnd, where the stop ends the running loop: take the
	 * uv_stop it made, or srv_member_close's run would return at once. */
	uv_run(&loop, UV_RUN_NOWAIT);
	srv_member_close(&member);
	if (uv_loop_close(&loop))
		FUZZ_FAIL("fuzz_handlers", "handles left open on the loop");
	char data_dir[128];
	snprintf(data_dir, sizeof(data_dir), "%s/data", base_dir);
	rmtree(data_dir);
	return 0;
}
