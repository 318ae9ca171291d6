"""A real multi-node Ray cluster (3 nodes on this machine) and faults, compared value for value.

The cluster runs in its own process (tests/multinode_run.py): a ``ray.cluster_utils``
cluster cannot share a process with the session's ``ray.init``. Two 1-CPU worker nodes
hold all the work. The node with the model actor is killed mid-run, and the actor's
process is killed mid-run: the survivor finishes each run and both stores equal the
uninterrupted one, value for value. A local ``--out`` on several nodes, accepted before,
is refused before any work starts (this part fails on the code before issue 14).

The issue's hang (a 1+1-CPU cluster whose surviving actor holds the only CPU) did not
reproduce here with the actor's CPU cap disabled: Ray placed the work so that the run
finished. The cap (:func:`fovea_ray.pipeline.capacity.actor_cpus_cap`) stays as a guard,
and the stall timeout (tests/test_extract_capacity.py) turns any remaining hang into one
line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(420)
def test_node_and_actor_killed_mid_run_equal_the_uninterrupted_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / "multinode_run.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the numbers of the note (pytest -s)
    assert report["nodes"] == 3 and report["reference"] == {**report["reference"], "done": 12, "complete": True}

    assert report["local_refused"] and "local path, but the Ray cluster has 3 nodes" in report["local_refused"]
    assert "--shared-path" in report["local_refused"] and not report["local_created"]

    node = report["node_fault"]
    assert report["node_killed"]["held_the_actor"], report
    assert node["complete"] and node["done"] == 12 and node["done_after_kill"] >= 8 and node["alive_nodes"] == 2
    assert node["max_abs_diff"] == 0.0

    actor = report["actor_fault"]
    assert report["actor_killed"]["pids"], report
    assert actor["complete"] and actor["done"] == 12 and actor["done_after_kill"] >= 8
    assert actor["max_abs_diff"] == 0.0
