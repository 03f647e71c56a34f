#!/usr/bin/env bash
# Stage 11's reverse proxy beside the proxies people run: nginx's stream
# proxy (worker_processes 1) and haproxy (nbthread 1), all in front of the
# same upstream, an echo (`xps-upstream --epoll`, a process of its own),
# measured in one run:
#
#   - msgs/s with 1 and with 100 clients: 64-byte ping-pong through the
#     proxy to the echo and back (xps-bench --stage 11, every reply checked);
#   - MiB/s of one bulk transfer: one connection sends $BULK and reads it
#     back at the same time (xps-bench --bulk, every byte checked);
#   - the proxy's VmRSS growth during that transfer (sampled every 20 ms);
#   - the proxy's CPU time per message with 1 and 100 clients (from
#     /proc/PID/task/*/schedstat, over each whole xps-bench run): what a
#     message costs the proxy itself, the steadiest figure on a small
#     machine where the proxy, the echo and xps-bench share the cores (with
#     one client, msgs/s is mostly how fast sleeping CPUs wake up);
#   - system calls per proxied message, 1 and 100 clients, counted with
#     `perf stat` on the kernel's system-call tracepoints (strace -c if
#     perf cannot), in runs of their own after the timed ones.
#
# Then stage 11's medians as ratios to nginx's, and the targets: at least
# 1.0x nginx on each rate, and a memory growth under 4 MiB in the bulk
# transfer. The script exits with status 1, naming them, if stage 11
# missed any (as tools/bench.sh does for the stages' targets).
#
# A row "none" loads the echo directly: the most any proxy in front of it
# could do on this machine. Every figure is taken $RUNS times, the proxies
# taking turns (run 1 of each, then run 2 of each...), so that a slow
# moment of the machine is shared; the table shows the median and, in
# brackets, the lowest and highest. The RSS column shows the largest
# growth of the runs (the first, on a fresh process, is usually it).
#
# Stage 11 is the release build (cargo build --release -p stage11), with
# its log on, as a user runs it: stdout to /dev/null (the row "stage 11"),
# and with LOGFILE=1 also stdout to a file (the row "stage 11, log in a
# file"). The server writes a `client:` or `upstream:` line for every
# chunk it forwards; it gathers them and writes them once a loop pass.
#
#   bash tools/bench-proxy.sh               the table (a minute and a half)
#   RUNS=5 SECS=3 bash tools/bench-proxy.sh more and longer runs
#   PROXIES="stage11 nginx" bash tools/bench-proxy.sh    only these rows
#                                 (none stage11 stage11-file stage12 stage13
#                                 other nginx haproxy)
#   PROXIES="none stage11 stage12 stage13 nginx haproxy" bash tools/bench-proxy.sh
#                                 stages 11, 12 and 13 side by side: stage
#                                 13's proxy goes through a session; its
#                                 target is at least 0.9x stage 11 on each
#                                 rate, in the same run
#   LOGFILE=1 bash tools/bench-proxy.sh     also stage 11 with its log in a file
#   BULK=200M bash tools/bench-proxy.sh     a smaller bulk transfer
#   PROFILE=dir bash tools/bench-proxy.sh   also `perf record -g` each proxy
#                                 under 1 and 100 clients; the reports
#                                 (self time, time with children, and by
#                                 binary: kernel, program, libc) go to dir
#   KEEP=dir bash tools/bench-proxy.sh      keep the syscall counts in dir
#   OTHER=path/to/server bash tools/bench-proxy.sh
#                                 also a server with stage 11's flags (a
#                                 variant of it you are trying, your own),
#                                 log to /dev/null, as the row "other"
#
# A proxy that is not installed is skipped, with one line saying so:
# apt-get install nginx libnginx-mod-stream haproxy (then `service nginx
# stop; service haproxy stop` if the packages started theirs: this script
# runs its own, with configs in a temporary directory). Everything listens
# on 127.0.0.1 only, on free ports above 30000. Every process started here
# is stopped on exit, even on failure or Ctrl+C. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-2}        # seconds measured per ping-pong run
RUNS=${RUNS:-3}        # runs of each figure
BULK=${BULK:-1G}       # the bulk transfer
MSG=${MSG:-64}         # bytes per ping-pong message
LOGFILE=${LOGFILE:-}   # 1: also stage 11 with its log in a file
OTHER=${OTHER:-}       # another server with stage 11's flags, to measure too
PROXIES=${PROXIES:-"none stage11 ${LOGFILE:+stage11-file }${OTHER:+other }nginx haproxy"}
SYSCALL_SECS=${SYSCALL_SECS:-1}  # seconds of each syscall-counting run

