"""A multi-node Ray cluster on this machine, and faults: run by tests/test_multinode.py.

Its own process, because a ``ray.cluster_utils.Cluster`` cannot share one with the test
session's ``ray.init``. The cluster: a head with no CPU (the driver's node) and two
1-CPU worker nodes, so every model actor, read task and sink task runs on a worker.

1. an uninterrupted extraction (the reference);
2. a local ``--out`` without ``shared_path`` is refused before any work;
3. the model actor's process is killed (SIGKILL) after the first stored chunk;
4. the node holding the model actor is killed after the first stored chunk (the 1+1-CPU
   case that hung: the survivor must host the restarted actor *and* the read and sink
   tasks).

Prints one JSON line: per fault, the samples done after it and the largest difference
of any value to the reference store.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CANVAS = 64
NET = "fovea_ray.model.examples:two_layer_cnn"
KW = dict(model=NET, layers=["act1", "act2"], stats=["mean", "max"], chunk_size=2, batch_size=2, progress=False)


def _ppid(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    for _ in range(64):
        if pid in (root, 0, 1):
            return pid == root
        try:
            pid = _ppid(pid)
        except (OSError, ValueError):
            return False
    return False


def actor_pids(root: int) -> list[int]:
    """Processes of this cluster (descendants of ``root``) running the model actor."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "ChunkExtractor" in cmd and _descends_from(int(entry.name), root):
            out.append(int(entry.name))
    return out


def max_diff(a: Path, b: Path) -> float:
    import numpy as np

    from fovea_ray.store import open_store

    x, y = open_store(a), open_store(b)
    assert x.good().all() and y.good().all()
    worst = 0.0
    for layer in x.layers:
        worst = max(worst, float(np.max(np.abs(x.activations(layer) - y.activations(layer)))))
    worst = max(worst, float(np.max(np.abs(x.controls() - y.controls()))))
    return worst


def _alive_nodes_settled(expected: int, wait_s: float = 60.0) -> int:
    """The alive nodes, once the GCS has marked a removed node dead (it may take its
    health-check period after the removal; the extraction can finish first)."""
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        alive = len([n for n in ray.nodes() if n["Alive"]])
        if alive <= expected or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def main(work: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster
    from test_extract import make_manifest

    from fovea_ray.data.synthetic import make_synthetic_coco
    from fovea_ray.errors import ClusterError
    from fovea_ray.pipeline import extract

    make_synthetic_coco(work / "coco", n_images=14, seed=0)
    df = make_manifest(work / "coco", 12)
    half = CANVAS // 2
    df["window_xywh"] = [[int(round(x)) - half, int(round(y)) - half, CANVAS, CANVAS] for x, y in df["fixation_xy"]]
    df["canvas"] = [[CANVAS, CANVAS]] * len(df)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    report: dict = {"nodes": len([n for n in ray.nodes() if n["Alive"]])}
    t0 = time.perf_counter()

    ref = work / "ref.zarr"
    s = extract(df, ref, shared_path=True, **KW)
    report["reference"] = {"done": s.done, "complete": s.complete, "seconds": round(time.perf_counter() - t0, 1)}

    try:
        extract(df, work / "local.zarr", **KW)
        report["local_refused"] = None
    except ClusterError as exc:
        report["local_refused"] = str(exc)
    report["local_created"] = (work / "local.zarr").exists()

    me = os.getpid()

    def kill_actor(info: dict) -> None:
        if report.get("actor_killed"):
            return
        pids: list[int] = []
        for _ in range(50):  # the pool's actor may be between processes (a restart)
            pids = actor_pids(me)
            if pids:
                break
            time.sleep(0.1)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        report["actor_killed"] = {"after_samples": info["n"], "pids": pids}

    t2 = time.perf_counter()
    s = extract(df, work / "actor.zarr", shared_path=True, on_chunk=kill_actor, stall_timeout=120, **KW)
    report["actor_fault"] = {
        "done": s.done,
        "done_after_kill": s.done - report["actor_killed"]["after_samples"],
        "complete": s.complete,
        "max_abs_diff": max_diff(ref, work / "actor.zarr"),
        "seconds": round(time.perf_counter() - t2, 1),
    }

    def kill_node(info: dict) -> None:
        if report.get("node_killed"):
            return
        pids = actor_pids(me)
        holds = [w for w in workers if any(_descends_from(p, w.all_processes["raylet"][0].process.pid) for p in pids)]
        cluster.remove_node(holds[0] if holds else workers[0], allow_graceful=False)
        report["node_killed"] = {"after_samples": info["n"], "held_the_actor": bool(holds)}

    t1 = time.perf_counter()
    s = extract(df, work / "node.zarr", shared_path=True, on_chunk=kill_node, stall_timeout=120, **KW)
    report["node_fault"] = {
        "done": s.done,
        "done_after_kill": s.done - report["node_killed"]["after_samples"],
        "complete": s.complete,
        "alive_nodes": _alive_nodes_settled(expected=2),
        "max_abs_diff": max_diff(ref, work / "node.zarr"),
        "seconds": round(time.perf_counter() - t1, 1),
    }

    ray.shutdown()
    cluster.shutdown()
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)
