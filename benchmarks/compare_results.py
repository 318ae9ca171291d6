"""Compare every number of two ``results.json`` files: p-values, accuracies, statistics, nulls.

Used to check that a refactor preserves behaviour: run the same study (same seed) before
and after, then::

    python benchmarks/compare_results.py BEFORE/results.json AFTER/results.json

prints how many numeric leaves the two share, which differ, and which exist in only one.
Timings, versions, paths and the echoed configuration are skipped. Exit status 1 when a
shared number differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

SKIP = {"wall_s", "created", "versions", "run_config", "store"}


def _key(item: Any, index: int) -> Any:
    """A list entry's stable name: its layer and test name where it has them."""
    if isinstance(item, dict):
        if "layer" in item and "name" in item:
            return f"{item['layer']}:{item['name']}"
        for field in ("name", "layer"):
            if field in item:
                return item[field]
    return index


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for every numeric, boolean or null leaf; numeric lists as one tuple."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in SKIP:
                yield from leaves(v, f"{path}/{k}")
    elif isinstance(obj, list):
        if obj and all(isinstance(x, (int, float)) or x is None for x in obj):
            yield path, tuple(obj)
        else:
            for i, v in enumerate(obj):
                yield from leaves(v, f"{path}[{_key(v, i)}]")
    elif obj is None or isinstance(obj, (bool, int, float)):
        yield path, obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--show", type=int, default=40, help="at most this many rows per list")
    args = parser.parse_args(argv)
    with open(args.before) as f:
        a = dict(leaves(json.load(f)))
    with open(args.after) as f:
        b = dict(leaves(json.load(f)))
    common = [p for p in a if p in b]
    diff = [p for p in common if a[p] != b[p]]
    print(f"shared numeric leaves: {len(common)}; differing: {len(diff)}")
    for p in diff[: args.show]:
        print(f"  DIFF {p}: {str(a[p])[:60]} -> {str(b[p])[:60]}")
    only_a, only_b = [p for p in a if p not in b], [p for p in b if p not in a]
    print(f"only in {args.before}: {len(only_a)}; only in {args.after}: {len(only_b)}")
    for p in only_a[: args.show]:
        print(f"  - {p}")
    for p in only_b[: args.show]:
        print(f"  + {p}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
