"""Fuzz the artifact loader and ``tensorgate run`` for a while, outside the test suite.

Starts from real artifacts of the demo model (numpy, onnx and verilog targets), applies
the mutations of ``tests/artifact_mutations.py`` (manifest keys, types and paths; files
deleted, truncated, linked; IR weights paths and types; lying weights archives; each
rehashed or not) with seeds 0, 1, 2, ... and counts the outcomes: loaded and run,
refused with a tensorgate error, or an ``internal error`` (anything else escaping; the
target is 0).  The first few internal errors are printed with their seed.

    python benchmarks/fuzz_artifacts.py [--minutes 10] [--first-seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from artifact_mutations import RandomChooser, build_bases, cleanup, fresh_copy, mutate, outcome  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    counts: Counter[str] = Counter()
    edits: Counter[str] = Counter()
    failures: list[tuple[int, list[str], str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        artifacts, inputs = build_bases(Path(scratch))
        started = time.monotonic()
        seed = args.first_seed
        while time.monotonic() - started < args.minutes * 60:
            choose = RandomChooser(seed)
            artifact = fresh_copy(choose.pick(artifacts), Path(scratch) / "case")
            applied = mutate(artifact, choose)
            edits.update(applied)
            result = outcome(artifact, inputs)
            kind = "internal error" if result.startswith("internal error") or "Traceback" in result else result
            counts[kind] += 1
            if kind == "internal error":
                failures.append((seed, applied, result))
            cleanup(artifact)
            seed += 1
        elapsed = time.monotonic() - started
    total = sum(counts.values())
    print(f"artifact fuzz: {total} cases in {elapsed:.0f} s (seeds {args.first_seed}..{seed - 1})")
    print(f"{'outcome':<16}{'cases':>8}")
    for kind in ("ok", "refused", "internal error"):
        print(f"{kind:<16}{counts[kind]:>8}")
    print("edits applied: " + ", ".join(f"{name} {count}" for name, count in sorted(edits.items())))
    for seed, applied, result in failures[:10]:
        print(f"seed {seed} ({', '.join(applied)}): {result}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