note() { echo "bench-proxy.sh: $*" >&2; }

cargo build --release --quiet -p tools -p stage11 -p stage12 -p stage13
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xps-bench-proxy.XXXXXX")

# shellcheck source=tools/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"

# ---------------------------------------------------------------- the upstream

UPSTREAM_OUT=$WORK/upstream.out
"$BIN/xps-upstream" --epoll >"$UPSTREAM_OUT" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_for 5 grep -q ' on 127.0.0.1:' "$UPSTREAM_OUT" ||
    { note "xps-upstream did not start:"; cat "$UPSTREAM_OUT" >&2; exit 1; }
UPSTREAM_PORT=$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$UPSTREAM_OUT")
UPSTREAM=127.0.0.1:$UPSTREAM_PORT

# ------------------------------------------------------------------ the proxies

# For each row: its label, its port, the pid whose memory, CPU and system
# calls count (nginx's worker, not its master), and a version.
ROWS=()
declare -A LABEL PORT PID VERSION

# add_row NAME LABEL PORT PID VERSION
add_row() {
    ROWS+=("$1")
    LABEL[$1]=$2 PORT[$1]=$3 PID[$1]=$4 VERSION[$1]=$5
}

# started NAME PORT PID: waits until the proxy listens; false (and a note)
# if it does not within 5 s or has died.
started() {
    if wait_for 5 listening "$2" && kill -0 "$3" 2>/dev/null; then return 0; fi
    note "$1 did not start listening on 127.0.0.1:$2; skipped"
    return 1
}

start_none() {
    add_row none "none (xps-bench to the echo directly)" "$UPSTREAM_PORT" "$UPSTREAM_PID" \
        "xps-upstream --epoll"
}

# start_stage11 NAME STDOUT LABEL [BINARY]
start_stage11() {
    free_port
    local port=$FREE binary=${4:-$BIN/stage11}
    (ulimit -n "$(ulimit -Hn)" && exec env NO_COLOR=1 "$binary" --host 127.0.0.1 \
        --ports "$port" --upstream "$UPSTREAM") >"$2" 2>"$WORK/$1.err" &
    local pid=$!
    PIDS+=("$pid")
    started "$1" "$port" "$pid" || { cat "$WORK/$1.err" >&2; return 0; }
    add_row "$1" "$3" "$port" "$pid" "$binary"
}

# The stream module of a Debian nginx, if it is a module of its own.
stream_module() {
    local dir
    for dir in /usr/lib/nginx/modules /usr/lib64/nginx/modules /usr/share/nginx/modules; do
        if [[ -f $dir/ngx_stream_module.so ]]; then echo "$dir/ngx_stream_module.so"; return; fi
    done
}

start_nginx() {
    if ! command -v nginx >/dev/null; then
        note "nginx is not installed (apt-get install nginx libnginx-mod-stream): skipped"
        return 0
    fi
    local load="" module
    module=$(stream_module)
    if nginx -V 2>&1 | grep -q -- '--with-stream=dynamic'; then
        if [[ -z $module ]]; then
            note "nginx has no stream module (apt-get install libnginx-mod-stream): skipped"
            return 0
        fi
        load="load_module $module;"
    elif ! nginx -V 2>&1 | grep -q -- '--with-stream\b'; then
        note "this nginx was built without the stream module: skipped"
        return 0
    fi
    free_port
    local dir=$WORK/nginx port=$FREE
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
$load
worker_processes 1;
error_log $dir/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
stream {
    server {
        listen 127.0.0.1:$port;
        proxy_pass $UPSTREAM;
    }
}
EOF
    (ulimit -n "$(ulimit -Hn)" && exec nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        -g 'daemon off;') >"$dir/out" 2>&1 &
    local master=$!
    PIDS+=("$master")
    started nginx "$port" "$master" || { cat "$dir/out" "$dir/error.log" >&2 2>/dev/null; return 0; }
    local worker
    wait_for 5 pgrep -P "$master" >/dev/null || true
    worker=$(pgrep -P "$master" | head -1)
    if [[ -z $worker ]]; then note "nginx started no worker: skipped"; return 0; fi
    # Stopped with the master normally; killed too should the master be.
    PIDS+=("$worker")
    add_row nginx "nginx stream" "$port" "$worker" "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
}

