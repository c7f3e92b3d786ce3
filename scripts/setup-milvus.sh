#!/usr/bin/env bash
# Installs a real Milvus standalone for the Milvus-backed tests: PyPI's `milvus` wheel (58 MB, no
# dependencies) bundles the Milvus 2.3.5 server binary (embedded etcd, local storage, rocksmq) and
# its libraries, xz-compressed. It goes into the project-local virtualenv .venv-milvus, and the
# binaries are unpacked once (246 MB) into .venv-milvus/milvus-2.3.5/bin, so that
# scripts/with-milvus.sh, which starts it, needs not unpack them again for every fresh data
# directory (the wheel's `milvus-server` launcher does, about 7 s of CPU each time). Not
# `milvus-lite`, which is another engine. Idempotent: pip runs only when the package is missing or
# at another version; unpacking only when a file's checksum changed. Prints where things are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-milvus"
MILVUS_VERSION=2.3.5

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "setup-milvus: creating virtualenv $venv"
    python3 -m venv --clear "$venv" || {
        echo "setup-milvus: python3 -m venv failed; on Debian install python3-venv" >&2
        exit 1
    }
fi
installed="$("$venv/bin/python" -c \
    'from importlib.metadata import version; print(version("milvus"))' 2>/dev/null || true)"
if [ "$installed" != "$MILVUS_VERSION" ] || [ ! -x "$venv/bin/milvus-server" ]; then
    echo "setup-milvus: installing milvus==$MILVUS_VERSION (about 58 MB)"
    "$venv/bin/python" -m pip install --quiet "milvus==$MILVUS_VERSION"
fi
# The wheel's own unpacking routine: bin/NAME for each data/bin/NAME.lzma, skipped when
# bin/NAME.lzma.md5 matches.
"$venv/bin/python" -c 'import sys, milvus; milvus._initialize_data_files(sys.argv[1])' \
    "$venv/milvus-$MILVUS_VERSION"
echo "setup-milvus: milvus $MILVUS_VERSION: launcher $venv/bin/milvus-server," \
    "server binary $venv/milvus-$MILVUS_VERSION/bin/milvus"
