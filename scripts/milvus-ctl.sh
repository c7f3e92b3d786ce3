#!/usr/bin/env bash
# Controls the Milvus standalone that scripts/with-milvus.sh started; meant for tests running
# inside with-milvus.sh (it reads the environment that script exports, MILVUS_DATA_DIR above all).
#
#   scripts/milvus-ctl.sh start    start Milvus on the same data directory, wait until healthy
#   scripts/milvus-ctl.sh stop     SIGINT, wait for it to exit, SIGKILL after MILVUS_STOP_TIMEOUT
#   scripts/milvus-ctl.sh kill     SIGKILL every process of this Milvus and wait until they are gone
#   scripts/milvus-ctl.sh restart  stop, then start
#   scripts/milvus-ctl.sh status   print the PID and exit 0 when running and healthy, else exit 1
#   scripts/milvus-ctl.sh pid      print the PID of the running Milvus (exit 1 when none)
#
# The server is the Milvus binary that PyPI's milvus==2.3.5 wheel bundles, unpacked by
# scripts/setup-milvus.sh, run as `milvus run standalone` in MILVUS_DATA_DIR, whose
# configs/milvus.yaml with-milvus.sh renders. Its PID after each start is in $MILVUS_PID_FILE
# (MILVUS_PID only holds the first one). Its output is appended to $MILVUS_LOG. After a start on
# existing data, /healthz answers before loaded collections are queryable again: for some seconds
# queries fail with "collection not loaded" (code 101).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${MILVUS_BIN_DIR:-$root/.venv-milvus/milvus-2.3.5/bin}"
data="${MILVUS_DATA_DIR:?MILVUS_DATA_DIR is not set: run this under scripts/with-milvus.sh}"
pid_file="${MILVUS_PID_FILE:-$data/milvus.pid}"
log="${MILVUS_LOG:-$data/logs/milvus.log}"
# /proc/PID/exe and /proc/PID/cwd are canonical paths.
[ -d "$bin" ] && bin="$(cd "$bin" && pwd -P)"
[ -d "$data" ] && data="$(cd "$data" && pwd -P)"
health_url="${MILVUS_HEALTH_URL:-http://127.0.0.1:9091/healthz}"
health_port="${health_url#http://*:}"
health_port="${health_port%%/*}"
start_timeout="${MILVUS_START_TIMEOUT:-90}"
stop_timeout="${MILVUS_STOP_TIMEOUT:-30}"

say() { echo "milvus-ctl: $*" >&2; }

# A process counts while it exists and is not a zombie.
alive() {
    local state
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
    [ -n "$state" ] && [ "$state" != Z ]
}

# Every live process of this instance: the Milvus binary running in this data directory.
instance_pids() {
    local p exe cwd
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        exe="$(readlink "/proc/$p/exe" 2>/dev/null || true)"
        [ "$exe" = "$bin/milvus" ] || continue
        cwd="$(readlink "/proc/$p/cwd" 2>/dev/null || true)"
        [ "$cwd" = "$data" ] || continue
        alive "$p" && echo "$p"
    done
    return 0
}

healthy() {
    if command -v curl >/dev/null 2>&1; then
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$health_url" 2>/dev/null)" = 200 ]
    else
        python3 - "$health_url" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(r.status != 200)
PY
    fi
}

log_tail() {
    say "last lines of $log:"
    tail -n "${1:-40}" "$log" 2>/dev/null | cut -c1-400 >&2 || true
}

# Waits until none of this instance's processes is left; returns 1 after $1 seconds.
wait_gone() {
    local deadline=$((SECONDS + $1))
    while [ -n "$(instance_pids)" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

do_kill() {
    local pids
    pids="$(instance_pids)"
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    if ! wait_gone 20; then
        say "processes still there after SIGKILL: $(instance_pids | tr '\n' ' ')"
        return 1
    fi
    rm -f "$pid_file"
}

do_stop() {
    local pids
    pids="$(instance_pids)"
    if [ -z "$pids" ]; then
        rm -f "$pid_file"
        return 0
    fi
    # SIGINT and SIGTERM do the same in Milvus 2.3.5: a graceful stop that ends in a panic (exit
    # status 134), harmless: what Milvus acknowledged is in its WAL and is there after a restart.
    # It takes 0.1 s, or common.gracefulStopTimeout (with-milvus.sh sets 5 s) with a loaded
    # collection, but after a restart on the same data anything up to 40 s.
    # shellcheck disable=SC2086
    kill -INT $pids 2>/dev/null || true
    if ! wait_gone "$stop_timeout"; then
        say "still running ${stop_timeout}s after SIGINT; sending SIGKILL"
        do_kill
        return
    fi
    rm -f "$pid_file"
}

do_start() {
    local pid running t0
    running="$(instance_pids)"
    if [ -n "$running" ]; then
        say "already running (PID $(echo "$running" | tr '\n' ' ')); stop or kill it first"
        return 1
    fi
    [ -x "$bin/milvus" ] || { say "$bin/milvus is missing; run scripts/setup-milvus.sh"; return 1; }
    [ -f "$data/configs/milvus.yaml" ] || { say "no $data/configs/milvus.yaml"; return 1; }
    mkdir -p "$data/logs" "$data/home"
    t0="$(date +%s%N)"
    echo "=== milvus-ctl start $(date -u +%FT%TZ)" >>"$log"
    # A clean environment: Milvus 2.3 takes environment variables as overrides of milvus.yaml
    # (PROXY_PORT=19777 moves the proxy, COMMON_SECURITY_AUTHORIZATIONENABLED=true turns on auth),
    # so nothing of the caller's may leak in. Its own
    # session (setsid) keeps a terminal's Ctrl-C away from it; stopping is this script's job.
    (
        cd "$data"
        exec setsid env -i --default-signal=INT,QUIT PATH=/usr/local/bin:/usr/bin:/bin \
            HOME="$data/home" TMPDIR="$data/home" DEPLOY_MODE=STANDALONE \
            METRICS_PORT="$health_port" LD_LIBRARY_PATH="$bin" MILVUSCONF="$data/configs/" \
            "$bin/milvus" run standalone </dev/null >>"$log" 2>&1
    ) &
    pid=$!
    disown "$pid" 2>/dev/null || true # no "Killed" job notice from this shell
    echo "$pid" >"$pid_file"
    while ! healthy; do
        if ! alive "$pid"; then
            say "Milvus (PID $pid) exited while starting"
            log_tail
            rm -f "$pid_file"
            return 1
        fi
        if [ $((($(date +%s%N) - t0) / 1000000000)) -ge "$start_timeout" ]; then
            say "Milvus (PID $pid) not healthy at $health_url after ${start_timeout}s"
            log_tail
            do_kill || true
            return 1
        fi
        sleep 0.2
    done
    say "Milvus healthy after $((($(date +%s%N) - t0) / 1000000)) ms (PID $pid)"
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
kill) do_kill ;;
restart) do_stop && do_start ;;
status)
    pids="$(instance_pids)"
    [ -n "$pids" ] && healthy && echo "$pids"
    ;;
pid)
    pids="$(instance_pids)"
    [ -n "$pids" ] && echo "$pids"
    ;;
*)
    echo "usage: $0 start|stop|kill|restart|status|pid" >&2
    exit 2
    ;;
esac
