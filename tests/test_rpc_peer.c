/* test_rpc_peer.c — the peer transport (rpc/peer.h): three (or four) peer
 * nets on one loop over real loopback sockets. All-to-all delivery in
 * order; a peer down at first gets its queue once it starts; a peer closed
 * and restarted is reconnected; the bounded queue refuses with CAIRN_EAGAIN
 * and memory stays flat while a peer is down; a 50 MB snapshot arrives
 * byte-identical while small messages keep flowing; snapshots cancelled or
 * refused; a member of another cluster is refused; garbage on the peer port
 * harms nothing. Every test ends with all nets closed (ASan: leak-free). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "rpc/peer.h"
#include "rpc/rpc.h"

#define CLUSTER     0xc1u
#define NNODES      5 /* ids 1..4 used; 4 is the foreign member */
#define FAKE_MEMBER 3 /* the id raw streams claim when node 3 is not up */

struct node {
	struct rpc_peer_net *net;
	uint64_t id;
	int port;
	char url[64];
	bool up;
	uint64_t got[NNODES];      /* messages from each member */
	uint64_t last_seq[NNODES]; /* sequence number of the last one */
	bool out_of_order;
	int snaps;
	char snap_dest[512];
	char snap_meta[64];
	int actives, inactives;
};

static uv_loop_t loop;
static struct node nodes[NNODES];
static int close_pending;
static bool close_in_callback; /* the receiving node closes its net */
static void net_closed(void *arg);
static void close_from_callback(struct node *n)
{
	if (!close_in_callback || !n->up)
		return;
	close_pending++;
	assert_int_equal(rpc_peer_net_close(n->net, net_closed, NULL), 0);
	n->up = false;
}
static char tmpdir[256];
static uint64_t seqs[NNODES][NNODES]; /* next sequence number from -> to */

/* ---- helpers ---- */

static void on_message(void *ud, uint64_t from, const uint8_t *msg, size_t len)
{
	struct node *n = ud;
	assert_true(from >= 1 && from < NNODES);
	if (from == FAKE_MEMBER && !nodes[FAKE_MEMBER].up) { /* raw streams send anything */
		n->got[from]++;
		return;
	}
	assert_true(len >= 8);
	uint64_t seq;
	memcpy(&seq, msg, 8);
	for (size_t i = 8; i < len; i++)
		assert_int_equal(msg[i], (uint8_t)(seq + i));
	if (n->got[from] > 0 && seq <= n->last_seq[from])
		n->out_of_order = true;
	n->last_seq[from] = seq;
	n->got[from]++;
	close_from_callback(n);
}

static void on_snapshot(void *ud, uint64_t from, const uint8_t *meta, size_t meta_len,
                        const char *path)
{
	struct node *n = ud;
	(void)from;
	assert_true(strstr(path, "cairn-snap-") != NULL);
	snprintf(n->snap_dest, sizeof(n->snap_dest), "%s/recv-%llu-%d", tmpdir,
	         (unsigned long long)n->id, n->snaps);
	assert_int_equal(rename(path, n->snap_dest), 0);
	assert_true(meta_len < sizeof(n->snap_meta));
	memcpy(n->snap_meta, meta, meta_len);
	n->snap_meta[meta_len] = '\0';
	n->snaps++;
	close_from_callback(n);
}

static void on_active(void *ud, uint64_t id, bool active)
{
	struct node *n = ud;
	(void)id;
	if (active)
		n->actives++;
	else
		n->inactives++;
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until pred() or `ms` pass; returns pred(). */
static bool run_until(bool (*pred)(void), uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, tick, 2, 2);
	uv_update_time(&loop);
	uint64_t end = uv_now(&loop) + ms;
	while ((pred == NULL || !pred()) && uv_now(&loop) < end)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return pred != NULL && pred();
}

static void run_for(uint64_t ms)
{
	run_until(NULL, ms);
}

static void node_start_cfg(uint64_t id, uint64_t cluster, int port, struct rpc_peer_config *cfg)
{
	struct node *n = &nodes[id];
	memset(n, 0, sizeof(*n));
	n->id = id;
	cfg->self_id = id;
	cfg->cluster_id = cluster;
	cfg->seed = id * 7919;
	cfg->snap_dir = tmpdir;
	struct rpc_peer_cbs cbs = {on_message, on_snapshot, on_active};
	assert_int_equal(rpc_peer_net_new(&loop, cfg, &cbs, n, &n->net), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_listen(n->net, url, &n->port), 0);
	snprintf(n->url, sizeof(n->url), "http://127.0.0.1:%d", n->port);
	n->up = true;
}

static void node_start(uint64_t id, int port)
{
	struct rpc_peer_config cfg = {0};
	node_start_cfg(id, CLUSTER, port, &cfg);
}

static void net_closed(void *arg)
{
	(void)arg;
	close_pending--;
}
static bool all_closed(void)
{
	return close_pending == 0;
}