start_haproxy() {
    if ! command -v haproxy >/dev/null; then
        note "haproxy is not installed (apt-get install haproxy): skipped"
        return 0
    fi
    free_port
    local dir=$WORK/haproxy port=$FREE
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend proxy
    bind 127.0.0.1:$port
    default_backend echo
backend echo
    server echo $UPSTREAM
EOF
    haproxy -f "$dir/haproxy.cfg" -db >"$dir/out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    started haproxy "$port" "$pid" || { cat "$dir/out" >&2; return 0; }
    add_row haproxy "haproxy" "$port" "$pid" "$(haproxy -v 2>&1 | head -1 | awk '{print $3}')"
}

for name in $PROXIES; do
    case $name in
        none) start_none ;;
        stage11) start_stage11 stage11 /dev/null "stage 11 (log to /dev/null)" ;;
        stage11-file) start_stage11 stage11-file "$WORK/stage11.log" "stage 11 (log in a file)" ;;
        # Stages 12 and 13 on one port: the first, the proxy.
        stage12) start_stage11 stage12 /dev/null "stage 12 (log to /dev/null)" "$BIN/stage12" ;;
        stage13) start_stage11 stage13 /dev/null "stage 13, sessions (log to /dev/null)" \
            "$BIN/stage13" ;;
        other)
            if [[ ! -x $OTHER ]]; then note "OTHER: $OTHER is not an executable"; exit 2; fi
            start_stage11 other /dev/null "other: $OTHER" "$OTHER"
            ;;
        nginx) start_nginx ;;
        haproxy) start_haproxy ;;
        *)
            note "PROXIES: no proxy called '$name' (none stage11 stage11-file stage12 stage13 other" \
                "nginx haproxy)"
            exit 2
            ;;
    esac
