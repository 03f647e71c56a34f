#!/usr/bin/env bash
# The performance figures of every stage in the stage table, measured with
# xps-bench: msgs/s at 1, 10 and 100 active connections; 100 active with
# 10,000 idle against 100 active alone; system calls per message (strace
# -c); the server's CPU with 100 idle clients; VmRSS per idle connection;
# VmRSS growth over a long run; VmRSS growth while one client sends 1 GiB
# and never reads (xps-flood); and how long each stage takes to exit on
# SIGINT (SIGTERM for a stage with no handler) with 10,000 connections
# open. Prints a Markdown table, then exits
# with status 1, naming them, if any figure missed its target (the table's
# last column; a figure that could not be measured misses it too).
#
# The stages come from the binaries (`xps-check --stages`: number, crate,
# protocol and properties), so a stage added to the table is measured here
# without a change. The targets are the ones stage 7 set; they hold from
# stage 7 on (stage 6 is the baseline they improve on), wherever the table
# gives them a meaning: a stage that spins when idle (idle=spins, stage 8)
# has no target on idle connections, system calls per message or the
# shutdown with 10,000 connections, since its loop wakes for every writable
# socket (it cannot even accept 10,000 idle clients in time); a stage without a graceful shutdown
# (shutdown=none) has no shutdown target. The memory a flood that is never
# read costs has a target (4 MiB, one pipe and change) only where the
# table says memory is bounded and replies are buffered (send=buffers
# memory=bounded: stage 10); stages 8 and 9 queue everything by design,
# and stages 6 and 7 stop reading because they block.
#
# Stages 11-13: through the proxy, to xps-upstream --epoll. A stage whose
# first port is a reverse proxy (proxy=yes in the table) answers nothing
# itself: one echo, `xps-upstream --epoll` (a process of its own, as in
# tools/bench-proxy.sh), is started for the whole run, and each such stage
# gets it as --upstream, so that every figure of the stage is taken through
# the proxy to that echo and back (the echo writes back: xps-bench checks
# the replies as for stage 10). The CPU, memory and system calls are the
# proxy's alone. Each idle client then costs the proxy two connections,
# its own and the upstream's: a proxy stage gets IDLE/2 idle clients, so
# that it holds as many connections as the other stages (the idle rows
# count clients). Stage 7's targets for system calls per message and
# memory per idle connection, set for one connection that echoes, do not
# apply to a proxy (a message crosses two connections; a client costs its
# pipes and session too); the others do.
#
# A stage with a file port (file=yes: stages 12 and 13) has a row more:
# on a fresh server started with --ports 0,0 --public DIR, one client
# reads DIR/sample.txt ($FILE_SIZE of random bytes from mkdata, made once
# per run and read once into the page cache) from the second port to EOF,
# with tools/bench-file.sh's Python client (python3). The row has no
# target; a transfer that does not bring the file's exact size says
# "wrong bytes" and counts as missed, as does one that could not be made.
#
#   bash tools/bench.sh                 everything (about a minute a stage)
#   SECS=2 LONG=10 bash tools/bench.sh  shorter runs
#   STAGES="7 8" bash tools/bench.sh    only these stages
#   SECS=1 LONG=4 IDLE=200 STAGES=7 bash tools/bench.sh
#                                       a quick try of the script itself
#                                       (half a minute; the figures mean little)
#   KEEP=dir bash tools/bench.sh        also keep strace's tables in dir
#   FLOOD=200M bash tools/bench.sh      a smaller flood (stages 8 and 9 take
#                                       that much memory; default 1G)
#   FILE_SIZE=256M bash tools/bench.sh  a smaller file for the file row
#                                       (default 1G; $TMPDIR or /tmp needs
#                                       that much free)
#
# Servers listen on 127.0.0.1 only, on ports the OS picks (--ports 0), so
# they never clash with a server you have running on 8001-8004; so does
# the upstream, on a port the OS picks. Every wait
# is bounded, and every process started here is stopped on exit, even on
# failure or Ctrl+C. Needs strace (apt-get install strace) for the syscall
# rows; without it they say "n/a".
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-3}      # seconds measured per xps-bench run
IDLE=${IDLE:-10000}  # idle connections
LONG=${LONG:-30}     # seconds of the memory-growth run
MSG=${MSG:-64}       # bytes per message
STAGES=${STAGES:-}   # the stage numbers to measure (default: every stage)
FLOOD=${FLOOD:-1G}   # what one client sends without reading, at most
FILE_SIZE=${FILE_SIZE:-1G}  # the file a file port serves (K, M, G: powers of 1024)
TARGETS_FROM=7       # the first stage the targets apply to (see above)