static void node_stop(uint64_t id)
{
	struct node *n = &nodes[id];
	if (!n->up)
		return;
	close_pending++;
	assert_int_equal(rpc_peer_net_close(n->net, net_closed, NULL), 0);
	assert_int_equal(rpc_peer_net_close(n->net, net_closed, NULL), CAIRN_EBUSY);
	assert_true(run_until(all_closed, 5000));
	n->up = false;
	n->net = NULL;
}

/* A port nothing listens on: bound, not listening, so connects are refused
 * until the handle is closed and somebody listens there. */
static uv_tcp_t reserved;
static int reserve_port(void)
{
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(&loop, &reserved);
	assert_int_equal(uv_tcp_bind(&reserved, (const struct sockaddr *)&a, 0), 0);
	int len = sizeof(a);
	uv_tcp_getsockname(&reserved, (struct sockaddr *)&a, &len);
	return ntohs(a.sin_port);
}
static void release_port(void)
{
	uv_close((uv_handle_t *)&reserved, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static void link_all(const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (i != j)
				assert_int_equal(rpc_peer_net_set_peer(nodes[ids[i]].net, ids[j],
				                                       nodes[ids[j]].url),
				                 0);
}

/* Members 1 and 2, up and peered both ways. */
static void start_pair(void)
{
	const uint64_t ids[] = {1, 2};
	node_start(1, 0);
	node_start(2, 0);
	link_all(ids, 2);
}

/* Sends one message with the next sequence number; size varies with it. */
static int send_seq(uint64_t from, uint64_t to, size_t extra)
{
	uint8_t buf[8 + 4096];
	uint64_t seq = ++seqs[from][to];
	size_t len = 8 + (extra != (size_t)-1 ? extra : seq % 300);
	assert_true(len <= sizeof(buf));
	memcpy(buf, &seq, 8);
	for (size_t i = 8; i < len; i++)
		buf[i] = (uint8_t)(seq + i);
	int rv = rpc_peer_net_send(nodes[from].net, to, buf, len);
	if (rv != 0)
		seqs[from][to]--; /* not sent: reuse the number */
	return rv;
}

static struct rpc_peer_status status(uint64_t at, uint64_t of)
{
	struct rpc_peer_status st;
	assert_int_equal(rpc_peer_net_peer_status(nodes[at].net, of, &st), 0);
	return st;
}

static int setup(void **state)
{
	(void)state;
	memset(nodes, 0, sizeof(nodes));
	memset(seqs, 0, sizeof(seqs));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cairn-peer-test-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	assert_int_equal(uv_loop_init(&loop), 0);
	return 0;
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	char p[600];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* Temp files left in the snapshot directory. */
static int count_tmp_files(void)
{
	DIR *d = opendir(tmpdir);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "cairn-snap-", 11) == 0)
			n++;
	closedir(d);
	return n;
}

static void flow_stop(void);

static int teardown(void **state)
{
	(void)state;
	flow_stop(); /* a failed test may leave it running */
	for (uint64_t id = 1; id < NNODES; id++)
		node_stop(id);
	run_for(20);
	assert_int_equal(count_tmp_files(), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	rm_tree(tmpdir);
	return 0;
}

/* ---- all-to-all ---- */

#define A2A_N 2000
static bool a2a_done(void)
{
	for (uint64_t i = 1; i <= 3; i++)
		for (uint64_t j = 1; j <= 3; j++)
			if (i != j && nodes[i].got[j] < A2A_N)
				return false;
	return true;
}

static void test_all_to_all(void **state)
{
	(void)state;
	const uint64_t ids[] = {1, 2, 3};
	for (int i = 0; i < 3; i++)
		node_start(ids[i], 0);
	link_all(ids, 3);
	/* Sent before any connection is up: they wait in the queues. */
	for (int k = 0; k < A2A_N; k++)
		for (uint64_t i = 1; i <= 3; i++)
			for (uint64_t j = 1; j <= 3; j++)
				if (i != j)
					assert_int_equal(send_seq(i, j, (size_t)-1), 0);
	assert_true(run_until(a2a_done, 20000));
	run_for(20); /* let the last acks arrive */
	for (uint64_t i = 1; i <= 3; i++) {
		assert_false(nodes[i].out_of_order);
		assert_int_equal(nodes[i].actives, 2);
		for (uint64_t j = 1; j <= 3; j++) {
			if (i == j)
				continue;
			assert_int_equal(nodes[i].got[j], A2A_N);
			assert_int_equal(nodes[i].last_seq[j], A2A_N);
			struct rpc_peer_status st = status(i, j);
			assert_true(st.connected);
			assert_int_equal(st.msgs_sent, A2A_N);
			assert_int_equal(st.msgs_received, A2A_N);
			assert_int_equal(st.msgs_dropped, 0);
			assert_int_equal(st.queued_msgs, 0);
			assert_int_equal(st.queued_bytes, 0);
			assert_int_equal(st.connects, 1);
		}
	}
	assert_int_equal(rpc_peer_net_send(nodes[1].net, 9, "x", 1), CAIRN_ENOTFOUND);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 1, nodes[2].url), CAIRN_EINVAL);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 5, "https://x:1"), CAIRN_EADDR);
	assert_int_equal(rpc_peer_net_remove_peer(nodes[1].net, 9), CAIRN_ENOTFOUND);
	struct rpc_peer_status st;
	assert_int_equal(rpc_peer_net_peer_status(nodes[1].net, 9, &st), CAIRN_ENOTFOUND);
}

