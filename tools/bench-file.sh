#!/usr/bin/env bash
# Stage 12's file port beside nginx serving the same file over HTTP, in one
# run: one client reads a $SIZE file (1 GiB of random bytes, in the page
# cache) as fast as it can, from
#
#   - stage 12's second port, which sends public/sample.txt to whoever
#     connects and then closes (no request): read() of 100,000 bytes into
#     the pipe, sendmsg() to the socket when it has room;
#   - nginx with `sendfile off;` (the read-then-send path, as stage 12):
#     with nginx's default `output_buffers 2 32k;` it reads the file into
#     two 32 KiB buffers and sends them (NGINX_OUTPUT_BUFFERS="1 128k" to
#     try other buffers);
#   - nginx with `sendfile on;` (the zero-copy ceiling: the kernel sends
#     the page cache's pages, in sendfile_max_chunk pieces of 2 MiB).
#
# nginx is asked with an HTTP/1.0 GET /sample.txt and closes after the
# response; both nginx run worker_processes 1, as stage 12 has one thread.
# For each server the table shows:
#
#   - MiB/s of the transfer: the median of $RUNS runs and, in brackets,
#     the lowest and highest (the servers take turns: run 1 of each, then
#     run 2 of each..., so that a slow moment of the machine is shared),
#     and stage 12's median as a ratio to that server's;
#   - the server's CPU time per GiB sent (from /proc/PID/task/*/schedstat,
#     nginx's worker): on a small machine, where the client and the server
#     share the cores, the steadier figure;
#   - system calls per MiB sent, and the calls that make them up, counted
#     over one transfer of its own, after the timed ones, with `perf stat`
#     on the kernel's system-call tracepoints (strace -c -f if perf cannot);
#   - the server's VmRSS growth during a transfer (sampled every 50 ms, the
#     largest of the transfers, the first of which, on the fresh process,
#     is the cmp check below). Stage 12's target: under 4 MiB, one pipe
#     (its threshold, 1 MB, plus a read of 100,000 bytes) and change.
#
# Every transfer must bring exactly the file's size (and status 200 from
# nginx), or it counts as n/a; before the timed runs, each server's bytes
# are also compared with the file once (cmp).
#
# The client is a small Python reader (python3): recv_into() a 1 MiB
# page-aligned buffer (an mmap: with a bytearray's it read half as fast
# here) until EOF, timed from connect() to EOF. It is not the limit: on
# a 2-CPU machine it read 4 GiB/s from nginx with sendfile on, three times
# what stage 12 and nginx with sendfile off reached there.
#
# Stage 12 is the release build (cargo build --release -p stage12), with
# its log on, as a user runs it (XPS_DEBUG unset, two INFO lines per
# client): started with --ports 0,0,0,0 --public DIR; its stdout goes to
# /dev/null after the lines that say which ports the OS gave it.
#
#   bash tools/bench-file.sh                   the table (about half a minute)
#   RUNS=5 bash tools/bench-file.sh            more runs of each
#   SIZE=256M bash tools/bench-file.sh         a smaller file
#   SERVERS="stage12 nginx-off" bash tools/bench-file.sh
#                                  only these rows (stage12 stage13 nginx-off
#                                  nginx-on)
#   SERVERS="stage12 stage13 nginx-off nginx-on" bash tools/bench-file.sh
#                                  stage 13 too: the file reaches the client
#                                  through a session; its target is at least
#                                  0.9x stage 12, in the same run
#   NGINX_OUTPUT_BUFFERS="1 128k" bash tools/bench-file.sh
#                                  nginx (sendfile off) with other buffers
#
# nginx, if it is not installed, is skipped, with one line saying so
# (apt-get install nginx, then `service nginx stop` if the package started
# its own: this script runs its own two, with configs in a temporary
# directory). The file is made in a temporary directory ($TMPDIR or /tmp,
# which needs $SIZE free) and removed on exit. Everything listens on
# 127.0.0.1 only. Every process started here is stopped on exit, even on
# failure or Ctrl+C. The script exits with status 1 if stage 12 missed
# its memory target or a transfer (any server's) brought the wrong bytes.
# Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}       # runs of each figure
SIZE=${SIZE:-1G}      # the file (K, M, G: powers of 1024)
SERVERS=${SERVERS:-"stage12 nginx-off nginx-on"}
NGINX_OUTPUT_BUFFERS=${NGINX_OUTPUT_BUFFERS:-}  # e.g. "1 128k"; empty: nginx's default
RSS_TARGET_KIB=4096   # stage 12's memory growth during a transfer, at most