done
if ((${#ROWS[@]} == 0)); then note "nothing to measure"; exit 1; fi
note "upstream: xps-upstream --epoll on $UPSTREAM; measuring: ${ROWS[*]}"

# ------------------------------------------------------------------ the runs

declare -A R # R[name,figure] = the values of the runs, space-separated

# keep_log_small: the stage 11 log file grows with every message.
keep_log_small() { if [[ -f $WORK/stage11.log ]]; then : >"$WORK/stage11.log"; fi; }

# pingpong NAME CONNS: one xps-bench run; adds its msgs/s (and with 100
# clients the proxy's CPU per message) to R.
pingpong() {
    local name=$1 conns=$2 out before after
    before=$(cpu_ns "${PID[$name]}")
    out=$("$BIN/xps-bench" --stage 11 --port "${PORT[$name]}" --conns "$conns" --msg-size "$MSG" \
        --seconds "$SECS" 2>&1) || true
    after=$(cpu_ns "${PID[$name]}")
    keep_log_small
    local result; result=$(grep '^result: ' <<<"$out" || echo "result: ")
    local errors; errors=$(field "$result" errors)
    if [[ ${errors:-1} != 0 ]]; then
        note "$name, $conns clients: errors: $(grep -E 'first error|xps-bench:' <<<"$out" | tail -1)"
        R[$name,rate$conns]+=" n/a"
        return
    fi
    local rate replies cpu
    rate=$(field "$result" msgs_per_s) replies=$(field "$result" replies_total)
    cpu=$(awk -v ns=$((after - before)) -v n="$replies" \
        'BEGIN { printf "%.2f", (n > 0 ? ns / 1000 / n : 0) }')
    R[$name,rate$conns]+=" $rate" R[$name,cpu$conns]+=" $cpu"
    note "$name, $conns client(s): $rate msgs/s, proxy CPU $cpu us/msg"
}

# bulk NAME: one bulk transfer; adds its MiB/s and the proxy's RSS growth.
bulk() {
    local name=$1 out
    out=$(timeout 300 "$BIN/xps-bench" --bulk "$BULK" --port "${PORT[$name]}" \
        --pid "${PID[$name]}" --timeout 10 2>&1) || true
    keep_log_small
    local result; result=$(grep '^result: ' <<<"$out" || echo "result: ")
    if [[ $(field "$result" errors) != 0 ]]; then
        note "$name, bulk: $(grep -E 'first error|xps-bench:' <<<"$out" | tail -1)"
        R[$name,bulk]+=" n/a" R[$name,rss]+=" n/a"
        return
    fi
    R[$name,bulk]+=" $(field "$result" mib_per_s)"
    R[$name,rss]+=" $(field "$result" rss_growth_kib)"
    note "$name, bulk: $(field "$result" mib_per_s) MiB/s, RSS $(field "$result" rss_before_kib) -> $(field "$result" rss_peak_kib) KiB"
}

START=$EPOCHREALTIME
for ((run = 1; run <= RUNS; run++)); do
    for name in "${ROWS[@]}"; do
        pingpong "$name" 1
        pingpong "$name" 100
        bulk "$name"
    done
    note "run $run of $RUNS done ($(awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s)"
done

# ------------------------------------------------------- system calls per message

# How the system calls are counted: with perf, the tracepoint every system
# call passes (raw_syscalls:sys_enter) for the total, and those of the calls
# a proxy makes for the breakdown (perf closes each tracepoint slowly: all
# of syscalls:sys_enter_* would take it 15 s); with strace -c if perf
# cannot read tracepoints (not root, perf_event_paranoid too high).
SYSCALL_NAMES="read write readv writev recvfrom sendto recvmsg sendmsg recvmmsg sendmmsg
    epoll_wait epoll_pwait epoll_pwait2 epoll_ctl poll ppoll select pselect6 splice
    clock_gettime gettimeofday accept accept4 connect close shutdown getsockopt setsockopt
    futex ioctl fcntl getpeername getsockname statx"
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

# syscalls NAME CONNS: counts the proxy's system calls while xps-bench runs
# CONNS clients; adds "per-message (breakdown)" to R.
syscalls() {
    local name=$1 conns=$2 pid=${PID[$1]} counts=$WORK/$1-$2.syscalls tracer
    case $COUNTER in
        perf) perf stat "${PERF_EVENTS[@]}" -p "$pid" -o "$counts" 2>/dev/null & ;;
        strace) strace -c -f -p "$pid" -o "$counts" 2>/dev/null & ;;
        *) R[$name,sys$conns]="n/a"; return ;;
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
    local out result
    out=$("$BIN/xps-bench" --stage 11 --port "${PORT[$name]}" --conns "$conns" --msg-size "$MSG" \
        --seconds "$SYSCALL_SECS" 2>&1) || true
    result=$(grep '^result: ' <<<"$out" || echo "result: ")
    kill -INT "$tracer" 2>/dev/null || true
    wait_for 5 bash -c "! kill -0 $tracer 2>/dev/null" || kill -KILL "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    keep_log_small
    local msgs; msgs=$(field "$result" replies_total)
    R[$name,sys$conns]=$(syscall_table "$counts" "${msgs:-0}" 2)
    if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$counts" "$KEEP/"; fi
}

for name in "${ROWS[@]}"; do
    if [[ $name == none ]]; then R[$name,sys1]="" R[$name,sys100]=""; continue; fi
    syscalls "$name" 1
    syscalls "$name" 100
done

# ------------------------------------------------------------------ a profile