/* ---- down at first, then started ---- */

static bool two_got_100(void)
{
	return nodes[2].got[1] >= 100;
}

static void test_down_at_first(void **state)
{
	(void)state;
	node_start(1, 0);
	int port = reserve_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, url), 0);
	for (int k = 0; k < 100; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	run_for(300); /* several refused attempts, with backoff */
	struct rpc_peer_status st = status(1, 2);
	assert_false(st.connected);
	assert_int_equal(st.queued_msgs, 100);
	assert_int_equal(st.last_error, CAIRN_ECONNRESET);
	assert_int_equal(st.connects, 0);
	release_port();
	node_start(2, port);
	assert_true(run_until(two_got_100, 5000));
	assert_int_equal(nodes[2].got[1], 100);
	assert_int_equal(nodes[2].last_seq[1], 100);
	assert_false(nodes[2].out_of_order);
	/* Node 2 does not know node 1 as a peer: counted as unknown. */
	struct rpc_peer_net_stats ns;
	rpc_peer_net_get_stats(nodes[2].net, &ns);
	assert_int_equal(ns.msgs_from_unknown, 100);
}

/* ---- closed and restarted ---- */

static uint64_t want;
static bool two_got_want(void)
{
	return nodes[2].up && nodes[2].got[1] >= want;
}
static bool one_sees_two_down(void)
{
	return !status(1, 2).connected;
}
static bool one_sees_two_up(void)
{
	return status(1, 2).connected;
}

static void test_restart(void **state)
{
	(void)state;
	start_pair();
	for (int k = 0; k < 10; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	want = 10;
	assert_true(run_until(two_got_want, 5000));
	int port = nodes[2].port;
	node_stop(2);
	assert_true(run_until(one_sees_two_down, 5000));
	assert_int_equal(nodes[1].inactives, 1);
	/* Queued while the peer is away. */
	for (int k = 0; k < 10; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	assert_int_equal(status(1, 2).queued_msgs, 10);
	run_for(200);
	node_start(2, port);
	want = 10;
	assert_true(run_until(two_got_want, 5000));
	assert_false(nodes[2].out_of_order);
	assert_int_equal(nodes[2].last_seq[1], 20);
	/* And new messages after the reconnect. */
	for (int k = 0; k < 10; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	want = 20;
	assert_true(run_until(two_got_want, 5000));
	assert_int_equal(nodes[2].last_seq[1], 30);
	assert_true(run_until(one_sees_two_up, 1000));
	assert_int_equal(status(1, 2).connects, 2);
	/* A new URL for a peer: reconnects there, queue kept. */
	node_stop(2);
	node_start(2, 0);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, nodes[2].url), 0);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, nodes[2].url), 0);
	for (int k = 0; k < 5; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	want = 5;
	assert_true(run_until(two_got_want, 5000));
	assert_int_equal(nodes[2].last_seq[1], 35);
}

/* ---- bounded queue ---- */

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	fclose(f);
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_bounded_queue(void **state)
{
	(void)state;
	struct rpc_peer_config cfg = {.max_queue_bytes = 64 * 1024, .max_queue_msgs = 1000};
	node_start_cfg(1, CLUSTER, 0, &cfg);
	int port = reserve_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, url), 0);
	int ok = 0, again = 0;
	for (int k = 0; k < 200; k++) {
		int rv = send_seq(1, 2, 1024 - 8);
		if (rv == 0)
			ok++;
		else if (rv == CAIRN_EAGAIN)
			again++;
		else
			fail_msg("send: %d", rv);
	}
	assert_int_equal(ok, 64);
	assert_int_equal(again, 136);
	struct rpc_peer_status st = status(1, 2);
	assert_int_equal(st.queued_bytes, 64 * 1024);
	assert_int_equal(st.queued_msgs, 64);
	assert_int_equal(st.msgs_dropped, 136);
	/* 100 MB offered to a dead peer: memory stays flat. */
	long before = rss_kib();
	for (int k = 0; k < 100000; k++)
		assert_int_equal(send_seq(1, 2, 1024 - 8), CAIRN_EAGAIN);
	run_for(100);
	long grown = rss_kib() - before;
	assert_true(grown < 16 * 1024);
	assert_int_equal(status(1, 2).queued_bytes, 64 * 1024);
	/* Too large for the net at all. */
	uint8_t *big = calloc(1, 17u << 20);
	assert_int_equal(rpc_peer_net_send(nodes[1].net, 2, big, 17u << 20), CAIRN_ETOOBIG);
	free(big);
	/* Once the peer is up the queue drains and sends succeed again. */
	release_port();
	node_start(2, port);
	want = 64;
	assert_true(run_until(two_got_want, 5000));
	run_for(50);
	assert_int_equal(status(1, 2).queued_bytes, 0);
	assert_int_equal(send_seq(1, 2, 1024 - 8), 0);
	want = 65;
	assert_true(run_until(two_got_want, 5000));
	assert_false(nodes[2].out_of_order);
}

