#!/usr/bin/env bash
# Runs a command next to a fresh, private Milvus 2.3.5 standalone (scripts/setup-milvus.sh installs
# it), for tests that need a real Milvus:
#
#   scripts/with-milvus.sh CMD [ARGS...]
#   MILVUS_AUTH=1 scripts/with-milvus.sh cargo test --test milvus
#
# CMD and Milvus run in new network, PID and mount namespaces: only loopback is up, so Milvus (which
# listens on all interfaces) can't be reached from, or collide with, anything outside, and several
# runs can go on at once. Milvus gets a new temporary data directory, is waited for until
# GET /healthz answers 200 (MILVUS_START_TIMEOUT, default 90 s; on failure the log tail is printed
# and the script exits 1 without running CMD), then CMD runs with:
#
#   MILVUS_URL=http://127.0.0.1:19530   Milvus' gRPC API (also its REST API v1, /v1/vector/...);
#                      https://... when TLS is on (MILVUS_CONFIG="tls_mode=1 ...", see below)
#   MILVUS_HOST=127.0.0.1 MILVUS_PORT=19530 MILVUS_TLS_MODE=0|1|2
#   MILVUS_HEALTH_URL=http://127.0.0.1:9091/healthz
#   MILVUS_DATA_DIR    the temporary directory (configs/milvus.yaml, data/, logs/); removed at exit
#   MILVUS_LOG         Milvus' output ($MILVUS_DATA_DIR/logs/milvus.log)
#   MILVUS_PID         PID of the Milvus process as first started (inside the PID namespace)
#   MILVUS_PID_FILE    the current PID, kept up to date by MILVUS_CTL
#   MILVUS_CTL         scripts/milvus-ctl.sh: `start` (same data dir, waits until healthy), `stop`,
#                      `kill` (SIGKILL of every Milvus process), `restart`, `status`, `pid`
#   MILVUS_AUTH        1 when authorization is enabled, else 0
#   with MILVUS_AUTH=1, the credentials of Milvus' built-in superuser:
#   MILVUS_USER=root MILVUS_PASSWORD=Milvus MILVUS_TOKEN=root:Milvus
#   MILVUS_AUTHORIZATION=cm9vdDpNaWx2dXM=   base64("root:Milvus"): the value of the gRPC metadata
#                      key `authorization` that Milvus checks (REST API: the header
#                      `Authorization: Bearer root:Milvus`, or HTTP Basic root/Milvus)
#
# Options, as environment variables:
#   MILVUS_AUTH=1      common.security.authorizationEnabled: true
#   MILVUS_CONFIG="key=value ..."  more settings, each an item of the wheel's config template
#                      (tls_mode, server_pem_path, server_key_path, ca_pem_path, etcd_log_level,
#                      ...) or the dotted key of a setting in that template (common.session.ttl=30,
#                      log.level=debug); anything else is refused
#   TLS: MILVUS_CONFIG="tls_mode=1 server_pem_path=/abs/server.pem server_key_path=/abs/server.key"
#                      puts gRPC on 19530 behind TLS (plaintext is refused there); tls_mode=2 is
#                      mutual TLS and also needs ca_pem_path=/abs/ca.pem
#   MILVUS_START_TIMEOUT (default 90), MILVUS_STOP_TIMEOUT (`$MILVUS_CTL stop`, default 30),
#   MILVUS_EXIT_TIMEOUT (see below), in seconds
#
# At exit, normal, on error or on SIGINT/SIGTERM/SIGHUP, Milvus gets SIGINT, is waited for
# (SIGKILL after MILVUS_EXIT_TIMEOUT, default 10 s), the data directory is removed, and the script
# exits with CMD's status (128+N when stopped by signal N). Leaving the PID namespace kills whatever
# is still in it, so no Milvus process outlives the script even if it is itself SIGKILLed.
# Needs root (unshare, mount). Writes nothing outside its temporary directory but the two empty
# directories /run/milvus and /tmp/milvus, where Milvus 2.3.5 insists on putting its lock and
# server-id files; inside the namespace they are bind mounts of per-run directories.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-milvus"
bin="$venv/milvus-2.3.5/bin"
ctl="$root/scripts/milvus-ctl.sh"

say() { echo "with-milvus: $*" >&2; }

