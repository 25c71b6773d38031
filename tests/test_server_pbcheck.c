/* test_server_pbcheck.c — srv_pb_check against the words of etcd's generated
 * Unmarshal. Every case with a text was sent to a real etcd (3.4.23, whose
 * generated code agrees with 3.5's on all of them) and its grpc-message
 * copied here without the "grpc: error unmarshalling request: " prefix;
 * the two marked 3.5 are read from 3.5's generated code, since 3.4's panics
 * on them (its end offset wraps around unchecked). Then: what protobuf-c
 * packs always passes, and random bytes through every request type stay in
 * bounds (seeded; the seed is printed on failure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cairn_error.h"
#include "proto/rpc.pb-c.h"
#include "server/pbcheck.h"

struct pb_case {
	const ProtobufCMessageDescriptor *desc;
	const char *hex;
	const char *want; /* NULL: accepted */
};

#define EOF_ "unexpected EOF"

static const struct pb_case cases[] = {
    {&etcdserverpb__range_request__descriptor, "", NULL},
    {&etcdserverpb__range_request__descriptor, "0a", EOF_},
    {&etcdserverpb__range_request__descriptor, "0a05ab", EOF_},
    {&etcdserverpb__range_request__descriptor, "0801", "proto: wrong wireType = 0 for field Key"},
    {&etcdserverpb__range_request__descriptor, "0f", "proto: wrong wireType = 7 for field Key"},
    {&etcdserverpb__range_request__descriptor, "0001",
     "proto: RangeRequest: illegal tag 0 (wire type 0)"},
    {&etcdserverpb__range_request__descriptor, "0c",
     "proto: RangeRequest: wiretype end group for non-group"},
    {&etcdserverpb__range_request__descriptor, "7e", "proto: illegal wireType 6"},
    {&etcdserverpb__range_request__descriptor, "18ffffffffffffffffffff01",
     "proto: integer overflow"},
    {&etcdserverpb__range_request__descriptor, "0affffffffffffffffff01",
     "proto: negative length found during unmarshaling"},
    {&etcdserverpb__range_request__descriptor, "a206056162", EOF_},
    /* The tag's bits above 32 are dropped: field 1, wire type 0. */
    {&etcdserverpb__range_request__descriptor, "88808080800200",
     "proto: wrong wireType = 0 for field Key"},
    /* "illegal tag" prints the whole tag as its wire type. */
    {&etcdserverpb__range_request__descriptor, "80808080800200",
     "proto: RangeRequest: illegal tag 0 (wire type 68719476736)"},
    {&etcdserverpb__range_request__descriptor, "80808080808080808001",
     "proto: RangeRequest: illegal tag 0 (wire type 9223372036854775808)"},
    /* 3.5: a length that wraps the end offset around. */
    {&etcdserverpb__range_request__descriptor, "0affffffffffffffff7f",
     "proto: negative length found during unmarshaling"},
    {&etcdserverpb__range_request__descriptor, "a206ffffffffffffffff7f",
     "proto: negative length found during unmarshaling"},
    /* Unknown fields: fixed sizes past the end, skipped groups. */
    {&etcdserverpb__range_request__descriptor, "a1060102", EOF_},
    {&etcdserverpb__range_request__descriptor, "a5060102030405",
     "proto: RangeRequest: illegal tag 0 (wire type 5)"},
    {&etcdserverpb__range_request__descriptor, "a306", EOF_},
    {&etcdserverpb__range_request__descriptor, "a306a406", NULL},
    {&etcdserverpb__status_request__descriptor, "14",
     "proto: StatusRequest: wiretype end group for non-group"},
    {&etcdserverpb__status_request__descriptor, "0b13140c", NULL},
    {&etcdserverpb__status_request__descriptor, "0b1414",
     "proto: StatusRequest: wiretype end group for non-group"},
    {&etcdserverpb__defragment_request__descriptor, "0b0c", NULL},
    {&etcdserverpb__defragment_request__descriptor, "0b08", EOF_},
    /* Embedded messages: their errors come up unchanged. */
    {&etcdserverpb__txn_request__descriptor, "12020801",
     "proto: wrong wireType = 0 for field RequestRange"},
    {&etcdserverpb__txn_request__descriptor, "12022205", EOF_},
    {&etcdserverpb__txn_request__descriptor, "120422021201", EOF_},
    {&etcdserverpb__txn_request__descriptor, "0a038204000a023a05", EOF_},
    {&etcdserverpb__put_request__descriptor, "120561", EOF_},
    {&etcdserverpb__compaction_request__descriptor, "100108", EOF_},
    /* Go's names of fields. */
    {&etcdserverpb__member_add_request__descriptor, "0801",
     "proto: wrong wireType = 0 for field PeerURLs"},
    {&etcdserverpb__member_remove_request__descriptor, "0a00",
     "proto: wrong wireType = 2 for field ID"},
    {&etcdserverpb__move_leader_request__descriptor, "0a00",
     "proto: wrong wireType = 2 for field TargetID"},
    {&etcdserverpb__alarm_request__descriptor, "1200",
     "proto: wrong wireType = 2 for field MemberID"},
    {&etcdserverpb__lease_grant_request__descriptor, "0a00",
     "proto: wrong wireType = 2 for field TTL"},
    {&etcdserverpb__lease_revoke_request__descriptor, "0900000000000000",
     "proto: wrong wireType = 1 for field ID"},
    {&etcdserverpb__lease_checkpoint__descriptor, "1200",
     "proto: wrong wireType = 2 for field Remaining_TTL"},
    /* Packed repeated enum: wire types 0 and 2 only; an element may run
     * past the packed length while it stays inside the message. */
    {&etcdserverpb__watch_request__descriptor, "0a022900",
     "proto: wrong wireType = 1 for field Filters"},
    {&etcdserverpb__watch_request__descriptor, "0a032a0180", EOF_},
    {&etcdserverpb__watch_request__descriptor, "0a032a0280", EOF_},
    {&etcdserverpb__watch_request__descriptor, "0a042a018001", NULL},
    {&etcdserverpb__watch_request__descriptor, "0a04280128 01", NULL},
    {&etcdserverpb__watch_request__descriptor, "12020880", EOF_},
};