cargo build --release --quiet -p tools
BIN=${CARGO_TARGET_DIR:-target}/release

# The stage table: NUMBERS in order, and for each number its crate and its
# properties (" send=blocks idle=quiet memory=bounded shutdown=graceful
# proxy=no file=no ").
NUMBERS=()
declare -A CRATE PROPS
while read -r number crate _protocol props; do
    if [[ -z $STAGES || " $STAGES " == *" $number "* ]]; then
        NUMBERS+=("$number")
        CRATE[$number]=$crate
        PROPS[$number]=" $props "
    fi
done < <("$BIN/xps-check" --stages)
if ((${#NUMBERS[@]} == 0)); then
    echo "bench.sh: STAGES=\"$STAGES\" names no stage of: $("$BIN/xps-check" --stages | cut -d' ' -f1 | xargs)" >&2
    exit 2
fi
CRATES=()
for number in "${NUMBERS[@]}"; do CRATES+=("${CRATE[$number]}"); done
cargo build --release --quiet "${CRATES[@]/#/--package=}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xps-bench.XXXXXX")

# has NUMBER PROPERTY: true if that stage's row says PROPERTY (idle=spins...).
has() { [[ ${PROPS[$1]} == *" $2 "* ]]; }

# Whether any stage measured is a proxy (it needs the upstream), or has a
# file port (it needs the file).
ANY_PROXY=0 ANY_FILE=0
for number in "${NUMBERS[@]}"; do
    if has "$number" proxy=yes; then ANY_PROXY=1; fi
    if has "$number" file=yes; then ANY_FILE=1; fi
done
if ((ANY_FILE)); then
    FILE_BYTES=$(numfmt --from=iec "$FILE_SIZE" 2>/dev/null) ||
        { echo "bench.sh: FILE_SIZE: not a size: $FILE_SIZE" >&2; exit 2; }
    if ((FILE_BYTES < 1)); then echo "bench.sh: FILE_SIZE: must be at least one byte" >&2; exit 2; fi
fi

note() { echo "bench.sh: $*" >&2; }

# shellcheck source=tools/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
# shellcheck disable=SC2012 # the names in /proc/PID/fd are numbers
fd_count() { ls "/proc/$1/fd" | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
has_fds() { (($(fd_count "$1") >= $2)); }
fds_at_most() { (($(fd_count "$1") <= $2)); }
# ports_known LOG N: true once the server has announced N ports.
ports_known() { (($(grep -c 'Server listening on port' "$1") >= $2)); }

# The fds a server (or the upstream) may need: an active or idle client is
# one connection, and two at a proxy (its own and the upstream's); and a few
# of the server's own.
NEED_FDS=$((IDLE + (ANY_PROXY + 1) * 100 + 64))
# raise_fds: the fd limit of this (sub)shell raised to the hard limit (the
# servers do not raise it themselves), and beyond it to NEED_FDS if that is
# more and this shell may (root with CAP_SYS_RESOURCE).
raise_fds() {
    ulimit -n "$(ulimit -Hn)" || return
    if [[ $(ulimit -n) != unlimited ]] && (($(ulimit -n) < NEED_FDS)); then
        ulimit -n "$NEED_FDS" 2>/dev/null || true
    fi
}
# What the servers get. Where it is short of what a stage needs, its
# figures with $IDLE idle clients say so (see measure).
FD_LIMIT=$(raise_fds && ulimit -n)
if [[ $FD_LIMIT != unlimited ]] && ((FD_LIMIT < NEED_FDS)); then
    why=""
    if ((ANY_PROXY)); then why=" (two a client at a proxy)"; fi
    note "the servers may need $NEED_FDS fds for $IDLE idle clients$why, but their limit is" \
        "$FD_LIMIT (the hard limit, which only root with CAP_SYS_RESOURCE can raise): the idle" \
        "figures may fall short (IDLE=smaller)"
fi

# The upstream of the proxy stages, one for the whole run: an echo in a
# process of its own, on a port the OS picks (as in tools/bench-proxy.sh).
if ((ANY_PROXY)); then
    (raise_fds && exec "$BIN/xps-upstream" --epoll) >"$WORK/upstream.out" 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    wait_for 5 grep -q ' on 127\.0\.0\.1:[0-9]' "$WORK/upstream.out" ||
        { note "xps-upstream did not start:"; cat "$WORK/upstream.out" >&2; exit 1; }
    UPSTREAM=127.0.0.1:$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/upstream.out" | head -1)
    note "upstream of the proxy stages: xps-upstream --epoll on $UPSTREAM"
fi

# The file of the file ports, once for the run, and its client, both as
# tools/bench-file.sh makes them (see bench-lib.sh).
PUBLIC=$WORK/public
if ((ANY_FILE)); then
    make_sample "$PUBLIC/sample.txt" "$FILE_BYTES" FILE_SIZE
    write_reader "$WORK/reader.py"
fi

# start_server NUMBER [PORTS]: starts that stage on ports the OS picks
# (PORTS: 0 by default; 0,0 for a file port too, given --public $PUBLIC)
# with the fd limit raised (raise_fds) and stdout in a file; a proxy stage
# gets --upstream $UPSTREAM. Sets SERVER, PORT (the first port) and
# SERVER_PORTS (every port, in order).
start_server() {
    local crate=${CRATE[$1]} ports=${2:-0}
    local log=$WORK/$crate.log args=(--host 127.0.0.1 --ports "$ports") n
    n=$(tr ',' '\n' <<<"$ports" | wc -l)
    if has "$1" proxy=yes; then
        # A dead upstream would make every figure an error.
        kill -0 "$UPSTREAM_PID" 2>/dev/null || { note "xps-upstream has died:"; cat "$WORK/upstream.out" >&2; exit 1; }
        args+=(--upstream "$UPSTREAM")
    fi
    if ((n > 1)) && has "$1" file=yes; then args+=(--public "$PUBLIC"); fi
    : >"$log"
    (raise_fds && exec env NO_COLOR=1 "$BIN/$crate" "${args[@]}") >>"$log" 2>&1 &
    SERVER=$!
    PIDS+=("$SERVER")
    wait_for 5 ports_known "$log" "$n" || { note "$crate did not start:"; cat "$log" >&2; exit 1; }
    mapfile -t SERVER_PORTS < <(sed -n 's/.*Server listening on port \([0-9]*\).*/\1/p' "$log")
    PORT=${SERVER_PORTS[0]}
    LOG=$log
}

# stop_server SIGNAL: sends it, then SIGKILL if the server is still there
# after 5 s. Sets STOP_MS (how long it took to exit) and STOP_STATUS. (A
# script's background jobs start with SIGINT ignored: a stage with a
# graceful shutdown installs its own handler, one without is stopped with
# SIGTERM.)
stop_server() {
    local watchdog done_pid=""
    sleep 5 &
    watchdog=$!
    PIDS+=("$watchdog")
    local start=$EPOCHREALTIME
    kill "-$1" "$SERVER" 2>/dev/null || true
    STOP_STATUS=0
    wait -n -p done_pid "$SERVER" "$watchdog" || STOP_STATUS=$?
    local end=$EPOCHREALTIME
    if [[ $done_pid != "$SERVER" ]]; then
        kill -KILL "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        STOP_STATUS="killed after 5 s"
    fi
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    STOP_MS=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", 1000 * (b - a) }')
}

# bench ARGS...: one xps-bench run against the current server, expecting
# the replies of stage $STAGE; prints its result line (and keeps the log
# from growing without bound).
bench() {
    local out
    out=$("$BIN/xps-bench" --stage "$STAGE" --port "$PORT" --msg-size "$MSG" "$@" 2>&1) || true
    : >"$LOG"
    grep '^result: ' <<<"$out" || { note "xps-bench $*: no result"; echo "$out" >&2; echo "result: "; }
    local errors; errors=$(field "$(grep '^result: ' <<<"$out")" errors)
    [[ "${errors:-1}" == 0 ]] || note "xps-bench $* reported errors: $(grep 'first error' <<<"$out")"
}

# bench_bg ARGS...: xps-bench in the background, its output in $WORK/bg.out.
bench_bg() {
    "$BIN/xps-bench" --stage "$STAGE" --port "$PORT" --msg-size "$MSG" "$@" >"$WORK/bg.out" 2>&1 &
    BG=$!
    PIDS+=("$BG")
}

# wait_bg SECONDS: waits that long at most for it (its output stays in
# $WORK/bg.out).
wait_bg() {
    timeout "$1" bash -c "while kill -0 $BG 2>/dev/null; do sleep 0.05; done" ||
        kill -KILL "$BG" 2>/dev/null || true
    wait "$BG" 2>/dev/null || true
}

# strace_run NAME CONNS: counts the server's system calls with strace -c -f
# attached while xps-bench runs; prints "total-per-message breakdown".
strace_run() {
    local name=$1 conns=$2 out=$WORK/$1.strace
    if ! command -v strace >/dev/null; then echo "n/a"; return; fi
    strace -c -f -p "$SERVER" -o "$out" 2>/dev/null &
    local tracer=$!
    PIDS+=("$tracer")
    # Attached once the server's TracerPid is set.
    wait_for 5 bash -c "grep -q '^TracerPid:[[:space:]]*[1-9]' /proc/$SERVER/status" ||
        { note "strace did not attach"; echo "n/a"; return; }
    local result; result=$(bench --conns "$conns" --seconds "$SECS")
    kill -INT "$tracer"
    wait_for 5 bash -c "! kill -0 $tracer 2>/dev/null" || kill -KILL "$tracer"
    wait "$tracer" 2>/dev/null || true
    # The server handled every message that got a reply, and at most one
    # more per connection (sent as the run ended).
    local msgs; msgs=$(field "$result" replies_total)
    COUNTER=strace syscall_table "$out" "${msgs:-0}" 2
    echo
    if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$out" "$KEEP/$name.strace"; fi
}

# idle_cpu: the server's CPU (% of a core) over 2 s with 100 idle clients
# connected, each served once first (bash's /dev/tcp: no tool needed).
# Prints the figure, or "n/a (why)".
idle_cpu() {
    local fds=() fd i line t0 c0 t1 c1 why=""
    for ((i = 0; i < 100; i++)); do
        if ! exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; then why="connect failed"; break; fi
        fds+=("$fd")
        # Any reply line will do: what counts is the CPU afterwards.
        printf 'idle %d\n' "$i" >&"$fd"
        if ! read -r -t 5 -u "$fd" line; then why="no reply"; break; fi
    done
    if [[ -z $why ]]; then
        t0=$EPOCHREALTIME c0=$(cpu_ticks "$SERVER")
        sleep 2
        t1=$EPOCHREALTIME c1=$(cpu_ticks "$SERVER")
    fi
    for fd in "${fds[@]}"; do exec {fd}>&-; done
    if [[ -n $why ]]; then echo "n/a ($why)"; return; fi
    awk -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f\n", 100 * c / hz / (t1 - t0) }'
}

# flood NUMBER: on the current (fresh) server, one client sends up to
# $FLOOD and never reads, while xps-flood samples the server's VmRSS; sets
# R[NUMBER,flood] to "GROWTH KiB (how it ended)". (Not run in a $(...): the
# flooder must be in PIDS, to be stopped on the way out.) The server's log,
# a line per chunk it reads, is emptied as it grows: a server that reads
# everything writes as much log.
flood() {
    local s=$1
    R[$s,flood]="n/a"
    "$BIN/xps-flood" --port "$PORT" --pid "$SERVER" --bytes "$FLOOD" --seconds 120 \
        >"$WORK/flood.out" 2>&1 &
    local flooder=$! tries=1300
    PIDS+=("$flooder")
    while kill -0 "$flooder" 2>/dev/null && ((tries-- > 0)); do : >"$LOG"; sleep 0.1; done
    kill -KILL "$flooder" 2>/dev/null || true
    wait "$flooder" 2>/dev/null || true
    : >"$LOG"
    local result; result=$(grep '^result: ' "$WORK/flood.out") ||
        { note "xps-flood: no result"; cat "$WORK/flood.out" >&2; return; }
    local sent; sent=$(awk -v b="$(field "$result" sent)" 'BEGIN { printf "%.1f MiB", b / 1048576 }')
    local how
    case $(field "$result" stop) in
        stalled) how="stalled after $sent" ;;
        bytes) how="read all $sent" ;;
        time) how="read $sent in 120 s" ;;
        *) how="$(field "$result" stop) after $sent" ;;
    esac
    R[$s,flood]="$(field "$result" rss_growth_kib) KiB ($how; $(field "$result" rss_before_kib) -> $(field "$result" rss_peak_kib) KiB)"
}

