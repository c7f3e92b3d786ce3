#!/usr/bin/env bash
# Sets everything up and runs clipd on a bundled checkpoint: embeds a text and an image and prints
# the JSON. Extra arguments go to `clipd embed`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec cargo run --release --quiet -- embed --model tests/fixtures/models/tiny-a \
    --text "a photo of a cat" --image tests/fixtures/images/rgb_640x480.png "$@"