/* The message-count bound, with tiny messages. */
static void test_bounded_queue_msgs(void **state)
{
	(void)state;
	struct rpc_peer_config cfg = {.max_queue_msgs = 10};
	node_start_cfg(1, CLUSTER, 0, &cfg);
	int port = reserve_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, url), 0);
	for (int k = 0; k < 10; k++)
		assert_int_equal(send_seq(1, 2, 0), 0);
	assert_int_equal(send_seq(1, 2, 0), CAIRN_EAGAIN);
	assert_int_equal(status(1, 2).queued_msgs, 10);
	release_port();
	/* Removing the peer discards its queue. */
	assert_int_equal(rpc_peer_net_remove_peer(nodes[1].net, 2), 0);
	assert_int_equal(rpc_peer_net_send(nodes[1].net, 2, "x", 1), CAIRN_ENOTFOUND);
}

/* ---- snapshots ---- */

#define SNAP_SIZE (50u * 1024 * 1024)

static int snap_status = 1;
static int snap_done_calls;
static void snap_done(void *arg, int st)
{
	(void)arg;
	snap_status = st;
	snap_done_calls++;
}
static bool snap_finished(void)
{
	return snap_done_calls > 0;
}

static uv_timer_t flow_timer;
static bool flow_on;

static void flow_stop(void)
{
	if (flow_on)
		uv_close((uv_handle_t *)&flow_timer, NULL);
	flow_on = false;
}
static void flow_cb(uv_timer_t *t)
{
	(void)t;
	for (int k = 0; k < 5; k++)
		send_seq(1, 2, (size_t)-1);
}

static void src_path(char *buf, size_t size)
{
	snprintf(buf, size, "%s/src.snap", tmpdir);
}

/* Starts a snapshot of `fd` with `meta`; snap_done() records its end. */
static void snap_start(uint64_t from, uint64_t to, const char *meta, int fd)
{
	snap_done_calls = 0;
	assert_int_equal(rpc_peer_net_send_snapshot(nodes[from].net, to, meta, strlen(meta), fd,
	                                            snap_done, NULL),
	                 0);
}

static int make_file(const char *path, size_t size, uint64_t seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint64_t *buf = malloc(1 << 20);
	uint64_t x = seed;
	for (size_t off = 0; off < size; off += 1 << 20) {
		size_t n = size - off < (1u << 20) ? size - off : 1u << 20;
		for (size_t i = 0; i < (n + 7) / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
	}
	free(buf);
	return fd;
}

static void assert_same_file(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	assert_non_null(fa);
	assert_non_null(fb);
	static uint8_t ba[1 << 16], bb[1 << 16];
	size_t total = 0;
	for (;;) {
		size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);
		assert_int_equal(na, nb);
		assert_memory_equal(ba, bb, na);
		total += na;
		if (na == 0)
			break;
	}
	fclose(fa);
	fclose(fb);
	assert_int_equal(total, SNAP_SIZE);
}

static void test_snapshot(void **state)
{
	(void)state;
	start_pair();
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, SNAP_SIZE, 42);
	uint64_t t0 = uv_hrtime();
	snap_start(1, 2, "meta-7", fd);
	uv_timer_init(&loop, &flow_timer);
	uv_timer_start(&flow_timer, flow_cb, 1, 1);
	flow_on = true;
	assert_true(run_until(snap_finished, 45000));
	uint64_t during = nodes[2].got[1];
	flow_stop();
	fprintf(stderr, "snapshot: %u MB in %llu ms, %llu messages meanwhile\n", SNAP_SIZE >> 20,
	        (unsigned long long)((uv_hrtime() - t0) / 1000000), (unsigned long long)during);
	close(fd);
	assert_int_equal(snap_status, 0);
	assert_int_equal(snap_done_calls, 1);
	assert_int_equal(nodes[2].snaps, 1);
	assert_string_equal(nodes[2].snap_meta, "meta-7");
	assert_same_file(src, nodes[2].snap_dest);
	/* Raft messages kept flowing while the snapshot was on the wire. */
	assert_true(during >= 20);
	assert_false(nodes[2].out_of_order);
	assert_int_equal(status(1, 2).snaps_sent, 1);
	struct rpc_peer_net_stats ns;
	rpc_peer_net_get_stats(nodes[2].net, &ns);
	assert_int_equal(ns.snaps_received, 1);
	run_for(20);
	assert_int_equal(snap_done_calls, 1);
	assert_int_equal(rpc_peer_net_send_snapshot(nodes[1].net, 2, "m", 1, -1, snap_done, NULL),
	                 CAIRN_EINVAL);
	assert_int_equal(rpc_peer_net_send_snapshot(nodes[1].net, 7, "m", 1, 0, snap_done, NULL),
	                 CAIRN_ENOTFOUND);
}