declare -A R # R[stage number,figure] = value

# file_rate NUMBER: on a fresh server of that stage with its file port
# (--ports 0,0 --public $PUBLIC), one client reads the file to EOF; sets
# R[NUMBER,file] to its MiB/s, or to why there is none.
file_rate() {
    local s=$1 stage=${CRATE[$1]} signal=$2
    if ! command -v python3 >/dev/null; then R[$s,file]="n/a (no python3)"; return; fi
    start_server "$s" 0,0
    # The second port announced serves the file; the line before it says so.
    local port=${SERVER_PORTS[1]:-} out bytes seconds
    if [[ -z $port ]] || ! grep -q "port $port serves sample.txt from " "$LOG"; then
        note "$stage's second port (${port:-none}) does not say it serves sample.txt:"
        cat "$LOG" >&2
        R[$s,file]="n/a (no file port)"
        stop_server "$signal"
        return
    fi
    out=$(timeout 300 python3 "$WORK/reader.py" "$port" "" 2>&1) || true
    : >"$LOG"
    read -r bytes seconds _ <<<"$out" || true
    if [[ $bytes != "$FILE_BYTES" ]]; then
        note "$stage: the file port sent ${bytes:-nothing} bytes of $FILE_BYTES: $out"
        R[$s,file]="wrong bytes (${bytes:-nothing} of $FILE_BYTES)"
    else
        R[$s,file]=$(awk -v b="$bytes" -v t="$seconds" 'BEGIN { printf "%.0f (%.2f s)", b / 1048576 / t, t }')
    fi
    stop_server "$signal"
}

