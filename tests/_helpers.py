"""Helpers shared by several test modules (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import contextlib
import io
import itertools

import pytest


def run_cli(args: list[str]) -> tuple[int, str]:
    """Run ``fovea-ray ARGS`` in this process (reusing the session's Ray): (exit code, stdout + stderr)."""
    from fovea_ray.cli import main

    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, buf.getvalue()


def blossom_total(eligible: dict) -> int:
    """The balanced optimum by an independent route: twice a maximum matching (Edmonds' blossom).

    Two images that share a category can form one type-1/type-0 pair, so the most
    balanced samples are twice the maximum cardinality matching of the graph that joins them.
    """
    nx = pytest.importorskip("networkx")
    g = nx.Graph()
    g.add_nodes_from(eligible)
    for a, b in itertools.combinations(eligible, 2):
        if set(eligible[a]) & set(eligible[b]):
            g.add_edge(a, b)
    return 2 * len(nx.max_weight_matching(g, maxcardinality=True))