/* Removing the peer cancels its snapshot; the receiver drops the partial
 * file. A snapshot to a dead port fails with CAIRN_ECONNRESET. */
static void test_snapshot_cancel(void **state)
{
	(void)state;
	start_pair();
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, 8u << 20, 7);
	snap_start(1, 2, "x", fd);
	run_for(5);
	assert_int_equal(rpc_peer_net_remove_peer(nodes[1].net, 2), 0);
	assert_true(run_until(snap_finished, 5000));
	assert_int_equal(snap_status, CAIRN_ECANCELED);
	run_for(100);
	assert_int_equal(count_tmp_files(), 0);
	assert_int_equal(nodes[2].snaps, 0);

	int port = reserve_port();
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 3, url), 0);
	snap_start(1, 3, "x", fd);
	assert_true(run_until(snap_finished, 5000));
	assert_int_equal(snap_status, CAIRN_ECONNRESET);
	assert_int_equal(status(1, 3).snaps_failed, 1);
	release_port();

	/* Closing the net cancels snapshots in flight. */
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, nodes[2].url), 0);
	snap_start(1, 2, "x", fd);
	run_for(5);
	node_stop(1);
	assert_int_equal(snap_done_calls, 1);
	assert_int_equal(snap_status, CAIRN_ECANCELED);
	close(fd);
	run_for(100);
	assert_int_equal(count_tmp_files(), 0);
}

/* ---- another cluster ---- */

static bool one_refused(void)
{
	struct rpc_peer_net_stats ns;
	rpc_peer_net_get_stats(nodes[1].net, &ns);
	return ns.hellos_refused >= 2;
}

static void test_wrong_cluster(void **state)
{
	(void)state;
	node_start(1, 0);
	struct rpc_peer_config cfg = {0};
	node_start_cfg(4, 0xbad, 0, &cfg);
	assert_int_equal(rpc_peer_net_set_peer(nodes[4].net, 1, nodes[1].url), 0);
	assert_int_equal(send_seq(4, 1, 10), 0);
	assert_true(run_until(one_refused, 5000));
	struct rpc_peer_status st = status(4, 1);
	assert_false(st.connected);
	assert_int_equal(st.last_error, CAIRN_ECONNRESET);
	assert_non_null(strstr(st.last_error_msg, "cluster ID mismatch"));
	assert_int_equal(st.queued_msgs, 1);
	assert_int_equal(nodes[1].got[4], 0);
	/* Its snapshots are refused too. */
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, 4096, 1);
	snap_start(4, 1, "x", fd);
	assert_true(run_until(snap_finished, 5000));
	assert_int_equal(snap_status, CAIRN_ECONNRESET);
	close(fd);
	assert_int_equal(nodes[1].snaps, 0);
}

/* ---- peers that never answer ---- */

/* The wire format of rpc/peer.c, written out by hand for fake peers. */
static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static struct rpc_peer_status watched;
static uint64_t watched_id;
static bool watched_timed_out(void)
{
	watched = status(1, watched_id);
	return watched.last_error == CAIRN_ETIMEOUT && watched.connects >= 2;
}
static bool dial_timed_out(void)
{
	watched = status(1, watched_id);
	return watched.last_error == CAIRN_ETIMEOUT;
}

static void never_accept(uv_stream_t *server, int status)
{
	(void)server;
	(void)status;
}

/* A port that accepts TCP (the kernel's backlog) but never speaks: the
 * dial times out, the messages stay queued, attempts go on. */
static void test_dial_timeout(void **state)
{
	(void)state;
	struct rpc_peer_config cfg = {.dial_timeout_ms = 100};
	node_start_cfg(1, CLUSTER, 0, &cfg);
	int port = reserve_port();
	assert_int_equal(uv_listen((uv_stream_t *)&reserved, 16, never_accept), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, url), 0);
	assert_int_equal(send_seq(1, 2, 0), 0);
	watched_id = 2;
	assert_true(run_until(dial_timed_out, 3000));
	assert_false(watched.connected);
	assert_int_equal(watched.queued_msgs, 1);
	assert_int_equal(watched.connects, 0);
	assert_int_equal(rpc_peer_net_remove_peer(nodes[1].net, 2), 0);
	release_port();
}

