#!/usr/bin/env bash
# Regenerates tests/fixtures from transformers (see make_fixtures.py). Needs only PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$root/scripts/reference/setup.sh"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
# OpenAI's BPE vocabulary ships inside the open-clip-torch wheel (MIT licensed).
"$root/.venv-ref/bin/python" -m pip download --quiet --no-deps open-clip-torch==3.3.0 -d "$wheels"
"$root/.venv-ref/bin/python" "$root/scripts/reference/make_fixtures.py" \
    --out "$root/tests/fixtures" --wheels "$wheels"