note() { echo "bench-file.sh: $*" >&2; }

if ! command -v python3 >/dev/null; then
    note "needs python3 for its client"
    exit 2
fi
BYTES=$(numfmt --from=iec "$SIZE" 2>/dev/null) || { note "SIZE: not a size: $SIZE"; exit 2; }
if ((BYTES < 1)); then note "SIZE: must be at least one byte"; exit 2; fi

cargo build --release --quiet -p stage12 -p stage13 -p tools # the stages, and mkdata
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xps-bench-file.XXXXXX")

# shellcheck source=tools/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"

# ------------------------------------------------------------------ the file

DIR=$WORK/public
FILE=$DIR/sample.txt
make_sample "$FILE" "$BYTES" SIZE
# The client (see write_reader in bench-lib.sh).
write_reader "$WORK/reader.py"

# ------------------------------------------------------------------ the servers

# For each row: its label, its port, the request (none for stage 12), the
# pid whose memory, CPU and system calls count (nginx's worker).
ROWS=()
declare -A LABEL PORT REQUEST PID
VERSIONS=""

# add_row NAME LABEL PORT PID REQUEST
add_row() {
    ROWS+=("$1")
    LABEL[$1]=$2 PORT[$1]=$3 PID[$1]=$4 REQUEST[$1]=$5
}

HTTP_GET=$'GET /sample.txt HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'

# stage_ports FILE: true once a stage has announced its four ports.
stage_ports() { (($(grep -c 'Server listening on port ' "$1") >= 4)); }

# start_stage NAME (stage12 or stage13) LABEL
start_stage() {
    local name=$1 out=$WORK/$1.out fifo=$WORK/$1.fifo
    : >"$out"
    mkfifo "$fifo"
    # The log's first lines, up to the fourth port, to a file; the rest
    # (two lines a client) to /dev/null.
    (
        count=0
        while IFS= read -r line; do
            printf '%s\n' "$line" >>"$out"
            if [[ $line == *"Server listening on port "* ]]; then
                count=$((count + 1))
                if ((count == 4)); then break; fi
            fi
        done
        exec cat >/dev/null
    ) <"$fifo" &
    PIDS+=("$!")
    (exec env -u XPS_DEBUG NO_COLOR=1 "$BIN/$name" --ports 0,0,0,0 --public "$DIR") \
        >"$fifo" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    if ! wait_for 5 stage_ports "$out" || ! kill -0 "$pid" 2>/dev/null; then
        note "$name did not start:"
        cat "$out" "$WORK/$name.err" >&2
        exit 1
    fi
    # The second port announced serves the file; the line before it says so.
    local port
    port=$(sed -n 's/.*Server listening on port \([0-9]*\).*/\1/p' "$out" | sed -n 2p)
    if ! grep -q "port $port serves sample.txt from " "$out"; then
        note "$name's second port ($port) does not say it serves sample.txt:"
        cat "$out" >&2
        exit 1
    fi
    add_row "$name" "$2" "$port" "$pid" ""
}

# start_nginx NAME on|off
start_nginx() {
    local name=$1 sendfile=$2
    if ! command -v nginx >/dev/null; then
        note "nginx is not installed (apt-get install nginx): $name skipped"
        return 0
    fi
    free_port
    local dir=$WORK/$name port=$FREE user="" buffers="" label
    mkdir -p "$dir"
    # Started by root, nginx's workers would run as nobody; these stay root.
    if ((EUID == 0)); then user="user root;"; fi
    label="nginx, sendfile $sendfile"
    if [[ $sendfile == off && -n $NGINX_OUTPUT_BUFFERS ]]; then
        buffers="output_buffers $NGINX_OUTPUT_BUFFERS;"
        label+=", output_buffers $NGINX_OUTPUT_BUFFERS"
    elif [[ $sendfile == off ]]; then
        label+=" (output_buffers 2 32k)"
    fi
    cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
error_log $dir/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type application/octet-stream;
    sendfile $sendfile;
    $buffers
    server {
        listen 127.0.0.1:$port;
        root "$DIR";
    }
}
EOF
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/out" 2>&1 &
    local master=$!
    PIDS+=("$master")
    if ! wait_for 5 listening "$port" || ! kill -0 "$master" 2>/dev/null; then
        note "$name did not start listening on 127.0.0.1:$port; skipped"
        cat "$dir/out" "$dir/error.log" >&2 2>/dev/null || true
        return 0
    fi
    local worker
    wait_for 5 pgrep -P "$master" >/dev/null || true
    worker=$(pgrep -P "$master" | head -1)
    if [[ -z $worker ]]; then note "$name started no worker: skipped"; return 0; fi
    # Stopped with the master normally; killed too should the master be.
    PIDS+=("$worker")
    add_row "$name" "$label" "$port" "$worker" "$HTTP_GET"
    VERSIONS=$(nginx -v 2>&1 | sed 's/^nginx version: //')
}

