"""The prepared GPU check runs in its quick CPU mode where Ray, Zarr and pycocotools are absent.

The GPU machine has torch, torchvision, Triton, numpy, scipy, scikit-learn, pandas and
typer only; a ``sitecustomize`` on ``PYTHONPATH`` makes the other packages unimportable, so
an import of one of them at a module's top level (in the script or in the fovea_ray
modules it uses) fails here as it would there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
BLOCKED = ("ray", "zarr", "pycocotools", "matplotlib", "pyarrow")
PARTS = ("foveation", "taps", "actor", "solver", "training")
ROW_KEYS = {"part", "figure", "value", "baseline", "ratio", "target", "met", "note"}

SITECUSTOMIZE = f"""
import sys

class _Absent:
    # A meta-path finder that refuses the packages the GPU machine lacks.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"No module named {{name!r}} (absent on the GPU machine)")
        return None

sys.meta_path.insert(0, _Absent())
"""


def _env(stub: Path) -> dict[str, str]:
    stub.mkdir()
    (stub / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    # This checkout's fovea_ray (not an editable install elsewhere), behind the blocker.
    env["PYTHONPATH"] = os.pathsep.join([str(stub), str(REPO)])
    env.pop("TRITON_INTERPRET", None)
    return env


def test_quick_check_runs_without_ray_zarr_pycocotools(tmp_path):
    env = _env(tmp_path / "stub")
    for name in BLOCKED:  # the simulation holds: each of them fails to import
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert probe.returncode != 0 and "absent on the GPU machine" in probe.stderr, name

    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--json", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert doc["quick"] is True and doc["device_type"] == "cpu"
    assert isinstance(doc["wall_s"], float) and len(doc["load_average"]) == 3
    assert set(doc["parts"]) == set(PARTS)
    for name, info in doc["parts"].items():
        assert info["error"] is None, (name, info)
        assert info["elapsed_s"] > 0
    rows = doc["rows"]
    assert all(set(r) == ROW_KEYS for r in rows)
    assert not [r for r in rows if r["figure"] == "error"]
    for name in PARTS:  # every part reported at least one finite figure
        values = [r["value"] for r in rows if r["part"] == name]
        assert values and all(isinstance(v, float) for v in values), (name, values)
    # A row with a target says whether it was met; the table printed every row.
    assert all(isinstance(r["met"], bool) for r in rows if r["target"])
    assert proc.stdout.count("\n") >= len(rows) + 3
    # Triton's kernel ran under its CPU interpreter and agreed with the torch path.
    interp = [r for r in rows if "interpreter" in r["figure"]]
    if interp:
        assert interp[0]["met"] is True


def test_a_failing_part_is_reported_and_sets_the_exit_code(tmp_path):
    # A part that raises must not stop the others: replace one part by a broken one.
    env = _env(tmp_path / "stub")
    code = (
        "import sys; sys.path.insert(0, {!r})\n"
        "import gpu_check\n"
        "def broken(c): raise RuntimeError('deliberately broken')\n"
        "gpu_check.PARTS['foveation'] = broken\n"
        "sys.exit(gpu_check.main(['--device', 'cpu', '--quick', '--parts', 'foveation', 'solver',"
        " '--json', {!r}]))\n"
    ).format(str(SCRIPT.parent), str(tmp_path / "out.json"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "out.json").read_text())
    assert "deliberately broken" in doc["parts"]["foveation"]["error"]
    assert doc["parts"]["solver"]["error"] is None
    assert any(r["part"] == "solver" and r["figure"] != "error" for r in doc["rows"])
    assert "ERROR" in proc.stdout