# measure NUMBER: every figure of that stage, into R[NUMBER,...].
measure() {
    local s=$1 stage=${CRATE[$1]} signal=TERM
    if has "$s" shutdown=graceful; then signal=INT; fi
    # At a proxy each client has two connections, its own and the
    # upstream's: it gets half as many idle clients, so that it holds as
    # many connections as the other stages, and the idle figures count
    # clients.
    local per=1 clients="connections" short="" need idle=$IDLE
    if has "$s" proxy=yes; then
        per=2 clients="clients, each with its upstream connection" idle=$((IDLE / 2))
    fi
    need=$((per * (idle + 100) + 64))
    if [[ $FD_LIMIT != unlimited ]] && ((FD_LIMIT < need)); then
        short=" (fd limit $FD_LIMIT, under the $need needed)"
    fi
    STAGE=$s
    note "$stage: starting"
    start_server "$s"
    local base_fds; base_fds=$(fd_count "$SERVER")

    R[$s,idle_cpu]=$(idle_cpu)
    note "$stage: CPU with 100 idle clients: ${R[$s,idle_cpu]}%"

    local conns result
    for conns in 1 10 100; do
        result=$(bench --conns "$conns" --seconds "$SECS")
        R[$s,rate$conns]=$(field "$result" msgs_per_s)
        R[$s,lat$conns]="$(field "$result" p50_us)/$(field "$result" p99_us)"
        note "$stage: $conns active: ${R[$s,rate$conns]} msgs/s"
    done

    # 100 active alone, then with IDLE idle, then alone again: same server,
    # one after the other. The ratio is against the run just before; the run
    # after shows whether the server kept a cost from having had them. The
    # server's CPU share is taken over the first run alone.
    local t0 c0 t1 c1
    t0=$EPOCHREALTIME c0=$(cpu_ticks "$SERVER")
    result=$(bench --conns 100 --seconds "$SECS")
    t1=$EPOCHREALTIME c1=$(cpu_ticks "$SERVER")
    local alone1; alone1=$(field "$result" msgs_per_s)
    R[$s,bench_cpu]=$(field "$result" cpu_pct)
    R[$s,server_cpu]=$(awk -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", 100 * c / hz / (t1 - t0) }')
    R[$s,cpu]="${R[$s,server_cpu]} / ${R[$s,bench_cpu]}"
    result=$(bench --conns 100 --idle "$idle" --seconds "$SECS")
    R[$s,idle_rate]=$(field "$result" msgs_per_s)$short
    R[$s,idle_open]=$(field "$result" idle_open)
    # Let the server close the idle connections before going on.
    wait_for 30 fds_at_most "$SERVER" $((base_fds + 1)) || note "$stage: connections still open"
    result=$(bench --conns 100 --seconds "$SECS")
    R[$s,after]=$(field "$result" msgs_per_s)
    R[$s,ratio]=$(awk -v a="$alone1" -v i="${R[$s,idle_rate]%% *}" \
        'BEGIN { printf "%.2f (%.0f / %.0f)", i / a, i, a }')$short
    note "$stage: 100 active + $idle idle: ratio ${R[$s,ratio]}"

    R[$s,sys1]=$(strace_run "$stage-1" 1)
    R[$s,sys100]=$(strace_run "$stage-100" 100)
    note "$stage: syscalls per message: 1 active ${R[$s,sys1]}; 100 active ${R[$s,sys100]}"

    # Memory growth: VmRSS 2 s into a long run at 100 active, and at its end.
    local rss_a rss_b
    bench_bg --conns 100 --seconds "$LONG"
    sleep 2
    rss_a=$(rss_kib "$SERVER")
    local i
    for ((i = 2; i < LONG - 1; i++)); do sleep 1; : >"$LOG"; done
    rss_b=$(rss_kib "$SERVER")
    wait_bg 15
    R[$s,growth]="$((rss_b - rss_a)) KiB ($rss_a -> $rss_b KiB over $((LONG - 3)) s)"
    : >"$LOG"

    # VmRSS per idle connection, on a fresh server (memory that earlier
    # runs made the allocator keep would hide the cost): before, and with
    # IDLE + 1 connections open.
    stop_server "$signal"
    start_server "$s"
    local rss0 rss1 open
    rss0=$(rss_kib "$SERVER")
    bench_bg --conns 1 --idle "$idle" --seconds 60 --timeout 10
    if wait_for 60 has_fds "$SERVER" $((base_fds + per * (idle + 1))); then
        sleep 0.2
        rss1=$(rss_kib "$SERVER")
        open=$((($(fd_count "$SERVER") - base_fds) / per))
        R[$s,rss_idle]=$(awk -v a="$rss0" -v b="$rss1" -v n="$open" -v what="$clients" \
            'BEGIN { printf "%.0f B (%d -> %d KiB, %d %s)", (b - a) * 1024 / n, a, b, n, what }')
    else
        R[$s,rss_idle]="n/a (only $((($(fd_count "$SERVER") - base_fds) / per)) $clients)$short"
        note "$stage: the idle connections did not all open:"; cat "$WORK/bg.out" >&2
        open=0
    fi

    # Shutdown with those connections open. xps-bench is frozen first, as
    # clients on other machines would be: its connections stay open, and
    # it does not compete for this machine's CPUs while the server exits.
    kill -STOP "$BG" 2>/dev/null || true
    stop_server "$signal"
    # Its connections are gone now: it ends on its own.
    kill -CONT "$BG" 2>/dev/null || true
    if has "$s" shutdown=graceful; then
        R[$s,shutdown]="$STOP_MS ms, exit status $STOP_STATUS ($open $clients)$short"
        R[$s,stop]=$STOP_MS R[$s,stop_status]=$STOP_STATUS
    else
        R[$s,shutdown]="n/a (no handler)"
    fi
    note "$stage: SIG$signal with $open $clients: ${R[$s,shutdown]}"
    wait_bg 15

    # A client that sends up to $FLOOD and never reads, on a fresh server.
    start_server "$s"
    flood "$s"
    note "$stage: VmRSS growth under a $FLOOD flood never read: ${R[$s,flood]}"
    stop_server "$signal"

    # One client reads the file from the file port, on a fresh server.
    if has "$s" file=yes; then
        file_rate "$s" "$signal"
        note "$stage: file port, MiB/s reading $FILE_SIZE from the page cache: ${R[$s,file]}"
    else
        R[$s,file]="n/a (no file port)"
    fi
}

for number in "${NUMBERS[@]}"; do measure "$number"; done

# applies NUMBER FIGURE: true if FIGURE has a target at that stage.
applies() {
    local s=$1
    ((s >= TARGETS_FROM)) || return 1
    case $2 in
        # A stage that spins when idle wakes for every open connection:
        # it cannot even accept 10,000 idle clients in time, so nothing
        # that needs them (or counts its system calls) has a target.
        ratio | idle_cpu) ! has "$s" idle=spins ;;
        # The same; and a message crosses two connections at a proxy, and a
        # client costs its pipes (and from stage 13 its session) besides
        # its sockets: stage 7's targets for one echoing connection do not
        # apply there.
        sys1 | sys100 | rss_idle) ! has "$s" idle=spins && ! has "$s" proxy=yes ;;
        # Only a stage with pipes bounds what a client that never reads
        # costs; stages 6 and 7 stop reading because they block.
        flood) has "$s" memory=bounded && has "$s" send=buffers ;;
        shutdown | stop) has "$s" shutdown=graceful && ! has "$s" idle=spins ;;
        *) return 0 ;;
    esac
}