for name in $SERVERS; do
    case $name in
        stage12) start_stage stage12 "stage 12 (file port)" ;;
        stage13) start_stage stage13 "stage 13 (file port, through a session)" ;;
        nginx-off) start_nginx nginx-off off ;;
        nginx-on) start_nginx nginx-on on ;;
        *) note "SERVERS: no server called '$name' (stage12 stage13 nginx-off nginx-on)"; exit 2 ;;
    esac
done
if ((${#ROWS[@]} == 0)); then note "nothing to measure"; exit 1; fi
note "measuring: ${ROWS[*]}"

# ------------------------------------------------------------------ the runs

declare -A R # R[name,figure] = the values of the runs, space-separated
WRONG=()     # transfers that did not bring the file

# RSS sampling around a transfer: rss_start PID starts a sampler of its
# VmRSS every 50 ms; rss_stop sets GROWTH to the highest sample less the
# VmRSS before, in KiB, and BEFORE and PEAK to the two.
rss_start() {
    RSS_PID=$1 BEFORE=$(rss_kib "$1")
    : >"$WORK/rss.samples"
    (while true; do rss_kib "$RSS_PID" >>"$WORK/rss.samples"; sleep 0.05; done) &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
}
rss_stop() {
    rss_kib "$RSS_PID" >>"$WORK/rss.samples"
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    PEAK=$(awk -v m="${BEFORE:-0}" '$1 ~ /^[0-9]+$/ && $1 > m { m = $1 } END { print m }' \
        "$WORK/rss.samples")
    GROWTH=$((PEAK - ${BEFORE:-0}))
}

# check_bytes NAME: one transfer whose bytes are compared with the file,
# the first on the fresh process (its RSS growth counts too).
check_bytes() {
    local name=$1 result ok=1
    rss_start "${PID[$name]}"
    timeout 300 python3 "$WORK/reader.py" "${PORT[$name]}" "${REQUEST[$name]}" --copy \
        2>"$WORK/check.err" | cmp -s - "$FILE" || ok=0
    rss_stop
    result=$(tail -1 "$WORK/check.err")
    if ((ok)); then
        R[$name,rss]+=" $GROWTH"
        note "$name: the bytes received are the file's; VmRSS $BEFORE -> $PEAK KiB"
    else
        note "$name: the bytes received are not the file's ($result)"
        WRONG+=("${LABEL[$name]}: the bytes received differ from the file ($result)")
    fi
}

# transfer NAME: one timed transfer; adds its MiB/s, the server's CPU per
# GiB and its RSS growth to R.
transfer() {
    local name=$1 pid=${PID[$1]} cpu_before cpu_after out
    rss_start "$pid"
    cpu_before=$(cpu_ns "$pid")
    out=$(timeout 300 python3 "$WORK/reader.py" "${PORT[$name]}" "${REQUEST[$name]}" 2>&1) || true
    cpu_after=$(cpu_ns "$pid")
    rss_stop
    local bytes seconds status
    read -r bytes seconds status _ <<<"$out" || true
    if [[ $bytes != "$BYTES" || ($status != - && $status != 200) ]]; then
        note "$name: the transfer brought ${bytes:-nothing} bytes of $BYTES (status ${status:-none}): $out"
        WRONG+=("${LABEL[$name]}: a transfer brought ${bytes:-nothing} bytes of $BYTES (status ${status:-none})")
        R[$name,mibs]+=" n/a" R[$name,cpu]+=" n/a"
        return
    fi
    local mibs cpu
    mibs=$(awk -v b="$bytes" -v s="$seconds" 'BEGIN { printf "%.1f", b / 1048576 / s }')
    cpu=$(awk -v ns=$((cpu_after - cpu_before)) -v b="$bytes" \
        'BEGIN { printf "%.1f", ns / 1e6 / (b / 1073741824) }')
    R[$name,mibs]+=" $mibs" R[$name,cpu]+=" $cpu" R[$name,rss]+=" $GROWTH"
    note "$name: $mibs MiB/s in ${seconds} s, server CPU $cpu ms/GiB, VmRSS $BEFORE -> $PEAK KiB"
}

for name in "${ROWS[@]}"; do
    check_bytes "$name"
done
START=$EPOCHREALTIME
for ((run = 1; run <= RUNS; run++)); do
    for name in "${ROWS[@]}"; do
        transfer "$name"
    done
    note "run $run of $RUNS done ($(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s)"
done

# ------------------------------------------------------- system calls per MiB

# With perf, the tracepoint every system call passes (raw_syscalls:sys_enter)
# for the total, and those of the calls a file server makes for the
# breakdown; with strace -c -f if perf cannot read tracepoints (not root,
# perf_event_paranoid too high).
SYSCALL_NAMES="read pread64 readv preadv write writev sendto sendmsg sendfile64 splice
    recvfrom recvmsg epoll_wait epoll_pwait epoll_ctl accept accept4 close openat
    newfstatat fstat statx ioctl fcntl setsockopt getsockopt"
COUNTER=none
if command -v perf >/dev/null &&
    perf stat -e raw_syscalls:sys_enter -o /dev/null -- true >/dev/null 2>&1; then
    COUNTER=perf
    PERF_EVENTS=(-e raw_syscalls:sys_enter)
    for call in $SYSCALL_NAMES; do
        # Only the tracepoints this kernel has.
        if [[ -d /sys/kernel/tracing/events/syscalls/sys_enter_$call ||
            -d /sys/kernel/debug/tracing/events/syscalls/sys_enter_$call ]]; then
            PERF_EVENTS+=(-e "syscalls:sys_enter_$call")
        fi
    done
elif command -v strace >/dev/null; then
    COUNTER=strace
else
    note "neither perf nor strace: no system-call counts"
fi

# syscalls NAME: counts the server's system calls over one transfer; sets
# R[NAME,sys] to "per-MiB (breakdown)".
syscalls() {
    local name=$1 pid=${PID[$1]} counts=$WORK/$1.syscalls tracer
    case $COUNTER in
        perf) perf stat "${PERF_EVENTS[@]}" -p "$pid" -o "$counts" 2>/dev/null & ;;
        strace) strace -c -f -p "$pid" -o "$counts" 2>/dev/null & ;;
        *) R[$name,sys]="n/a"; return ;;
    esac
    tracer=$!
    PIDS+=("$tracer")
    # Counting once strace has set the tracee's TracerPid, or perf has
    # opened its counters (and a moment more for it to enable them).
    if [[ $COUNTER == strace ]]; then
        wait_for 5 bash -c "grep -q '^TracerPid:[[:space:]]*[1-9]' /proc/$pid/status" || true
    else
        wait_for 5 bash -c "ls -l /proc/$tracer/fd 2>/dev/null | grep -q perf_event" || true
        sleep 0.3
    fi
    local out bytes
    out=$(timeout 600 python3 "$WORK/reader.py" "${PORT[$name]}" "${REQUEST[$name]}" 2>&1) || true
    sleep 0.1
    kill -INT "$tracer" 2>/dev/null || true
    wait_for 5 bash -c "! kill -0 $tracer 2>/dev/null" || kill -KILL "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    read -r bytes _ <<<"$out" || true
    if [[ $bytes != "$BYTES" ]]; then
        note "$name: the counted transfer brought ${bytes:-nothing} bytes of $BYTES"
        R[$name,sys]="n/a"
        return
    fi
    R[$name,sys]=$(syscall_table "$counts" "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" 1)
    note "$name: ${R[$name,sys]} system calls per MiB"
}

