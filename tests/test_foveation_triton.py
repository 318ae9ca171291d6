"""The fused Triton blend kernel gives the torch path's result (run by Triton's CPU
interpreter, TRITON_INTERPRET=1; on a GPU the same kernel is compiled)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from fovea_ray.foveation import Foveator  # noqa: E402

# Steep enough that a 25 x 41 image spans all four levels.
MODEL = dict(pixels_per_degree=8.0, e2=0.3, alpha=1.5, levels=4)


@pytest.fixture()
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def test_triton_matches_torch(interpret):
    x = torch.rand(2, 3, 25, 41, generator=torch.Generator().manual_seed(0))
    fix = [[5.0, 7.0], [30.5, -3.0]]  # odd sizes; one fixation outside the image
    fast = Foveator(**MODEL, backend="triton")
    ref = Foveator(**MODEL, backend="torch")
    assert ref.level_map(25, 41, fix).max() == pytest.approx(3.0)  # every level is used
    got, want = fast(x, fix), ref(x, fix)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (want - x).abs().max() > 0.2


def test_triton_backend_refuses_cpu_tensors_without_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="expected CUDA images"):
        Foveator(backend="triton")(torch.rand(1, 3, 8, 8), [[1.0, 1.0]])