# profile NAME CONNS: perf record -g of that proxy while xps-bench runs
# CONNS clients; the reports go to $PROFILE.
profile() {
    local name=$1 conns=$2 data=$WORK/perf-$1-$2.data recorder
    perf record -g -p "${PID[$name]}" -o "$data" >/dev/null 2>&1 &
    recorder=$!
    PIDS+=("$recorder")
    sleep 0.5
    "$BIN/xps-bench" --stage 11 --port "${PORT[$name]}" --conns "$conns" --msg-size "$MSG" \
        --seconds "$SECS" >/dev/null 2>&1 || true
    kill -INT "$recorder" 2>/dev/null || true
    wait "$recorder" 2>/dev/null || true
    keep_log_small
    # Where the samples fell (self time), and the time under each function
    # with what it called (children: a libc wrapper such as __libc_sendmsg
    # holds the kernel's work for that system call).
    perf report -i "$data" --no-children --sort dso,sym -g none --percent-limit 0.3 --stdio \
        >"$PROFILE/$name-$conns-clients-self.txt" 2>/dev/null || true
    perf report -i "$data" --children --sort sym -g none --percent-limit 1 --stdio \
        >"$PROFILE/$name-$conns-clients-children.txt" 2>/dev/null || true
    # The kernel's share against the program's and the libraries'.
    perf report -i "$data" --no-children --sort dso -g none --stdio \
        >"$PROFILE/$name-$conns-clients-by-dso.txt" 2>/dev/null || true
}
if [[ -n ${PROFILE:-} ]]; then
    if ! command -v perf >/dev/null; then
        note "PROFILE: needs perf (apt-get install linux-perf)"
    else
        mkdir -p "$PROFILE"
        for name in "${ROWS[@]}"; do
            [[ $name == none ]] && continue
            profile "$name" 1
            profile "$name" 100
        done
        note "profiles in $PROFILE"
    fi
fi

# ------------------------------------------------------------------ the table

# median VALUES...: "median (lowest-highest)", numbers rounded to $DIGITS
# decimals and grouped by thousands; "n/a" if no run gave a number.
median() {
    printf '%s\n' "$@" | awk -v digits="${DIGITS:-0}" '
        function fmt(v,   s, int_part, frac, out) {
            s = sprintf("%." digits "f", v)
            int_part = s; frac = ""
            if (index(s, ".")) { int_part = substr(s, 1, index(s, ".") - 1); frac = substr(s, index(s, ".")) }
            out = ""
            while (length(int_part) > 3) { out = "," substr(int_part, length(int_part) - 2) out; int_part = substr(int_part, 1, length(int_part) - 3) }
            return int_part out frac
        }
        $1 ~ /^-?[0-9.]+$/ { v[++n] = $1 + 0 }
        END {
            if (n == 0) { print "n/a"; exit }
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            if (n == 1) print fmt(m); else printf "%s (%s-%s)\n", fmt(m), fmt(v[1]), fmt(v[n])
        }'
}

# The median alone, as a plain number (for the ratios), with $DIGITS
# decimals if set; nothing (or "n/a" with DIGITS) if no run gave one.
plain() { printf '%s\n' "$@" | awk -v digits="${DIGITS:-}" '$1 ~ /^[0-9.]+$/ { v[++n] = $1 + 0 } END {
    if (n == 0) { if (digits != "") print "n/a"; exit }
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    if (digits != "") printf "%." digits "f\n", m; else print m }'; }