/* A fake member that answers the hello and then never acknowledges: the
 * sender gives up on the connection after ack_timeout_ms and re-dials. */
static void mute_open(struct rpc_stream *st, void *ud)
{
	(void)st;
	(void)ud;
}
static uint64_t mute_bytes;
static void mute_message(struct rpc_stream *st, const uint8_t *m, size_t len)
{
	if (len > 0 && m[0] == 'H') {
		uint8_t ack[18] = {'A', 1};
		be64(ack + 2, CLUSTER);
		be64(ack + 10, 2);
		assert_int_equal(rpc_stream_send(st, ack, sizeof(ack)), 0);
		mute_bytes = 0;
	} else if (len > 0 && m[0] == 'C') {
		/* Snapshot chunks are acknowledged, but 'D' never comes. */
		uint8_t ack[17] = {'K'};
		mute_bytes += len - 1;
		be64(ack + 1, 1);
		be64(ack + 9, mute_bytes);
		assert_int_equal(rpc_stream_send(st, ack, sizeof(ack)), 0);
	}
}

static void mute_close(struct rpc_stream *st, int reason)
{
	(void)st;
	(void)reason;
}
static int srv_closed;
static void srv_close_cb(void *arg)
{
	(void)arg;
	srv_closed = 1;
}
static bool srv_is_closed(void)
{
	return srv_closed != 0;
}

static void test_ack_timeout(void **state)
{
	(void)state;
	struct rpc_peer_config cfg = {.ack_timeout_ms = 200};
	node_start_cfg(1, CLUSTER, 0, &cfg);
	struct rpc_server *srv;
	assert_int_equal(rpc_server_new(&loop, NULL, &srv), 0);
	struct rpc_stream_cbs cbs = {
	    .on_open = mute_open, .on_message = mute_message, .on_close = mute_close};
	assert_int_equal(rpc_server_register_stream(srv, "/cairnpeer.Peer/Stream", &cbs, NULL), 0);
	assert_int_equal(rpc_server_register_stream(srv, "/cairnpeer.Peer/Snapshot", &cbs, NULL),
	                 0);
	int port;
	assert_int_equal(rpc_server_listen(srv, "http://127.0.0.1:0", &port), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, url), 0);
	for (int k = 0; k < 3; k++)
		assert_int_equal(send_seq(1, 2, 0), 0);
	watched_id = 2;
	assert_true(run_until(watched_timed_out, 5000));
	assert_true(watched.msgs_dropped >= 3);
	assert_int_equal(nodes[1].actives, watched.connects);
	assert_true(nodes[1].inactives >= 1);
	/* A snapshot whose receiver never confirms fails after 10 x 200 ms. */
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, 100000, 5);
	uint64_t t0 = uv_hrtime();
	snap_start(1, 2, "m", fd);
	assert_true(run_until(snap_finished, 10000));
	close(fd);
	assert_int_equal(snap_status, CAIRN_ECONNRESET);
	assert_true((uv_hrtime() - t0) / 1000000 >= 2000);
	srv_closed = 0;
	rpc_server_close(srv, 0, srv_close_cb, NULL);
	assert_true(run_until(srv_is_closed, 5000));
}

/* The owner may call after a long synchronous step (the loop's cached time
 * is then stale): neither the dial timeout nor the ack watchdog may count
 * that time. */
static bool snap_and_two_up(void)
{
	return snap_done_calls > 0 && status(1, 2).connected;
}

static void test_stale_loop_time(void **state)
{
	(void)state;
	struct rpc_peer_config cfg = {.dial_timeout_ms = 300, .ack_timeout_ms = 300};
	node_start_cfg(1, CLUSTER, 0, &cfg);
	node_start(2, 0);
	run_for(10);
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, 4096, 3);
	usleep(500 * 1000);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, nodes[2].url), 0);
	snap_start(1, 2, "s", fd);
	assert_true(run_until(snap_and_two_up, 5000));
	close(fd);
	assert_int_equal(snap_status, 0);
	struct rpc_peer_status st = status(1, 2);
	assert_int_equal(st.connects, 1);
	assert_int_equal(st.last_error, 0);
}

/* ---- garbage ---- */

static int raw_connect(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", port, &a);
	assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	return s;
}

static int raw_sock;
static char raw_buf[512];
static size_t raw_len;
static bool raw_reply(void)
{
	ssize_t n = recv(raw_sock, raw_buf + raw_len, sizeof(raw_buf) - 1 - raw_len, MSG_DONTWAIT);
	if (n > 0)
		raw_len += (size_t)n;
	raw_buf[raw_len] = '\0';
	return strstr(raw_buf, "\r\n\r\nok") != NULL || n == 0;
}

