"""Drives the two throughput programs (clipd's benches/model.rs and transformers'
model_throughput.py) case by case, alternating between them, so that both see the same machine
at nearly the same moment; prints the table with clipd/transformers ratios.

Each program loads its model once, prints one JSON line when ready, then answers lines
"DTYPE MODALITY BATCH SECONDS" on stdin with one JSON line holding items_per_s. On a shared,
noisy machine the table shows each side's best round, and the ratio is the median of the
rounds' ratios (each measured back to back, so drift between rounds cancels out).
"""

import argparse
import json
import shlex
import statistics
import subprocess
import sys


class Program:
    def __init__(self, name, command):
        self.name = name
        self.proc = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self.read()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"{self.name} exited early (status {self.proc.wait()})")
        return json.loads(line)

    def run(self, case):
        self.proc.stdin.write(case + "\n")
        return self.read()["items_per_s"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clipd", required=True, help="command line of the clipd program")
    ap.add_argument("--reference", required=True, help="command line of the reference program")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    args = ap.parse_args()

    programs = [Program("clipd", args.clipd), Program("transformers", args.reference)]
    cases = [(d, m, b) for d in args.dtypes.split(",") for b in map(int, args.batches.split(","))
             for m in ("image", "text")]
    best, ratios = {}, {}
    for r in range(args.rounds):
        order = programs if r % 2 == 0 else programs[::-1]
        for case in cases:
            rates = {}
            for p in order:
                rates[p.name] = p.run(f"{case[0]} {case[1]} {case[2]} {args.min_seconds}")
                best[(case, p.name)] = max(best.get((case, p.name), 0.0), rates[p.name])
            ratios.setdefault(case, []).append(rates["clipd"] / rates["transformers"])
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    for p in programs:
        p.close()

    print(f"{'dtype':<6}{'input':<7}{'batch':>6}{'clipd/s':>11}{'transformers/s':>16}"
          f"{'ratio':>8}  (ratio of each round)")
    for case in cases:
        ours, ref = best[(case, "clipd")], best[(case, "transformers")]
        each = " ".join(f"{x:.2f}" for x in ratios[case])
        print(f"{case[0]:<6}{case[1]:<7}{case[2]:>6}{ours:>11.1f}{ref:>16.1f}"
              f"{statistics.median(ratios[case]):>7.2f}x  ({each})")
    for dtype, c in sorted(programs[0].ready.get("min_cosine_vs_f32", {}).items()):
        print(f"clipd {dtype} vs f32, lowest cosine: image {c['image']:.6f}, text {c['text']:.6f}")


if __name__ == "__main__":
    main()
