#!/usr/bin/env bash
# Experiment 1 in figures: how many bytes the sender gets out before the
# stage-7 server stalls, and how long after the sender dies a client that
# waited through the stall gets its reply. Needs only bash (5 or newer, with
# its /dev/tcp connections, as Debian and Ubuntu build it); the server takes
# a free port. Exits 1 if the stall or the recovery is not as the book says.
# Run from anywhere: bash tools/measure-experiment.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p stage07 -p tools
bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d)
server="" sender=""
cleanup() {
    [[ -n $sender ]] && kill -KILL "$sender" 2>/dev/null
    [[ -n $server ]] && kill -KILL "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/mkdata" "$work/huge_file.dat" 200M > "$work/mkdata.out" 2>&1 ||
    { cat "$work/mkdata.out" >&2; exit 1; }

"$bin/stage07" --ports 0 > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    grep -q 'Server listening on port' "$work/server.log" && break
    sleep 0.05
done
port=$(sed -n 's/.*Server listening on port \([0-9]*\).*/\1/p' "$work/server.log" | head -1)
[[ -n $port ]] || { echo "stage07 did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

"$bin/sender" --port "$port" < "$work/huge_file.dat" 2> "$work/sender.err" &
sender=$!
# Wait until the sender has reported a stall of two seconds or more.
for _ in $(seq 200); do
    grep -Eq 'stalled for ([2-9]|[1-9][0-9]+) s' "$work/sender.err" && break
    sleep 0.05
done
grep -q 'stalled for' "$work/sender.err" ||
    { echo "the sender never stalled:" >&2; cat "$work/sender.err" >&2; exit 1; }

fail() { echo "$*" >&2; exit 1; }

# The waiting client: bash's /dev/tcp connects it (fd 3), read -N reads the
# reply's exact 5 bytes, newline included, and -t bounds each wait.
exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to port $port"
printf 'ping\n' >&3
if read -r -N 5 -t 2 reply <&3; then
    fail "a reply came during the stall: the server did not block"
elif (($? <= 128)); then # above 128 is the timeout we expect
    fail "the server closed the waiting client's connection during the stall"
elif [[ -n $reply ]]; then
    fail "part of a reply came during the stall: the server did not block"
fi
echo "no reply during a 2 s wait in the stall: as expected"
# EPOCHREALTIME is seconds with six decimals: its digits are microseconds.
start=${EPOCHREALTIME//[!0-9]/}
kill -TERM "$sender"
read -r -N 5 -t 10 reply <&3 || true
end=${EPOCHREALTIME//[!0-9]/}
[[ $reply == $'gnip\n' ]] ||
    fail "after the sender died the reply was $(printf %q "$reply"), not \$'gnip\\n'"
us=$((end - start))
printf 'reply "gnip\\n" %d.%d ms after the sender was killed\n' $((us / 1000)) $((us % 1000 / 100))
exec 3<&-
sender=""
echo "sender before it was killed: $(grep 'stalled for' "$work/sender.err" | tail -1)"
kill -INT "$server"
status=0
wait "$server" || status=$?
server=""
echo "server exit status $status"
[[ $status -eq 0 ]]
