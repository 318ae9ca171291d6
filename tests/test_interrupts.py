"""SIGINT / SIGTERM during ``fovea-ray extract``, and which Ray a run joins (issue 14, defects 1 and 5).

Real subprocesses that get a real signal while the pipeline runs: exit 130 / 143, one
line saying how many samples are done, the store's status "interrupted", and a rerun
that finishes the store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _helpers import chunks_done, random_store, signal_when
from test_extract import LAYERS, STATS, make_manifest

from fovea_ray.store import open_store

N = 8


def _args(manifest: Path, out: Path) -> list[str]:
    return [
        "extract",
        str(manifest),
        "--out",
        str(out),
        "--arch",
        "resnet50",
        "--layers",
        ",".join(LAYERS),
        "--stats",
        ",".join(STATS),
        "--chunk-size",
        "1",
        "--batch-size",
        "1",
        "--backbone-only",
        "--no-progress",
    ]


def _extract_with(manifest: Path, out: Path, option: str, value: str) -> list[str]:
    """The same extract command with ``option`` set to ``value`` (replaced or added)."""
    args = _args(manifest, out)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return args


@pytest.fixture()
def manifest_path(synthetic_coco, tmp_path) -> Path:
    from fovea_ray.data.manifest import write_manifest

    return write_manifest(make_manifest(synthetic_coco, N), tmp_path / "m.parquet")


def test_sigint_mid_extract_stops_cleanly_and_a_resume_keeps_the_numerics(ray_session, manifest_path, tmp_path):
    """Ctrl-C: exit 130, "k of 8 samples done", status "interrupted"; the rerun finishes the store.

    In between, resumes with another batch size or thread count are refused in one line
    (defect 7: their chunks would differ in round-off).
    """
    from _helpers import run_cli

    out = tmp_path / "s.zarr"
    address = ["--address", ray_session.get_runtime_context().gcs_address]
    code, text = signal_when([*_args(manifest_path, out), *address], chunks_done(out, 2), signal.SIGINT)
    assert code == 130, text[-2000:]
    assert "Traceback" not in text
    line = next(x for x in text.splitlines() if x.startswith("fovea-ray: interrupted"))
    store = open_store(out)
    left = len(store.pending_chunks())
    assert line == f"fovea-ray: interrupted (SIGINT): {N - left} of {N} samples done; rerun the same command to resume"
    assert 0 < left <= N - 2 and store.attrs["status"] == "interrupted"

    for option, value, key in (("--batch-size", "2", "batch_size"), ("--torch-threads", "1", "torch_threads")):
        code, text = run_cli(_extract_with(manifest_path, out, option, value))
        lines = [x for x in text.splitlines() if x.startswith("fovea-ray: error:")]
        assert code == 2 and len(lines) == 1, text[-2000:]
        assert f"numerics.{key}: store has" in lines[0] and "--allow-mixed-numerics" in lines[0]
    assert len(open_store(out).pending_chunks()) == left  # nothing was written

    code, text = run_cli(_args(manifest_path, out))
    assert code == 0, text
    assert f"{N - left} skipped" in text and open_store(out).attrs["status"] == "complete"


def test_sigterm_stops_a_ray_command_with_143(ray_session, tmp_path):
    """SIGTERM (a scheduler's stop) during `test`'s Ray tasks: exit 143 and one line.

    ``ray.init`` replaces the driver's SIGTERM handler with ``sys.exit(15)``; fovea-ray's
    must survive it. The full permutation test on Ray tasks is long enough to be stopped.
    """
    store = random_store(tmp_path / "s.zarr")
    out = tmp_path / "r.json"
    address = ["--address", ray_session.get_runtime_context().gcs_address]
    args = ["test", str(store), "--out", str(out), "--full-permutations", "20000", "--no-progress", *address]
    started = time.monotonic()
    code, text = signal_when(args, lambda: time.monotonic() - started > 12, signal.SIGTERM)
    assert code == 143, text[-2000:]
    assert "fovea-ray: interrupted (SIGTERM)" in text and "Traceback" not in text
    assert not out.exists()


def test_without_an_address_a_local_ray_starts_even_beside_a_ray_start_cluster(tmp_path):
    """Defect 5: no --address and no RAY_ADDRESS starts a local Ray, as --help says.

    Ray's "current cluster" file names a cluster (as `ray start` leaves it; here one that is
    not there): Ray's own default would try to join it and fail.
    """
    ray_tmp = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # short: Ray's socket paths
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=str(ray_tmp), RAY_gcs_server_port_wait_time_s="2")
        code = (
            "import ray; from fovea_ray.cluster import connect; connect(num_cpus=1); "
            "print('joined', ray.get_runtime_context().gcs_address)"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    joined = proc.stdout.split("joined ")[-1].strip()
    assert joined and joined != "127.0.0.1:9"


def test_every_address_help_says_what_happens_without_one():
    from _helpers import run_cli

    for command in ("extract", "test", "run", "train", "pretrain"):
        code, text = run_cli([command, "--help"])
        assert code == 0
        flat = " ".join(text.replace("│", " ").split())  # rich draws the options in a box
        assert "else a new local Ray" in flat and "joined only when named" in flat, command


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_token_auth_refusal_says_token_auth_in_one_line(tmp_path):
    """Defect 5: a cluster with RAY_AUTH_MODE=token, joined without the token.

    Ray 2.60 answers with a bare "Failed to connect to Ray cluster at ..." ConnectionError;
    fovea-ray's line must name token authentication and what to set.
    """
    import uuid

    ray_tmp = Path(tempfile.mkdtemp(prefix="frt", dir="/tmp"))
    port = _free_port()
    token = uuid.uuid4().hex + uuid.uuid4().hex
    head_env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    head_env.pop("RAY_ADDRESS", None)
    head_args = ["--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=0"]
    head_args += ["--include-dashboard=false", f"--ray-client-server-port={_free_port()}", "--disable-usage-stats"]
    head = subprocess.Popen(
        ["ray", "start", *head_args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=head_env
    )
    try:
        client_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        client_env.update(RAY_TMPDIR=str(ray_tmp), RAY_gcs_server_port_wait_time_s="3")
        probe = f"from fovea_ray.cluster import connect; connect('127.0.0.1:{port}')"
        deadline = time.monotonic() + 60
        while True:  # until the head listens (a refused connection, not an auth one, before)
            proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=client_env)
            if "token authentication" in proc.stderr or time.monotonic() > deadline or head.poll() is not None:
                break
            time.sleep(1)
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ClusterError: cannot connect to Ray at 127.0.0.1:" in last, proc.stderr[-2000:]
    assert "uses token authentication" in last and "RAY_AUTH_MODE=token" in last and "RAY_AUTH_TOKEN" in last


def test_an_interrupt_wrapped_by_ray_core_is_still_an_interrupt():
    # A handler that raises while Ray's core waits surfaces as "SystemError: CoreWorker.wait
    # returned a result with an exception set", the Interrupted as its context.
    from fovea_ray.interrupts import Interrupted, interruption_in

    stop = Interrupted(signal.SIGTERM)
    try:
        try:
            raise stop
        except Interrupted:
            raise SystemError("CoreWorker.wait returned a result with an exception set")  # noqa: B904
    except SystemError as wrapped:
        assert interruption_in(wrapped) is stop
    assert interruption_in(ValueError("x")) is None
    assert interruption_in(stop) is stop
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import signal, typer\n"
            "from fovea_ray import cli\n"
            "from fovea_ray.interrupts import Interrupted\n"
            "@cli.app.command('boom-wrapped')\n"
            "def boom():\n"
            "    try:\n"
            "        raise Interrupted(signal.SIGTERM)\n"
            "    except Interrupted:\n"
            "        raise SystemError('CoreWorker.wait returned a result with an exception set')\n"
            "cli.main(['boom-wrapped'])\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert code.returncode == 143, code.stderr
    assert code.stderr.strip().splitlines()[-1] == "fovea-ray: interrupted (SIGTERM)"