# row LABEL FIGURE TARGET: one line of the table; a figure with no target at
# its stage says so, when the row has a target.
row() {
    local label=$1 figure=$2 target=$3 line s value
    line="| $label |"
    for s in "${NUMBERS[@]}"; do
        value=${R[$s,$figure]:-}
        if [[ -n $target ]] && ! applies "$s" "$figure"; then value="$value (no target)"; fi
        line+=" $value |"
    done
    echo "$line $target |"
}

# The file's size for the row's label: "1 GiB", "64 MiB"...
file_label() {
    awk -v b="${FILE_BYTES:-$(numfmt --from=iec "$FILE_SIZE" 2>/dev/null || echo 0)}" 'BEGIN {
        if (b >= 1073741824 && b % 1073741824 == 0) printf "%d GiB\n", b / 1073741824
        else if (b >= 1048576 && b % 1048576 == 0) printf "%d MiB\n", b / 1048576
        else if (b >= 1024 && b % 1024 == 0) printf "%d KiB\n", b / 1024
        else printf "%d bytes\n", b }'
}

# What the proxy and file stages measured were given, for the notes.
NOTES=""
if ((ANY_PROXY)); then
    NOTES+="Stages with a proxy (proxy=yes; stages 11-13): through the proxy, to xps-upstream --epoll
