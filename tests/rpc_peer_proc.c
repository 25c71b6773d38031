/* rpc_peer_proc.c — one member's peer net in a process of its own, for
 * tests/test_rpc_peer_proc.sh (two processes on loopback).
 *
 *   rpc_peer_proc send|echo SELF_ID SELF_PORT PEER_ID PEER_PORT N
 *
 * "send" sends N numbered messages to the peer (pacing itself when its
 * 256-message queue is full) and exits 0 once all N have come back, in order. "echo"
 * sends every message it receives back to its sender and exits 0 once it
 * has echoed N and they have been acknowledged; its queue holds N, since
 * nothing paces the echoes (raft would retransmit what a full queue drops;
 * this test wants every message). Either exits 1 on a wrong
 * message or after 30 s. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cairn_error.h"
#include "rpc/peer.h"

static struct rpc_peer_net *net;
static bool sender;
static uint64_t peer_id, n_total, n_sent, n_got;
static int exit_code = 1;
static uv_timer_t pace, deadline;

static void closed(void *arg)
{
	(void)arg;
	uv_close((uv_handle_t *)&pace, NULL);
	uv_close((uv_handle_t *)&deadline, NULL);
}

static void finish(int code)
{
	exit_code = code;
	uv_timer_stop(&pace);
	uv_timer_stop(&deadline);
	rpc_peer_net_close(net, closed, NULL);
}

static void on_message(void *ud, uint64_t from, const uint8_t *msg, size_t len)
{
	(void)ud;
	uint64_t seq;
	if (from != peer_id || len != 8 + 32) {
		fprintf(stderr, "bad message from %" PRIu64 " (%zu bytes)\n", from, len);
		finish(1);
		return;
	}
	memcpy(&seq, msg, 8);
	if (seq != n_got + 1) {
		fprintf(stderr, "expected %" PRIu64 ", got %" PRIu64 "\n", n_got + 1, seq);
		finish(1);
		return;
	}
	n_got++;
	if (sender) {
		if (n_got == n_total)
			finish(0);
	} else if (rpc_peer_net_send(net, from, msg, len) != 0) {
		fprintf(stderr, "echo %" PRIu64 " refused\n", seq);
		finish(1);
	}
}

static void pace_cb(uv_timer_t *t)
{
	(void)t;
	if (!sender) {
		struct rpc_peer_status st;
		if (n_got == n_total && rpc_peer_net_peer_status(net, peer_id, &st) == 0 &&
		    st.queued_msgs == 0)
			finish(0);
		return;
	}
	while (n_sent < n_total) {
		uint8_t buf[8 + 32];
		uint64_t seq = n_sent + 1;
		memcpy(buf, &seq, 8);
		memset(buf + 8, (int)(seq & 0xff), 32);
		int rv = rpc_peer_net_send(net, peer_id, buf, sizeof(buf));
		if (rv == CAIRN_EAGAIN)
			return; /* the queue is full: next tick */
		if (rv != 0) {
			fprintf(stderr, "send: %s\n", cairn_strerror(rv));
			finish(1);
			return;
		}
		n_sent++;
	}
}

static void deadline_cb(uv_timer_t *t)
{
	(void)t;
	fprintf(stderr, "timed out: sent %" PRIu64 ", got %" PRIu64 " of %" PRIu64 "\n", n_sent,
	        n_got, n_total);
	finish(1);
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s send|echo SELF_ID SELF_PORT PEER_ID PEER_PORT N\n",
		        argv[0]);
		return 2;
	}
	sender = strcmp(argv[1], "send") == 0;
	uint64_t self = strtoull(argv[2], NULL, 10);
	peer_id = strtoull(argv[4], NULL, 10);
	n_total = strtoull(argv[6], NULL, 10);
	char url[64], peer_url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%s", argv[3]);
	snprintf(peer_url, sizeof(peer_url), "http://127.0.0.1:%s", argv[5]);
	uv_loop_t *loop = uv_default_loop();
	struct rpc_peer_config cfg = {
	    .self_id = self, .cluster_id = 0xca1, .seed = self, .max_queue_msgs = 0};
	cfg.max_queue_msgs = sender ? 256 : n_total;
	struct rpc_peer_cbs cbs = {.on_message = on_message};
	int rv = rpc_peer_net_new(loop, &cfg, &cbs, NULL, &net);
	if (rv == 0)
		rv = rpc_peer_net_listen(net, url, NULL);
	if (rv == 0)
		rv = rpc_peer_net_set_peer(net, peer_id, peer_url);
	if (rv != 0) {
		fprintf(stderr, "start: %s\n", cairn_strerror(rv));
		return 1;
	}
	uv_timer_init(loop, &pace);
	uv_timer_start(&pace, pace_cb, 1, 1);
	uv_timer_init(loop, &deadline);
	uv_timer_start(&deadline, deadline_cb, 30000, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	return exit_code;
}