static int bad_status = -1;
static void bad_on_close(struct rpc_client_stream *s, int st, const char *msg)
{
	(void)s;
	(void)msg;
	bad_status = st;
}
static bool bad_closed(void)
{
	return bad_status >= 0;
}
static int cli_closed;
static void cli_close_cb(void *arg)
{
	(void)arg;
	cli_closed = 1;
}
static bool cli_is_closed(void)
{
	return cli_closed != 0;
}
static void close_client(struct rpc_client *c)
{
	cli_closed = 0;
	rpc_client_close(c, cli_close_cb, NULL);
	assert_true(run_until(cli_is_closed, 5000));
}

/* Opens a peer stream with a raw client and sends `a` then `b` (b may be
 * NULL); returns the grpc-status the stream ends with. */
static int raw_stream(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
	struct rpc_client *c;
	assert_int_equal(rpc_client_new(&loop, nodes[1].url, NULL, &c), 0);
	struct rpc_client_stream_cbs cbs = {.on_close = bad_on_close};
	struct rpc_client_stream *s;
	bad_status = -1;
	assert_int_equal(rpc_client_stream_open(c, path, &cbs, NULL, &s), 0);
	assert_int_equal(rpc_client_stream_send(s, a, alen), 0);
	if (b != NULL)
		assert_int_equal(rpc_client_stream_send(s, b, blen), 0);
	assert_true(run_until(bad_closed, 5000));
	close_client(c);
	return bad_status;
}

static void hello(uint8_t *h, uint64_t cluster, uint64_t from, uint64_t to, uint32_t window)
{
	h[0] = 'H';
	h[1] = 1;
	be64(h + 2, cluster);
	be64(h + 10, from);
	be64(h + 18, to);
	for (int i = 0; i < 4; i++)
		h[26 + i] = (uint8_t)(window >> (24 - 8 * i));
}

/* A member that opens a second message stream (it reconnected while its
 * old connection is half-open here) gets the old one closed. */
static int replaced_status[2];
static void replaced_on_close(struct rpc_client_stream *s, int st, const char *msg)
{
	(void)msg;
	replaced_status[(intptr_t)rpc_client_stream_data(s)] = st;
}
static bool first_replaced(void)
{
	return replaced_status[0] >= 0;
}

static void test_replaced_stream(void **state)
{
	(void)state;
	node_start(1, 0);
	struct rpc_client *c[2];
	struct rpc_client_stream *st[2];
	struct rpc_client_stream_cbs cbs = {.on_close = replaced_on_close};
	uint8_t h[30], msg[9] = {'M', 1, 0, 0, 0, 0, 0, 0, 0};
	hello(h, CLUSTER, 3, 1, 0);
	for (intptr_t i = 0; i < 2; i++) {
		replaced_status[i] = -1;
		assert_int_equal(rpc_client_new(&loop, nodes[1].url, NULL, &c[i]), 0);
		assert_int_equal(
		    rpc_client_stream_open(c[i], "/cairnpeer.Peer/Stream", &cbs, (void *)i, &st[i]),
		    0);
		assert_int_equal(rpc_client_stream_send(st[i], h, sizeof(h)), 0);
		assert_int_equal(rpc_client_stream_send(st[i], msg, sizeof(msg)), 0);
		run_for(50);
	}
	assert_true(run_until(first_replaced, 2000));
	assert_int_equal(replaced_status[0], RPC_ABORTED);
	assert_int_equal(replaced_status[1], -1);
	assert_int_equal(nodes[1].got[3], 2);
	for (int i = 0; i < 2; i++) {
		close_client(c[i]);
	}
}

