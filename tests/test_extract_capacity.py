"""Plans the cluster cannot run are refused in one line, and a stalled run says what it waits for.

Real local Ray (the session's: 2 CPUs, no GPU) and a tiny real network. Before these
checks, ``--device cuda`` on a CPU-only Ray waited for ever for a GPU actor, and
``test --device cuda --local`` without CUDA exited 0.
"""

from __future__ import annotations

import threading
import time

import pytest
from _helpers import run_cli
from test_extract_integrity import KW, manifest  # noqa: F401 - the module fixture

from fovea_ray.errors import ClusterError
from fovea_ray.pipeline.capacity import Capacity, actor_cpus_cap, check_capacity, check_shared_output, watch_stalls


@pytest.mark.timeout(120)
def test_cuda_on_a_cpu_only_ray_is_refused_before_any_work(ray_session, manifest, tmp_path):  # noqa: F811
    from fovea_ray.pipeline import extract

    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match=r"--device cuda: the Ray cluster has no GPU .*--device cpu"):
        extract(manifest, tmp_path / "s.zarr", device="cuda", **KW)
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.timeout(120)
def test_a_stalled_run_says_what_it_waits_for(ray_session, manifest, tmp_path):  # noqa: F811
    from fovea_ray.pipeline import extract
    from fovea_ray.store import open_store

    # GPU actors awaited on a cluster that will never get a GPU: no chunk can ever be stored.
    with pytest.raises(ClusterError) as err:
        extract(
            manifest,
            tmp_path / "s.zarr",
            device="cuda",
            wait_for_resources=True,
            stall_timeout=8,
            shared_path=True,
            **KW,
        )
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("no progress: no chunk stored for 8 s")
    assert "0 samples stored" in msg and "1 GPU each" in msg and "0 GPUs free" in msg
    assert open_store(tmp_path / "s.zarr").attrs["status"] == "incomplete"


@pytest.mark.timeout(120)
def test_too_many_actors_for_the_cpus_is_refused(ray_session, manifest, tmp_path):  # noqa: F811
    from fovea_ray.pipeline import extract

    with pytest.raises(ClusterError, match=r"the plan needs 2.25 CPUs \(7 model actors of 0.25 CPUs"):
        extract(manifest, tmp_path / "s.zarr", num_actors=7, **KW)


def test_test_device_cuda_without_cuda_is_refused(ray_session, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "missing.zarr"  # refused before the store is even opened
    for extra in (["--local"], []):
        code, text = run_cli(["test", str(store), "--device", "cuda", *extra, "--out", str(tmp_path / "r.json")])
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "--device cuda" in lines[0] and "--device cpu" in lines[0], text


def test_capacity_rules():
    two = Capacity(cpus=2, gpus=0, node_cpus=(1.0, 1.0), node_gpus=(0.0, 0.0))
    # A 1-CPU node keeps half a CPU beside its actor: after losing the other node, read and
    # sink tasks still run there one at a time (the 1+1-CPU hang).
    assert actor_cpus_cap(two.node_cpus) == 0.5
    check_capacity(two, use_gpu=False, actors=1, actor_cpus=0.5)
    with pytest.raises(ClusterError, match="no node has that many"):
        check_capacity(two, use_gpu=False, actors=1, actor_cpus=1.5)
    with pytest.raises(ClusterError, match="local path, but the Ray cluster has 2 nodes"):
        check_shared_output("/data/store.zarr", two)
    check_shared_output("/shared/store.zarr", two, shared_path=True)
    check_shared_output("s3://bucket/store.zarr", two)
    check_shared_output("/data/store.zarr", Capacity(2, 0, (2.0,), (0.0,)))
    with pytest.raises(ClusterError, match="will add GPU nodes"):
        check_shared_output("/data/store.zarr", Capacity(2, 0, (2.0,), (0.0,)), nodes_to_come=True)


def test_watch_stalls_passes_items_and_errors_and_times_out():
    assert list(watch_stalls(iter(range(5)), 5, lambda: "")) == list(range(5))

    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(watch_stalls(broken(), 5, lambda: ""))
    never = threading.Event()

    def stuck():
        yield 1
        never.wait()

    got = []
    with pytest.raises(ClusterError, match=r"no chunk stored for 0.5 s .*waiting for the sink"):
        for item in watch_stalls(stuck(), 0.5, lambda: "waiting for the sink"):
            got.append(item)
    assert got == [1]
    never.set()


def test_watch_stalls_stops_the_iterator_it_gives_up_on():
    # The stall is raised inside the blocked next(), so the iterator's own cleanup runs
    # (Ray Data shuts its executor down there); a helper thread used to leave it blocked.
    never = threading.Event()
    cleaned = threading.Event()

    def stuck():
        try:
            yield 1
            while not never.is_set():
                time.sleep(0.01)
        finally:
            cleaned.set()

    with pytest.raises(ClusterError, match="no chunk stored for 0.3 s"):
        list(watch_stalls(stuck(), 0.3, lambda: "waiting"))
    assert cleaned.is_set()
    never.set()


def test_watch_stalls_does_not_time_the_consumer():
    # Only the wait for the next item counts: a slow loop body is not a stall.
    got = []
    for item in watch_stalls(iter(range(3)), 0.2, lambda: ""):
        time.sleep(0.35)
        got.append(item)
    assert got == [0, 1, 2]


def test_watch_stalls_keeps_a_timer_the_caller_armed():
    import signal

    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(time.monotonic()))
    try:
        t0 = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.5)

        def slow():
            for i in range(8):
                time.sleep(0.1)
                yield i

        assert list(watch_stalls(slow(), 5, lambda: "")) == list(range(8))
        # The caller's timer came due during the loop, at its own time, through its handler.
        assert len(fired) == 1 and 0.45 <= fired[0] - t0 < 0.7
        assert signal.getitimer(signal.ITIMER_REAL)[0] == 0

        signal.setitimer(signal.ITIMER_REAL, 30)
        list(watch_stalls(iter(range(3)), 5, lambda: ""))
        assert 25 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30  # re-armed with what was left
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_watch_stalls_off_the_main_thread_uses_a_drain_thread():
    never = threading.Event()
    out = {}

    def stuck():
        yield 1
        never.wait()

    def consume():
        try:
            out["items"] = list(watch_stalls(stuck(), 0.3, lambda: "waiting"))
        except ClusterError as exc:
            out["error"] = str(exc)

    t = threading.Thread(target=consume)
    t.start()
    t.join(10)
    never.set()
    assert "no chunk stored for 0.3 s" in out["error"]