static size_t unhex(const char *hex, uint8_t *out)
{
	size_t n = 0;
	for (const char *p = hex; p[0] != '\0';) {
		if (p[0] == ' ') {
			p++;
			continue;
		}
		unsigned v;
		assert_int_equal(sscanf(p, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		p += 2;
	}
	return n;
}

static void test_etcd_words(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[64];
		char why[256];
		size_t n = unhex(cases[i].hex, buf);
		int rc = srv_pb_check(cases[i].desc, buf, n, why, sizeof(why));
		if (cases[i].want == NULL ? rc != 0
		                          : rc != CAIRN_EPROTO || strcmp(why, cases[i].want))
			fail_msg("%s %s: got %d \"%s\", want \"%s\"", cases[i].desc->short_name,
			         cases[i].hex, rc, rc ? why : "",
			         cases[i].want ? cases[i].want : "ok");
	}
	/* A short buffer gets as much of the text as fits. */
	char why[8];
	assert_int_equal(srv_pb_check(&etcdserverpb__range_request__descriptor,
	                              (const uint8_t *)"\x0f", 1, why, sizeof(why)),
	                 CAIRN_EPROTO);
	assert_string_equal(why, "proto: ");
}

static void test_packed_by_protobuf_c_passes(void **state)
{
	(void)state;
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key.data = (uint8_t *)"k";
	rr.key.len = 1;
	rr.limit = -1;
	rr.revision = INT64_MAX;
	rr.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
	Etcdserverpb__PutRequest pr = ETCDSERVERPB__PUT_REQUEST__INIT;
	pr.key = rr.key;
	pr.lease = INT64_MIN;
	pr.prev_kv = 1;
	Etcdserverpb__RequestOp ops[2] = {ETCDSERVERPB__REQUEST_OP__INIT,
	                                  ETCDSERVERPB__REQUEST_OP__INIT};
	ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	ops[0].request_range = &rr;
	ops[1].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	ops[1].request_put = &pr;
	Etcdserverpb__RequestOp *opp[2] = {&ops[0], &ops[1]};
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.key = rr.key;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
	cmp.mod_revision = 7;
	cmp.range_end = rr.key;
	Etcdserverpb__Compare *cmpp = &cmp;
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	txn.n_compare = 1;
	txn.compare = &cmpp;
	txn.n_success = 2;
	txn.success = opp;
	txn.n_failure = 2;
	txn.failure = opp;
	Etcdserverpb__WatchCreateRequest wc = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	Etcdserverpb__WatchCreateRequest__FilterType filters[2] = {
	    ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT,
	    ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE};
	wc.n_filters = 2;
	wc.filters = filters;
	wc.start_revision = 3;
	Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
	wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	wr.create_request = &wc;
	const ProtobufCMessage *msgs[] = {&rr.base, &pr.base, &txn.base, &wr.base};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		uint8_t buf[512];
		size_t n = protobuf_c_message_pack(msgs[i], buf);
		char why[256];
		assert_true(n < sizeof(buf));
		if (srv_pb_check(msgs[i]->descriptor, buf, n, why, sizeof(why)) != 0)
			fail_msg("%s: %s", msgs[i]->descriptor->short_name, why);
	}
}

static void test_random_bytes_in_bounds(void **state)
{
	(void)state;
	static const ProtobufCMessageDescriptor *const types[] = {
	    &etcdserverpb__range_request__descriptor, &etcdserverpb__txn_request__descriptor,
	    &etcdserverpb__watch_request__descriptor, &etcdserverpb__member_add_request__descriptor,
	    &etcdserverpb__status_request__descriptor};
	const unsigned seed = 20261126;
	srand(seed);
	/* Mostly bytes that look like tags and lengths, so walks go deep. */
	static const uint8_t pool[] = {0x0a, 0x12, 0x22, 0x08, 0x2a, 0x0b, 0x0c, 0x80, 0xff,
	                               0x01, 0x02, 0x05, 0x7f, 0x00, 0x09, 0x0d, 0xa3, 0x06};
	for (int iter = 0; iter < 200000; iter++) {
		size_t n = (size_t)(rand() % 40);
		uint8_t *buf = malloc(n ? n : 1); /* exact size: ASan sees any overread */
		for (size_t i = 0; i < n; i++)
			buf[i] = rand() % 4 ? pool[rand() % sizeof(pool)] : (uint8_t)rand();
		char why[64];
		int rc = srv_pb_check(types[rand() % 5], buf, n, why, sizeof(why));
		if (rc != 0 && rc != CAIRN_EPROTO)
			fail_msg("seed %u iter %d: rc %d", seed, iter, rc);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_etcd_words),
	    cmocka_unit_test(test_packed_by_protobuf_c_passes),
	    cmocka_unit_test(test_random_bytes_in_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
