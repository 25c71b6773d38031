#!/usr/bin/env bash
# Checks the layering of DESIGN.md §1 by reading #include lines.
#
#   common/ ─► libc only (every layer may include common/)
#   store/  ─► LMDB, common            (never uv.h, raft/, rpc/, server/, protobuf)
#   raft/   ─► libc, common            (core: never uv.h, lmdb.h, protobuf headers,
#                                       nor the headers of the two parts below)
#      raft/*lmdb*  (durable log storage)  may also include lmdb.h
#      raft/*codec* (raft message codec)   may also include proto/raft.pb-c.h
#
# Includes are written from the repository root ("store/store.h"): a path
# with a ".." segment is refused, since it could name any layer unseen.
#   rpc/    ─► libuv, nghttp2, proto, common  (never store/, raft/, server/, lmdb.h)
#   server/ ─► rpc, raft, store, proto, common, libuv, LMDB (never tools/)
#   tools/  ─► rpc (client side), proto, common; offline inspection may read
#              store/ and raft/ storage; never server/
#
# With an argument (a directory) it checks that tree instead of the repo: the
# test suite runs it on a planted violation to show it can fail.
set -u
shopt -s extglob
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
bad=0
violation() {
	echo "layering: $1 includes $2 ($3)"
	bad=1
}
check() { # dir, file-filter (glob applied to basename), forbidden regex, reason
	local dir=$1 pat=$2 re=$3 why=$4 f inc
	[ -d "$dir" ] || return 0
	# One grep over the whole directory: "file:#include <x>" lines.
	while IFS=: read -r f inc; do
		case "${f##*/}" in $pat) ;; *) continue ;; esac
		[[ $inc =~ [\<\"]([^\>\"]+)[\>\"] ]] && inc=${BASH_REMATCH[1]}
		if [[ $inc =~ (^|/)\.\.(/|$) ]]; then
			violation "$f" "$inc" 'write includes from the repository root, without ..'
			continue
		fi
		[[ $inc =~ $re ]] && violation "$f" "$inc" "$why"
	done < <(grep -rHE --include='*.[ch]' '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^>"]+[>"]' "$dir" | sort)
}
check common '*' '^(store|raft|rpc|server|tools|proto)/|^uv\.h$|^lmdb\.h$|pb-c\.h$' 'common is the bottom layer'
check store '*' '^(raft|rpc|server|tools|proto)/|^uv\.h$|pb-c\.h$|^nghttp2/' 'store knows nothing of raft or the network'
check raft '*' '^(store|rpc|server|tools)/|^uv\.h$|^nghttp2/' 'raft is below the network and the store'
check raft '!(*lmdb*)' '^lmdb\.h$|^raft/[^/]*lmdb[^/]*\.h$' 'only raft storage may use LMDB'
check raft '!(*codec*)' 'pb-c\.h$|^protobuf-c/|^raft/[^/]*codec[^/]*\.h$' 'only the raft codec may use protobuf'
check rpc '*' '^(store|raft|server|tools)/|^lmdb\.h$' 'rpc knows nothing of what methods mean'
check server '*' '^tools/' 'server does not depend on tools'
check tools '*' '^server/' 'tools talk to a server over rpc'
if [ $bad -eq 0 ]; then
	echo "layering: ok"
	if [ -z "${1:-}" ]; then
		# Self-test: each planted wrong arrow, alone in a tree, must be caught.
		n=0
		while IFS='|' read -r file line; do
			tmp=$(mktemp -d)
			mkdir -p "$tmp/${file%/*}"
			printf '%s\n' "$line" > "$tmp/$file"
			if "$0" "$tmp" >/dev/null; then
				echo "layering: self-test failed: planted $file: $line not caught"
				bad=1
			fi
			rm -rf "$tmp"
			n=$((n + 1))
		done <<-'EOF'
			store/x.c|#include <uv.h>
			store/x.c|#include "../raft/raft.h"
			raft/raft.c|#include "raft/raft_lmdb.h"
			raft/raft.c|#  include "raft/raft_codec.h"
			rpc/x.c|#include "store/store.h"
			tools/x.c|#include "server/member.h"
		EOF
		[ $bad -eq 0 ] && echo "layering: self-test ok ($n planted violations caught)"
	fi
fi
exit $bad
