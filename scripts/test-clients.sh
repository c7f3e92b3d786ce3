#!/usr/bin/env bash
# The client examples in other languages against a live server: starts target/release/clipd on a
# free loopback port with the bundled demo model, API keys and a scratch data directory, runs the Python
# client's tests (clients/python) and the Node.js client's (clients/node), and `buf lint` on the
# proto; then stops the server with SIGTERM and expects it to exit 0. Exits non-zero on any failure.
# CLIPD_BIN overrides the binary (default target/release/clipd, built if missing).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup-tools.sh
bash scripts/setup-node.sh
bash clients/python/generate.sh "$root/.venv-tools/bin/python"

bin="${CLIPD_BIN:-$root/target/release/clipd}"
if [ ! -x "$bin" ]; then
    echo "test-clients: $bin is missing; building it"
    bash scripts/setup.sh
    cargo build --release --bin clipd
fi

scratch="$(mktemp -d)"
server_pid=""
# Sends SIGTERM and waits for the server to exit (SIGKILL after 60 s); its exit status in $status.
stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    (sleep 60 && kill -KILL "$server_pid" 2>/dev/null) &
    local watchdog=$!
    status=0
    wait "$server_pid" || status=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    server_pid=""
}
cleanup() {
    if [ -n "$server_pid" ]; then
        stop_server
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

log="$scratch/server.log"
# API keys, as users in production run it: the clients send the write key (CLIPD_API_KEY) and
# test that no key, and a read key on a write, are refused. Metrics on a free port too (the
# default is 0.0.0.0:9090).
export CLIPD_API_KEY="clients-test-write-key" CLIPD_READ_KEY="clients-test-read-key"
CLIPD__INDEX__DATA_DIR="$scratch/data" CLIPD__METRICS__ADDR=127.0.0.1:0 \
    CLIPD__AUTH__READ_KEYS="$CLIPD_READ_KEY" CLIPD__AUTH__WRITE_KEYS="$CLIPD_API_KEY" \
    "$bin" serve --grpc-addr 127.0.0.1:0 >"$scratch/server.out" 2>"$log" &
server_pid=$!

# The address is in the line the server logs once the model is loaded and warmed up.
addr=""
for _ in $(seq 600); do
    addr="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'serving addr=[^ ]*' | head -1 | cut -d= -f2 || true)"
    [ -n "$addr" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "test-clients: the server exited before serving:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done
if [ -z "$addr" ]; then
    echo "test-clients: the server did not report serving within 120 s:" >&2
    cat "$log" >&2
    exit 1
fi
echo "test-clients: clipd serving at $addr"
export CLIPD_ADDR="$addr"

failed=()
(cd clients/python && "$root/.venv-tools/bin/python" -m unittest -v test_client) || failed+=(python)
(cd clients/node && node --test test.js) || failed+=(node)
"$root/.venv-tools/bin/buf" lint && echo "test-clients: buf lint passed" || failed+=("buf lint")

stop_server
if [ "$status" != 0 ]; then
    echo "test-clients: the server exited with status $status after SIGTERM (expected 0):" >&2
    tail -20 "$log" >&2
    failed+=("server shutdown")
fi

if [ "${#failed[@]}" -gt 0 ]; then
    echo "test-clients: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test-clients: python, node, buf lint and server shutdown all passed"