# The largest of the values, in KiB, as "N KiB".
largest_kib() { printf '%s\n' "$@" | awk '$1 ~ /^[0-9]+$/ { if (!n++ || $1 > m) m = $1 }
    END { if (n) printf "%d KiB\n", m; else print "n/a" }'; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
versions=""
for name in "${ROWS[@]}"; do
    [[ $name == nginx || $name == haproxy ]] && versions+="${LABEL[$name]} ${VERSION[$name]}; "
done
cat <<EOF

Machine: $(nproc) CPUs, $cpu, Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC').
Code: $(git rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")$(git diff --quiet HEAD -- stage11 stage12 stage13 2>/dev/null || echo " (with uncommitted changes to the stages)"); release builds.
Proxies: ${versions:-nginx and haproxy not measured; }upstream: xps-upstream --epoll (one thread).
Command: \`bash tools/bench-proxy.sh\` (RUNS=$RUNS SECS=$SECS MSG=$MSG BULK=$BULK): median of $RUNS run(s)
(lowest-highest); system calls counted with $COUNTER over ${SYSCALL_SECS} s runs of their own.

| proxy | msgs/s, 1 client | msgs/s, 100 clients | bulk MiB/s ($BULK) | RSS growth in the bulk | proxy CPU µs/msg, 1 / 100 clients | syscalls/msg, 1 client | syscalls/msg, 100 clients |
|---|---|---|---|---|---|---|---|
EOF
for name in "${ROWS[@]}"; do
    # shellcheck disable=SC2086 # the runs are space-separated on purpose
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$name]}" \
        "$(median ${R[$name,rate1]:-})" "$(median ${R[$name,rate100]:-})" \
        "$(DIGITS=0 median ${R[$name,bulk]:-})" "$(largest_kib ${R[$name,rss]:-})" \
        "$(DIGITS=1 plain ${R[$name,cpu1]:-}) / $(DIGITS=1 plain ${R[$name,cpu100]:-})" \
        "${R[$name,sys1]:-}" "${R[$name,sys100]:-}"
done

# The targets: stage 11 at least 1.0x nginx on each figure, and its memory
# growth during the bulk transfer under 4 MiB.
MISSED=()
if [[ -n ${PID[stage11]:-} ]]; then
    echo
    # shellcheck disable=SC2086
    rss=$(largest_kib ${R[stage11,rss]:-})
    rss=${rss%% *}
    if [[ ! $rss =~ ^[0-9]+$ ]]; then
        MISSED+=("RSS growth during the bulk transfer: not measured")
    elif ((rss >= 4096)); then
        MISSED+=("RSS growth during the bulk transfer: $rss KiB, target < 4096 KiB")
    fi
    if [[ -n ${PID[nginx]:-} ]]; then
        line="stage 11 / nginx (medians):"
        for figure in rate1:"msgs/s, 1 client" rate100:"msgs/s, 100 clients" bulk:"bulk MiB/s"; do
            key=${figure%%:*} what=${figure#*:}
            # shellcheck disable=SC2086
            ours=$(plain ${R[stage11,$key]:-}) theirs=$(plain ${R[nginx,$key]:-})
            if [[ -z $ours || -z $theirs ]]; then
                MISSED+=("$what: not measured")
                line+=" $what n/a;"
                continue
            fi
            ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
            line+=" $what ${ratio}x;"
            if awk -v r="$ratio" 'BEGIN { exit !(r < 1.0) }'; then
                MISSED+=("$what: ${ratio}x nginx, target 1.0x")
            fi
        done
        echo "${line%;}."
    else
        echo "No nginx row: stage 11's rates were not compared with anything."
    fi
fi
# Stage 13's target: at least 0.9x stage 11 on each rate, and the same
# memory bound, in this run.
if [[ -n ${PID[stage13]:-} ]]; then
    # shellcheck disable=SC2086
    rss=$(largest_kib ${R[stage13,rss]:-})
    rss=${rss%% *}
    if [[ ! $rss =~ ^[0-9]+$ ]] || ((rss >= 4096)); then
        MISSED+=("stage 13's RSS growth during the bulk transfer: ${rss} KiB, target < 4096 KiB")
    fi
    if [[ -n ${PID[stage11]:-} ]]; then
        line="stage 13 / stage 11 (medians):"
        for figure in rate1:"msgs/s, 1 client" rate100:"msgs/s, 100 clients" bulk:"bulk MiB/s"; do
            key=${figure%%:*} what=${figure#*:}
            # shellcheck disable=SC2086
            ours=$(plain ${R[stage13,$key]:-}) theirs=$(plain ${R[stage11,$key]:-})
            if [[ -z $ours || -z $theirs ]]; then
                MISSED+=("stage 13, $what: not measured")
                line+=" $what n/a;"
                continue
            fi
            ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
            line+=" $what ${ratio}x;"
            if awk -v r="$ratio" 'BEGIN { exit !(r < 0.9) }'; then
                MISSED+=("stage 13, $what: ${ratio}x stage 11, target 0.9x")
            fi
        done
        echo "${line%;}."
    else
        echo "No stage 11 row: stage 13's rates were not compared with anything."
    fi
fi
if ((${#MISSED[@]} > 0)); then
    echo
    echo "${#MISSED[@]} target(s) missed:"
    printf -- '- %s\n' "${MISSED[@]}"
    exit 1
fi