static void test_garbage(void **state)
{
	(void)state;
	start_pair();
	uint8_t junk[4096];
	uint64_t x = 99;
	for (size_t i = 0; i < sizeof(junk); i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		junk[i] = (uint8_t)(x >> 56);
	}
	junk[0] = 'Z'; /* no message type */
	/* Raw bytes, an HTTP/2 preface followed by junk, and a truncated
	 * preface, on the peer port. */
	int s1 = raw_connect(nodes[1].port);
	assert_int_equal(write(s1, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	int s2 = raw_connect(nodes[1].port);
	const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	assert_int_equal(write(s2, pre, sizeof(pre) - 1), (ssize_t)(sizeof(pre) - 1));
	assert_int_equal(write(s2, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	int s3 = raw_connect(nodes[1].port);
	assert_int_equal(write(s3, pre, 10), 10);
	run_for(100);
	close(s1);
	close(s2);
	close(s3);
	/* HTTP/1.1 /health on the same port. */
	raw_sock = raw_connect(nodes[1].port);
	raw_len = 0;
	const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(write(raw_sock, get, sizeof(get) - 1), (ssize_t)(sizeof(get) - 1));
	assert_true(run_until(raw_reply, 5000));
	assert_non_null(strstr(raw_buf, "200"));
	close(raw_sock);
	/* gRPC streams with bad hellos or bad messages after a good hello. */
	uint8_t h[30];
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", junk, 100, NULL, 0),
	                 RPC_FAILED_PRECONDITION);
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", "", 0, NULL, 0),
	                 RPC_FAILED_PRECONDITION);
	hello(h, CLUSTER, 3, 1, 0);
	h[1] = 9;
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", h, 30, NULL, 0),
	                 RPC_FAILED_PRECONDITION);
	hello(h, CLUSTER, 3, 2, 0); /* meant for member 2 */
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", h, 30, NULL, 0),
	                 RPC_FAILED_PRECONDITION);
	hello(h, CLUSTER, 3, 1, 0);
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", h, 30, junk, 50),
	                 RPC_INVALID_ARGUMENT);
	assert_int_equal(raw_stream("/cairnpeer.Peer/Stream", h, 30, "", 0), RPC_INVALID_ARGUMENT);
	hello(h, CLUSTER, 3, 1, 1 << 20);
	assert_int_equal(raw_stream("/cairnpeer.Peer/Snapshot", h, 30, "C123", 4),
	                 RPC_INVALID_ARGUMENT);
	hello(h, CLUSTER, 3, 1, 0x7fffffff); /* absurd window */
	assert_int_equal(raw_stream("/cairnpeer.Peer/Snapshot", h, 30, NULL, 0),
	                 RPC_FAILED_PRECONDITION);
	assert_int_equal(raw_stream("/cairnpeer.Peer/Nope", h, 30, NULL, 0), RPC_UNIMPLEMENTED);
	/* The real peers still talk. */
	for (int k = 0; k < 50; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	want = 50;
	assert_true(run_until(two_got_want, 5000));
	assert_int_equal(nodes[1].got[3], 0);
	struct rpc_peer_net_stats ns;
	rpc_peer_net_get_stats(nodes[1].net, &ns);
	assert_true(ns.hellos_refused >= 5);
}

/* Random sequences of well-typed but wrong messages after a good hello
 * (fixed seed), on both methods, each stream dropped by its client after a
 * moment: nothing crashes, leaks (ASan) or leaves a temp file behind
 * (teardown checks), and the real peers still talk afterwards. */
static void test_random_sequences(void **state)
{
	(void)state;
	start_pair();
	uint64_t seed = 0x5eed;
	static const char types[] = "HAMKSCEDZ";
	uint8_t buf[300];
	for (int round = 0; round < 60; round++) {
		struct rpc_client *c;
		struct rpc_client_stream *st;
		struct rpc_client_stream_cbs cbs = {.on_close = bad_on_close};
		bool snap = round % 2 == 0;
		assert_int_equal(rpc_client_new(&loop, nodes[1].url, NULL, &c), 0);
		assert_int_equal(rpc_client_stream_open(c,
		                                        snap ? "/cairnpeer.Peer/Snapshot"
		                                             : "/cairnpeer.Peer/Stream",
		                                        &cbs, NULL, &st),
		                 0);
		hello(buf, CLUSTER, 3, 1, 1 << 20);
		rpc_client_stream_send(st, buf, 30);
		int n = 1 + (int)(seed % 6);
		for (int k = 0; k < n; k++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			size_t len = (size_t)(seed >> 40) % sizeof(buf);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(seed >> (i % 56));
			if (len > 0)
				buf[0] = (uint8_t)types[(seed >> 20) % (sizeof(types) - 1)];
			if (len > 0 && buf[0] == 'E' && len >= 9)
				len = 9;
			rpc_client_stream_send(st, buf, len);
		}
		run_for(5);
		close_client(c);
	}
	run_for(50);
	for (int k = 0; k < 20; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	want = 20;
	assert_true(run_until(two_got_want, 5000));
}

/* A net closed from inside its own on_message and on_snapshot: no further
 * callback, nothing touched after free (ASan). */
static void test_close_in_callback(void **state)
{
	(void)state;
	start_pair();
	close_in_callback = true;
	close_pending = 0;
	for (int k = 0; k < 100; k++)
		assert_int_equal(send_seq(1, 2, (size_t)-1), 0);
	run_for(20);
	assert_true(run_until(all_closed, 5000));
	assert_int_equal(nodes[2].got[1], 1);
	nodes[2].net = NULL;
	/* Again with a snapshot. */
	node_start(2, 0);
	assert_int_equal(rpc_peer_net_set_peer(nodes[1].net, 2, nodes[2].url), 0);
	char src[300];
	src_path(src, sizeof(src));
	int fd = make_file(src, 3 << 20, 9);
	snap_start(1, 2, "z", fd);
	assert_true(run_until(snap_finished, 10000));
	assert_true(run_until(all_closed, 5000));
	close(fd);
	assert_int_equal(nodes[2].snaps, 1);
	close_in_callback = false;
	nodes[2].net = NULL;
	unlink(nodes[2].snap_dest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_all_to_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_down_at_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounded_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounded_queue_msgs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_cluster, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dial_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ack_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_loop_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replaced_stream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_sequences, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_in_callback, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
