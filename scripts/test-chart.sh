#!/usr/bin/env bash
# The Helm chart's offline checks (helm/clipd): lint, render several value sets, values schema,
# Kubernetes schema validation of every manifest. Needs only Python 3 and PyPI (no helm, docker or
# cluster).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup-tools.sh
exec "$root/.venv-tools/bin/python" tests/helm/test_chart.py "$@"
