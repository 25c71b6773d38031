#!/usr/bin/env bash
# Two processes, each with a peer net, on loopback: the sender starts first
# (the echo process is not listening yet: queued, then reconnect with
# backoff), sends 5000 numbered messages through a 256-message queue, and
# the echo process sends each back; both check order and exit 0.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
bin=$BUILD/tests/bin/rpc_peer_proc
read -r p1 p2 < <(/usr/bin/python3 -c '
import socket
a = socket.socket(); a.bind(("127.0.0.1", 0))
b = socket.socket(); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
"$bin" send 1 "$p1" 2 "$p2" 5000 &
sender=$!
sleep 0.3
"$bin" echo 2 "$p2" 1 "$p1" 5000 &
echoer=$!
trap 'kill $sender $echoer 2>/dev/null' EXIT
wait $sender
rs=$?
wait $echoer
re=$?
echo "sender exit $rs, echo exit $re"
[ $rs -eq 0 ] && [ $re -eq 0 ]
