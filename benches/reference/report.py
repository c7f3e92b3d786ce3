"""Prints clipd's and transformers' throughput side by side, with clipd / transformers ratios,
from the JSON lines the two benchmark programs printed."""

import json
import sys

rows = [json.loads(line) for path in sys.argv[1:] for line in open(path) if line.startswith("{")]
table = {}
for r in rows:
    table.setdefault((r["dtype"], r["modality"], r["batch"]), {})[r["impl"]] = r["items_per_s"]

print(f"{'dtype':<6}{'input':<7}{'batch':>6}{'clipd/s':>11}{'transformers/s':>16}{'ratio':>8}")
for (dtype, modality, batch), v in sorted(table.items()):
    ours, ref = v.get("clipd"), v.get("transformers")
    ratio = f"{ours / ref:.2f}x" if ours and ref else "-"
    fmt = lambda x: f"{x:.1f}" if x else "-"
    print(f"{dtype:<6}{modality:<7}{batch:>6}{fmt(ours):>11}{fmt(ref):>16}{ratio:>8}")
