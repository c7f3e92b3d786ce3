#!/usr/bin/env bash
# Installs the Node.js client's dependencies (clients/node) exactly as locked, with `npm ci`.
# Idempotent: skipped when node_modules was installed from the current package-lock.json.
# Needs Node.js 20 or newer with npm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/clients/node"
stamp="$dir/node_modules/.clipd-lock-sha256"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup-node: node and npm are needed (Node.js 20 or newer)" >&2
    exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    echo "setup-node: Node.js $(node --version) is too old; 20 or newer is needed" >&2
    exit 1
fi
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup-node: npm ci in $dir"
    # No install scripts: none of the locked packages needs one (protobufjs's only checks versions).
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi
echo "setup-node: $dir/node_modules matches package-lock.json"
