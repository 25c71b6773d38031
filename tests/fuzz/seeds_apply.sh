#!/usr/bin/env bash
# Regenerates the seed corpus of fuzz_apply from the text-format requests
# below (one per line) with protoc --encode. Run from the repository root.
set -eu
out=tests/fuzz/corpus_apply
mkdir -p "$out"
i=0
while IFS= read -r line; do
	[ -z "$line" ] && continue
	printf '%s\n' "$line" | protoc -I. --encode=cairnpb.InternalRequest proto/internal.proto \
		>"$out/seed$(printf %02d $i)"
	i=$((i + 1))
done <<'SEEDS'
id: 1 put { key: "a" value: "1" prev_kv: true }
id: 2 put { key: "a" ignore_value: true ignore_lease: true }
id: 3 put { key: "n" value: "v" lease: 7 }
id: 4 delete_range { key: "a" range_end: "c" prev_kv: true }
id: 5 delete_range { key: "\000" range_end: "\000" }
id: 6 txn { compare { key: "a" target: VALUE value: "v2" } success { request_put { key: "b" value: "x" } } success { request_range { key: "a" range_end: "z" limit: 2 sort_order: DESCEND } } failure { request_delete_range { key: "c" } } }
id: 7 txn { compare { key: "foo" range_end: "fop" target: MOD result: GREATER mod_revision: 2 } success { request_txn { compare { key: "b" version: 0 } success { request_put { key: "q" value: "1" } } failure { request_put { key: "q" value: "2" } } } } success { request_delete_range { key: "z" } } }
id: 8 compaction { revision: 5 }
id: 9 lease_grant { TTL: 30 ID: 99 }
id: 10 lease_revoke { ID: 7 }
id: 11 alarm { action: ACTIVATE memberID: 2 alarm: NOSPACE }
id: 12 alarm { action: GET }
id: 13 lease_extend_ms: 500
SEEDS
