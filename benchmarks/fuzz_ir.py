"""A timed fuzz run of the IR parser and verifier (issue 15: no internal errors).

One-token mutations (``tests/ir_mutations.py``) of the printed IR of real models, drawn
at random for ``--seconds``; each mutated text is parsed and verified, and any exception
that is not one of tensorgate's own is counted, grouped by its type and where it was
raised, and its first mutation printed.  Target: 0 foreign exceptions.

    python benchmarks/fuzz_ir.py [--seconds 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ir_mutations import SPECIAL, check_text, mutate, seeds, tokens  # noqa: E402

ACTIONS = ("replace", "replace", "replace", "delete", "duplicate")


def raised_at(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", action="store_true", help="also run each module that verifies, as `tensorgate run`")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    corpus = [(name, text, tensors, feeds if args.run else None, tokens(text))
              for name, text, tensors, feeds in seeds()]
    tried, foreign, first = 0, Counter(), {}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        name, text, tensors, feeds, spans = rng.choice(corpus)
        index, action = rng.randrange(len(spans)), rng.choice(ACTIONS)
        start, stop = spans[rng.randrange(len(spans))]
        replacement = rng.choice(SPECIAL) if rng.random() < 0.6 else text[start:stop]
        exc = check_text(mutate(text, spans, index, action, replacement), tensors, feeds)
        tried += 1
        if exc is not None:
            key = f"{type(exc).__name__} at {raised_at(exc)}"
            foreign[key] += 1
            original = text[spans[index][0]:spans[index][1]]
            first.setdefault(key, f"{name}: token {index} {original!r} {action} {replacement!r}: {exc}")
    print(f"| seeds | cases tried | foreign exceptions | distinct |\n|---|---|---|---|\n"
          f"| {len(corpus)} | {tried:,} | {sum(foreign.values())} | {len(foreign)} |")
    for key, count in foreign.most_common():
        print(f"{count:6d}  {key}\n        {first[key][:300]}")


if __name__ == "__main__":
    main()