# ---- Inside the namespaces: PID 1 of the new PID namespace. ----
if [ "${1:-}" = __with_milvus_inner__ ]; then
    data="$2"
    shift 2
    ip link set lo up
    mount --bind "$data/run" /run/milvus
    mount --bind "$data/tmp" /tmp/milvus
    export MILVUS_HOST=127.0.0.1 MILVUS_PORT=19530
    MILVUS_TLS_MODE="$(sed -n 's/^ *tlsMode: *\([0-9]\).*/\1/p' "$data/configs/milvus.yaml")"
    if [ "${MILVUS_TLS_MODE:-0}" = 0 ]; then
        export MILVUS_URL="http://$MILVUS_HOST:$MILVUS_PORT" MILVUS_TLS_MODE=0
    else
        export MILVUS_URL="https://$MILVUS_HOST:$MILVUS_PORT" MILVUS_TLS_MODE
    fi
    export MILVUS_HEALTH_URL=http://127.0.0.1:9091/healthz
    export MILVUS_DATA_DIR="$data" MILVUS_LOG="$data/logs/milvus.log"
    export MILVUS_PID_FILE="$data/milvus.pid" MILVUS_CTL="$ctl"
    if [ "${MILVUS_AUTH:-0}" = 1 ]; then
        export MILVUS_AUTH=1 MILVUS_USER=root MILVUS_PASSWORD=Milvus MILVUS_TOKEN=root:Milvus
        MILVUS_AUTHORIZATION="$(printf %s "$MILVUS_TOKEN" | base64)"
        export MILVUS_AUTHORIZATION
    else
        export MILVUS_AUTH=0
    fi

    cmd_pid=
    cleanup() {
        local rc=$? left
        trap - EXIT INT TERM HUP
        set +e
        if [ -n "$cmd_pid" ] && kill -0 "$cmd_pid" 2>/dev/null; then
            kill -TERM "$cmd_pid" 2>/dev/null
            for _ in $(seq 100); do kill -0 "$cmd_pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$cmd_pid" 2>/dev/null
            wait "$cmd_pid" 2>/dev/null
        fi
        # The data are thrown away: no point in waiting long for Milvus' graceful stop, which after
        # a restart on the same data takes anything from 0.2 to over 30 s.
        MILVUS_STOP_TIMEOUT="${MILVUS_EXIT_TIMEOUT:-10}" "$ctl" stop
        left="$("$ctl" pid 2>/dev/null)"
        [ -z "$left" ] || say "Milvus still running after stop: $left"
        rm -rf "$data"
        exit "$rc"
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    "$ctl" start || exit 1
    MILVUS_PID="$(cat "$MILVUS_PID_FILE")"
    export MILVUS_PID
    say "Milvus PID $MILVUS_PID at $MILVUS_URL (auth: $MILVUS_AUTH), data $data"
    # In the background, so that the traps run at once on a signal. A background job of a script
    # would get stdin from /dev/null and ignore SIGINT and SIGQUIT: the redirection keeps stdin, and
    # env --default-signal gives CMD the usual signal dispositions.
    env --default-signal=INT,QUIT "$@" <&0 &
    cmd_pid=$!
    rc=0
    wait "$cmd_pid" || rc=$?
    cmd_pid=
    exit "$rc"
fi

# ---- Outside: prepare, then run this script again in new namespaces. ----
if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]   (options: MILVUS_AUTH=1, MILVUS_CONFIG=\"key=value ...\")" >&2
    exit 2
fi
[ "$(id -u)" -eq 0 ] || { say "must run as root (it uses unshare and mount)"; exit 1; }
if [ ! -x "$bin/milvus" ] || [ ! -x "$venv/bin/python" ]; then
    say "Milvus is not installed; run scripts/setup-milvus.sh"
    exit 1
fi
mkdir -p /run/milvus /tmp/milvus
data="$(mktemp -d "${TMPDIR:-/tmp}/with-milvus.XXXXXX")"
data="$(cd "$data" && pwd -P)"
ns_pid=
outer_cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [ -n "$ns_pid" ] && kill -0 "$ns_pid" 2>/dev/null; then
        # unshare blocks SIGINT and SIGTERM while it waits; signal PID 1 of the namespace.
        pkill -TERM -P "$ns_pid" 2>/dev/null
        wait "$ns_pid" 2>/dev/null
    fi
    rm -rf "$data"
    exit "$rc"
}
trap outer_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mkdir -p "$data/run" "$data/tmp" "$data/home" "$data/logs"

# Render configs/milvus.yaml with the wheel's own template engine (what `milvus-server --data DIR`
# does), but with fixed ports: the wheel's launcher silently moves a port that it can't bind (say,
# 19530 with connections in TIME_WAIT after a kill) to the next free one.
"$venv/bin/python" - "$data" "${MILVUS_AUTH:-0}" "${MILVUS_CONFIG:-}" <<'PY'
import re, sys
from milvus import MilvusServerConfig

data, auth, extra = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split()
cfg = MilvusServerConfig()
# The dotted keys of the template (the renderer can only change those, and ignores others).
known, path = set(), []
for line in cfg.template_text.splitlines():
    m = re.match(r"^( *)([a-zA-Z0-9_]+):", line)
    if m and not line.lstrip().startswith("#"):
        path = path[: len(m.group(1)) // 2] + [m.group(2)]
        known.add(".".join(path))
cfg.update(data_dir=data)
cfg.set("authorization_enabled", auth)
# Quick stops: Milvus waits up to 1800 s by default for its components to stop gracefully, and a
# standalone query node with a loaded collection always waits the whole time (it has nowhere to
# hand its segments).
cfg.set("common.gracefulStopTimeout", 5)
# Quicker restarts on the same data: a killed or stopped Milvus leaves its sessions in etcd until
# their lease (default 30 s) runs out, and the new one waits for them (healthy after about 9 s
# instead of 3, loaded collections queryable again after about 35 s instead of 15).
cfg.set("common.session.ttl", 10)
for item in extra:
    key, sep, val = item.partition("=")
    if not sep:
        sys.exit(f"with-milvus: MILVUS_CONFIG item {item!r} is not key=value")
    if key in cfg.configurable_items:
        kind = cfg.get_type(key)
        cfg.set(key, val.lower() == "true" if kind is bool else kind(val))
    elif key in known:
        cfg.set(key, val)
    else:
        sys.exit(f"with-milvus: MILVUS_CONFIG key {key!r} is not in the config template")
cfg.resolve_storage()
cfg.write_config()
PY

# --kill-child: should unshare die, PID 1 of the namespace gets SIGTERM and cleans up; setpriv's
# parent-death signal covers this script being SIGKILLed. (env: see CMD's start above.)
env --default-signal=INT,QUIT setpriv --pdeathsig KILL \
    unshare --net --pid --fork --mount --mount-proc --kill-child=TERM \
    bash "$0" __with_milvus_inner__ "$data" "$@" <&0 &
ns_pid=$!
rc=0
wait "$ns_pid" || rc=$?
ns_pid=
exit "$rc"
