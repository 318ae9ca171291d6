"""Per-step progress: device-accurate phase timing and the ``metrics.jsonl`` log.

Timing on CUDA uses CUDA events (recorded in stream order, read back only when a line is
logged), so measuring the foveation share adds no synchronisation to the steps that are
not logged. On the CPU the work is synchronous and ``time.perf_counter`` is exact.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import torch

__all__ = ["METRICS_NAME", "MetricsLog", "PhaseTimer", "format_line", "read_metrics"]

METRICS_NAME = "metrics.jsonl"


class PhaseTimer:
    """Times named phases of a step on ``device``; :meth:`collect` returns ms per phase.

    Use ``mark("start")``, ``mark("foveated")``, ``mark("end")`` in order; phase
    durations are differences between consecutive marks, summed over the steps since the
    last :meth:`collect`.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._steps: list[list[tuple[str, Any]]] = []

    def mark(self, name: str) -> None:
        if name == "start":
            self._steps.append([])
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._steps[-1].append((name, ev))
        else:
            self._steps[-1].append((name, time.perf_counter()))

    def collect(self) -> dict[str, float]:
        """{"<a>_to_<b>" ms, ..., "total" ms} summed over the steps since the last call."""
        out: dict[str, float] = {}
        for marks in self._steps:
            if len(marks) < 2:
                continue
            if self.cuda:
                marks[-1][1].synchronize()
            for (a, ta), (b, tb) in zip(marks, marks[1:]):
                ms = ta.elapsed_time(tb) if self.cuda else (tb - ta) * 1e3
                out[f"{a}_to_{b}"] = out.get(f"{a}_to_{b}", 0.0) + ms
            total = marks[0][1].elapsed_time(marks[-1][1]) if self.cuda else (marks[-1][1] - marks[0][1]) * 1e3
            out["total"] = out.get("total", 0.0) + total
        self._steps = []
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_line(rec: Mapping[str, Any], steps: int) -> str:
    """One terminal line for a metrics record."""

    def num(key: str, spec: str, scale: float = 1.0) -> str:
        value = rec.get(key)
        return "nan" if value is None else format(scale * value, spec)

    parts = [f"step {rec['step']:>6d}/{steps}", f"loss {num('loss', '.4f')}"]
    comps = [f"{k.replace('loss_', '')} {num(k, '.3f')}" for k in sorted(rec) if k.startswith("loss_")]
    if comps:
        parts.append("(" + ", ".join(comps) + ")")
    parts.append(f"lr {num('lr', '.2e')}")
    parts.append(f"{num('images_per_s', '.2f')} img/s")
    parts.append(f"fov {num('foveation_share', '.1f', 100.0)}%")
    for key in ("bbox_AP", "segm_AP", "train_top1", "val_top1", "val_top5"):
        if key in rec:
            parts.append(f"{key} {num(key, '.3f')}")
    return "  ".join(parts)


class MetricsLog:
    """Appends one JSON line per logged step to ``OUT/metrics.jsonl`` and prints it.

    On resume from step ``s`` the lines of steps ``>= s`` (written by the interrupted
    run after its last checkpoint) are dropped first, so the log reads as one run.
    """

    def __init__(self, out_dir: str | Path, steps: int, *, resume_step: int = 0, stream: TextIO | None = None) -> None:
        self.path = Path(out_dir) / METRICS_NAME
        self.steps = steps
        self.stream = stream if stream is not None else sys.stdout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if r.get("step", -1) < resume_step] if resume_step > 0 else []
        with self.path.open("w") as fh:
            for rec in kept:
                fh.write(json.dumps(rec) + "\n")

    def write(self, rec: Mapping[str, Any]) -> None:
        rec = {k: _clean(v) for k, v in rec.items()}
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        # A direct write: Ray Train patches print() on its workers and would show it twice.
        self.stream.write(format_line(rec, self.steps) + "\n")
        self.stream.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a torn last line from a killed run is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
