#!/usr/bin/env bash
# Starts a 3-member cairn cluster on this machine (loopback ports
# 2379/2380, 22379/22380, 32379/32380) with data under ./cluster-data.
# Stop it with: pkill -f 'cairnd --name m[123]'
set -eu
cd "$(dirname "$0")/../.."
bin=${CAIRND:-build/cairnd}
ic="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
for i in 1 2 3; do
	case $i in 1) c=2379 p=2380 ;; 2) c=22379 p=22380 ;; 3) c=32379 p=32380 ;; esac
	mkdir -p cluster-data
	"$bin" --name m$i --data-dir cluster-data/m$i \
		--listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
		--listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
		--initial-cluster "$ic" --initial-cluster-state new >cluster-data/m$i.log 2>&1 &
	echo "m$i: pid $! client http://127.0.0.1:$c peer http://127.0.0.1:$p log cluster-data/m$i.log"
done
