#!/usr/bin/env bash
# Experiment 1 in figures: how many bytes the sender gets out before the
# stage-7 server stalls, and how long after the sender dies a client that
# waited through the stall gets its reply. Uses port 8041 and python3.
# Run from anywhere: bash tools/measure-experiment.sh
set -eu
cd "$(dirname "$0")/.."
cargo build -q -p stage07 -p tools
./target/debug/mkdata --force ${TMPDIR:-/tmp}/xps-huge_file.dat 200M 2>/dev/null
./target/debug/stage07 --ports 8041 > /tmp/measure-server.log &
server=$!
sleep 0.3
./target/debug/sender --port 8041 < ${TMPDIR:-/tmp}/xps-huge_file.dat 2> /tmp/measure-sender.err &
sender=$!
sleep 4
python3 - "$sender" <<'PY'
import os, signal, socket, sys, time
s = socket.create_connection(("127.0.0.1", 8041)); s.sendall(b"ping\n"); s.settimeout(2)
try: s.recv(5); print("reply during stall: FAIL")
except socket.timeout: print("no reply during 2 s stall: ok")
s.settimeout(10); t = time.monotonic(); os.kill(int(sys.argv[1]), signal.SIGTERM)
reply = s.recv(5); print(f"reply {reply!r} {1000*(time.monotonic()-t):.1f} ms after the sender was killed")
PY
grep stalled /tmp/measure-sender.err | tail -1
kill -INT $server; wait $server; echo "server exit status $?"