(one echo in a process of its own, on $UPSTREAM, for the whole run): every figure is
the proxy's in front of it; it gets IDLE/2 idle clients, each with its upstream connection
(as many connections as the others hold), and no target on syscalls or memory per connection.
"
fi
if ((ANY_FILE)); then
    NOTES+="Stages with a file port (file=yes; stages 12-13): on a fresh server with --ports 0,0 --public DIR,
one client (tools/bench-file.sh's, python3) reads DIR/sample.txt, $FILE_SIZE of random bytes in the page
cache, from the second port to EOF; no target, but a transfer short of the file's size is missed.
"
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
header="| figure |" rule="|---|"
for s in "${NUMBERS[@]}"; do header+=" stage $s |" rule+="---|"; done
cat <<EOF

Machine: $(nproc) CPUs, $cpu, Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC').
Code: $(if git rev-parse --short HEAD 2>/dev/null; then
    git diff --quiet HEAD -- "${CRATES[@]}" || echo "(with uncommitted changes to the stages)"
else echo "not a git checkout"; fi | tr '\n' ' ')
Command: \`bash tools/bench.sh\` (SECS=$SECS IDLE=$IDLE LONG=$LONG MSG=$MSG FLOOD=$FLOOD FILE_SIZE=$FILE_SIZE): release builds,
servers on 127.0.0.1 with stdout to a file, \`xps-bench --msg-size $MSG --seconds $SECS\`.
Targets apply from stage $TARGETS_FROM on, where the stage table gives them a meaning: no
idle-connection or system-call target for a stage that spins when idle, no
shutdown target for one without a graceful shutdown.
${NOTES:+
$NOTES}
$header target |
$rule---|
EOF
row "msgs/s, 1 active" rate1 ""
row "msgs/s, 10 active" rate10 ""
row "msgs/s, 100 active" rate100 ""
row "latency p50/p99 (us), 1 active" lat1 ""
row "latency p50/p99 (us), 100 active" lat100 ""
row "CPU, 100 active: server / xps-bench (% of a core)" cpu ""
row "msgs/s, 100 active + $IDLE idle" idle_rate ""
row "ratio to 100 active + 0 idle just before" ratio "≥ 0.90"
row "msgs/s, 100 active + 0 idle just after" after ""
row "syscalls per message, 1 active" sys1 "≤ 4.0"
row "syscalls per message, 100 active" sys100 "≤ 2.5"
row "server CPU with 100 idle clients (% of a core, over 2 s)" idle_cpu "≤ 2"
row "VmRSS per idle connection" rss_idle "≤ 256 B"
row "VmRSS growth, 100 active for $LONG s" growth "none"
row "VmRSS growth, one client sends $FLOOD and never reads" flood "≤ 4096 KiB"
row "SIGINT (SIGTERM if no handler) with $IDLE+ connections open" shutdown "status 0 in ≤ 250 ms"
row "file MiB/s ($(file_label) from the page cache)" file ""

# Each stage's figures against the targets that apply to it.
MISSED=()
# check NUMBER FIGURE NAME OP LIMIT: the figure missed its target unless the
# first word of R[NUMBER,FIGURE] is a number and NUMBER OP LIMIT holds (OP
# as in awk). Nothing to check where the target does not apply.
check() {
    local s=$1 figure=$2 name=$3 op=$4 limit=$5 value
    applies "$s" "$figure" || return 0
    value=${R[$s,$figure]:-}
    value=${value%% *}
    if [[ ! $value =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
        MISSED+=("stage $s, $name: not measured (${R[$s,$figure]:-})")
    elif ! awk -v v="$value" -v l="$limit" "BEGIN { exit !(v $op l) }"; then
        MISSED+=("stage $s, $name: $value, target $op $limit")
    fi
}
for s in "${NUMBERS[@]}"; do
    check "$s" ratio "msgs/s ratio, 100 active + $IDLE idle to 100 active" '>=' 0.90
    check "$s" sys1 "syscalls per message, 1 active" '<=' 4.0
    check "$s" sys100 "syscalls per message, 100 active" '<=' 2.5
    check "$s" rss_idle "VmRSS per idle connection (B)" '<=' 256
    check "$s" growth "VmRSS growth, 100 active for $LONG s (KiB)" '<=' 0
    check "$s" idle_cpu "server CPU with 100 idle clients (%)" '<=' 2
    check "$s" flood "VmRSS growth under a $FLOOD flood never read (KiB)" '<=' 4096
    check "$s" stop "exit after SIGINT with $IDLE+ connections open (ms)" '<=' 250
    if applies "$s" stop && [[ ${R[$s,stop_status]:-} != 0 ]]; then
        MISSED+=("stage $s, exit status after SIGINT: ${R[$s,stop_status]:-none}, target 0")
    fi
    # The file row has no target, but a transfer that did not bring the
    # file (or could not be made) is missed.
    if has "$s" file=yes && [[ ! ${R[$s,file]:-} =~ ^[0-9] ]]; then
        MISSED+=("stage $s, file MiB/s: ${R[$s,file]:-not measured}")
    fi
done
if ((${#MISSED[@]} > 0)); then
    echo
    echo "${#MISSED[@]} target(s) missed:"
    printf -- '- %s\n' "${MISSED[@]}"
    exit 1
fi