for name in "${ROWS[@]}"; do
    syscalls "$name"
done

# ------------------------------------------------------------------ the table

# median VALUES...: "median (lowest-highest)" with $DIGITS decimals; "n/a"
# if no run gave a number.
median() {
    printf '%s\n' "$@" | awk -v digits="${DIGITS:-0}" '
        $1 ~ /^-?[0-9.]+$/ { v[++n] = $1 + 0 }
        END {
            if (n == 0) { print "n/a"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            f = "%." digits "f"
            if (n == 1) printf f "\n", m; else printf f " (" f "-" f ")\n", m, v[1], v[n]
        }'
}

# The median alone, as a plain number; nothing if no run gave one.
plain() { printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/ { v[++n] = $1 + 0 } END {
    if (n == 0) exit
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'; }

# The largest of the values, in KiB, as "N KiB"; "n/a" if none.
largest_kib() { printf '%s\n' "$@" | awk '$1 ~ /^-?[0-9]+$/ { if (!n++ || $1 > m) m = $1 }
    END { if (n) printf "%d KiB\n", m; else print "n/a" }'; }

# ratio A B: "A/B" with two decimals and an x, or "n/a".
ratio() {
    if [[ -z $1 || -z $2 ]]; then echo "n/a"; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx\n", a / b; else print "n/a" }'
}

# shellcheck disable=SC2086 # the runs are space-separated on purpose
OURS=$(plain ${R[stage12,mibs]:-})
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
cat <<EOF

Machine: $(nproc) CPUs, $cpu, Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC').
Code: $(git rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")$(git diff --quiet HEAD -- stage12 stage13 2>/dev/null || echo " (with uncommitted changes to the stages)"); release builds.
Servers: stage 12${VERSIONS:+, nginx $VERSIONS (worker_processes 1)}; client: Python, recv_into() a 1 MiB buffer.
Command: \`bash tools/bench-file.sh\` (RUNS=$RUNS SIZE=$SIZE): one client reads the $SIZE file from the
page cache; median of $RUNS run(s) (lowest-highest); system calls counted with $COUNTER over one transfer.

| server | MiB/s | stage 12 / this | server CPU ms/GiB | syscalls/MiB | RSS growth |
|---|---|---|---|---|---|
EOF
for name in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    theirs=$(plain ${R[$name,mibs]:-})
    # shellcheck disable=SC2086
    printf '| %s | %s | %s | %s | %s | %s |\n' "${LABEL[$name]}" \
        "$(DIGITS=0 median ${R[$name,mibs]:-})" \
        "$(if [[ $name == stage12 ]]; then echo "-"; else ratio "$OURS" "$theirs"; fi)" \
        "$(DIGITS=0 median ${R[$name,cpu]:-})" "${R[$name,sys]:-n/a}" \
        "$(largest_kib ${R[$name,rss]:-})"
done

# Stage 12's ratios, on a line of their own, and its memory target.
MISSED=("${WRONG[@]}")
if [[ -n ${PID[stage12]:-} ]]; then
    echo
    line="stage 12 / nginx (median MiB/s):"
    for name in nginx-off nginx-on; do
        [[ -n ${PID[$name]:-} ]] || continue
        # shellcheck disable=SC2086
        line+=" sendfile ${name#nginx-} $(ratio "$OURS" "$(plain ${R[$name,mibs]:-})");"
    done
    if [[ $line == *";" ]]; then echo "${line%;}."; else echo "No nginx row: stage 12 was not compared with anything."; fi
    # shellcheck disable=SC2086
    rss=$(largest_kib ${R[stage12,rss]:-})
    rss=${rss%% *}
    if [[ ! $rss =~ ^-?[0-9]+$ ]]; then
        MISSED+=("stage 12's RSS growth during a transfer: not measured")
    elif ((rss >= RSS_TARGET_KIB)); then
        MISSED+=("stage 12's RSS growth during a transfer: $rss KiB, target < $RSS_TARGET_KIB KiB")
    else
        echo "Stage 12's RSS growth during a transfer: $rss KiB (target < $RSS_TARGET_KIB KiB): met."
    fi
fi
# Stage 13: at least 0.9x stage 12 in this run, within the same memory.
if [[ -n ${PID[stage13]:-} ]]; then
    # shellcheck disable=SC2086
    ours13=$(plain ${R[stage13,mibs]:-})
    if [[ -n ${PID[stage12]:-} && -n $ours13 && -n $OURS ]]; then
        r=$(ratio "$ours13" "$OURS")
        echo "stage 13 / stage 12 (median MiB/s): $r."
        if awk -v r="${r%x}" 'BEGIN { exit !(r < 0.9) }'; then
            MISSED+=("stage 13: ${r} stage 12, target 0.9x")
        fi
    else
        echo "No stage 12 row: stage 13 was not compared with anything."
    fi
    # shellcheck disable=SC2086
    rss=$(largest_kib ${R[stage13,rss]:-})
    rss=${rss%% *}
    if [[ ! $rss =~ ^-?[0-9]+$ ]] || ((rss >= RSS_TARGET_KIB)); then
        MISSED+=("stage 13's RSS growth during a transfer: $rss KiB, target < $RSS_TARGET_KIB KiB")
    fi
fi
if ((${#MISSED[@]} > 0)); then
    echo
    echo "${#MISSED[@]} problem(s):"
    printf -- '- %s\n' "${MISSED[@]}"
    exit 1
fi
