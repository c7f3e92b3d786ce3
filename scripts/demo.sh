#!/usr/bin/env bash
# Sets everything up and runs clipd with its bundled demo model: embeds a text and a picture and
# prints the JSON. Extra arguments go to `clipd embed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec cargo run --release --quiet -- embed \
    --text "a photo of a red circle" --image tests/fixtures/images/rgb_640x480.png "$@"
