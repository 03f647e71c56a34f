# What tools/bench.sh, bench-proxy.sh and bench-file.sh share, sourced by
# each after it has set WORK (its temporary folder) and note() (its
# messages on stderr, prefixed with its name). Not run on its own.
# shellcheck shell=bash

# Every process started here, to be stopped on the way out: SIGTERM, then
# SIGKILL for whatever is still there 0.2 s later. The temporary folder
# goes too, even on failure or Ctrl+C.
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls `condition` (a command) every 10 ms for at most $1 seconds.
wait_for() {
    local tries=$(($1 * 100)); shift
    while ! "$@"; do
        tries=$((tries - 1))
        ((tries > 0)) || return 1
        sleep 0.01
    done
}

# The value of `key` in a "result: k=v k=v" line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# listening PORT: true if something listens on 127.0.0.1:PORT.
listening() {
    local hex; hex=$(printf '0100007F:%04X' "$1")
    awk -v want="$hex" 'NR > 1 && $2 == want && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp
}

# free_port: sets FREE to a port above 30000 that no socket of this
# machine uses, nor any server started here.
USED_PORTS=()
free_port() {
    local hex
    while true; do
        FREE=$((30000 + RANDOM % 30000))
        hex=$(printf ':%04X ' "$FREE")
        if ! grep -qi "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null &&
            [[ " ${USED_PORTS[*]} " != *" $FREE "* ]]; then
            USED_PORTS+=("$FREE")
            return
        fi
    done
}

# The CPU time, in nanoseconds, of every thread of process $1.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# The VmRSS of process $1, in KiB (nothing if it is gone).
rss_kib() {
    local key value _unit
    while read -r key value _unit; do
        if [[ $key == VmRSS: ]]; then echo "$value"; return; fi
    done <"/proc/$1/status" 2>/dev/null || true
}

# make_sample FILE BYTES SIZE_VAR: writes BYTES random bytes to FILE with
# mkdata (every byte written, a fast generator's: nothing sparse, nothing
# compressible, in a few seconds where /dev/urandom takes twenty), makes
# it readable by anyone (a stage serves no other file, and nginx's worker
# must reach it), then reads it once, so that every transfer reads it
# from the page cache. SIZE_VAR names the variable the size came from,
# for the message when the disk is too small. Needs $BIN/mkdata.
make_sample() {
    local file=$1 bytes=$2 size_var=$3 dir avail
    dir=$(dirname "$file")
    mkdir -p "$dir"
    avail=$(df --output=avail -B1 "$dir" | tail -1)
    if ((avail < bytes + (64 << 20))); then
        note "$dir has $((avail >> 20)) MiB free; the file needs ${!size_var}" \
            "(TMPDIR=elsewhere, or $size_var=smaller)"
        exit 1
    fi
    note "writing ${!size_var} of random bytes to $file"
    "$BIN/mkdata" "$file" "$bytes" >"$WORK/mkdata.out" 2>&1 ||
        { note "mkdata failed:"; cat "$WORK/mkdata.out" >&2; exit 1; }
    if [[ $(stat -c %s "$file") != "$bytes" ]]; then note "mkdata wrote the wrong size"; exit 1; fi
    chmod 755 "$(dirname "$dir")" "$dir"
    chmod 644 "$file"
    cat "$file" >/dev/null
}

# write_reader PATH: writes the file client to PATH. It connects to
# 127.0.0.1:PORT, sends the request if there is one, reads until EOF into
# a 1 MiB page-aligned buffer, and prints "BODY_BYTES SECONDS STATUS"
# (status "-" without a request: raw bytes, as a file port sends them).
# With --copy it also writes the body to stdout, for cmp.
#   python3 PATH PORT [REQUEST [--copy]]
write_reader() {
    cat >"$1" <<'EOF'
import mmap, socket, sys, time

port = int(sys.argv[1])
request = sys.argv[2].encode() if len(sys.argv) > 2 and sys.argv[2] else b""
copy = "--copy" in sys.argv[3:]
out = sys.stdout.buffer
buf = mmap.mmap(-1, 1 << 20)
view = memoryview(buf)
start = time.perf_counter()
sock = socket.create_connection(("127.0.0.1", port))
if request:
    sock.sendall(request)
status, body = "-", 0
if request:
    head = b""
    while b"\r\n\r\n" not in head:
        n = sock.recv_into(view)
        if not n:
            break
        head += bytes(view[:n])
    end = head.find(b"\r\n\r\n")
    if end < 0:
        print(0, 0, "no-headers")
        sys.exit(0)
    status = head.split(b" ", 2)[1].decode(errors="replace")
    body = len(head) - end - 4
    if copy:
        out.write(head[end + 4:])
while True:
    n = sock.recv_into(view)
    if not n:
        break
    body += n
    if copy:
        out.write(view[:n])
seconds = time.perf_counter() - start
if copy:
    out.flush()
    print(body, f"{seconds:.6f}", status, file=sys.stderr)
else:
    print(body, f"{seconds:.6f}", status)
EOF
}

# syscall_table COUNTS UNITS DIGITS: the system calls counted in the file
# COUNTS, per unit (UNITS of them: messages, MiB), as "TOTAL (name N,
# name N...)", largest first, DIGITS decimals, leaving out the calls that
# round to zero at that many decimals; "n/a" when there is nothing to
# divide. $COUNTER says which tool wrote COUNTS. perf stat:
# "  16079      syscalls:sys_enter_write", and the total on
# raw_syscalls:sys_enter (what is not named is "other");
# strace -c: the calls in the 4th column, the name in the last.
syscall_table() {
    awk -v units="${2:-0}" -v digits="$3" -v counter="$COUNTER" '
        counter == "perf" {
            n = $1; gsub(",", "", n)
            if (n !~ /^[0-9]+$/) next
            if ($2 == "raw_syscalls:sys_enter") total = n
            else if ($2 ~ /^syscalls:sys_enter_/ && n > 0) {
                name = $2; sub("syscalls:sys_enter_", "", name); calls[name] = n; named += n
            }
        }
        counter == "strace" && $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            calls[$NF] = $4; total += $4; named += $4
        }
        END {
            if (units == 0 || total == 0) { print "n/a"; exit }
            if (total > named) calls["other"] = total - named
            format = "%." digits "f"
            smallest = 0.5 / (10 ^ digits)
            printf format, total / units
            n = 0
            for (s in calls) order[++n] = s
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (calls[order[j]] > calls[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
            sep = " ("
            for (i = 1; i <= n; i++) {
                per = calls[order[i]] / units
                if (per >= smallest) { printf "%s%s " format, sep, order[i], per; sep = ", " }
            }
            if (sep == ", ") printf ")"
        }' "$1"
}
