"""Memory the permutation tests would need, checked before any work starts.

The half-permutation, score (Cai et al.) and MMD tests draw their permutations as one
``(P, n_test)`` label matrix (int64) and compare it with the predictions (bool), and each
null distribution (``P`` float64) is kept and written to ``results.json`` as figure data
(about 24 bytes a value as JSON text). ``P = 10**9`` on 19 held-out samples is about
200 GB: without a check, a typo exhausts the machine's memory with no word. The bound is
half of this machine's physical memory (the driver shares it with Ray's object store).
"""

from __future__ import annotations

import math
import os

from fovea_ray.errors import InputError

__all__ = ["check_permutation_memory", "memory_bound", "permutation_memory"]

#: Bytes per permutation and held-out label: the int64 permuted labels and their bool comparison.
_PER_LABEL = 8 + 1
#: Bytes per kept null value: float64 in memory plus its JSON text in results.json.
_PER_NULL = 8 + 24


def memory_bound() -> int:
    """Half of this machine's physical memory, in bytes (8 GiB when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def permutation_memory(n_samples: int, cfg) -> list[tuple[str, int, int]]:
    """``(setting, P, bytes)`` for each permutation test of a :class:`~fovea_ray.stats.battery.BatteryConfig`.

    ``n_samples`` is the number of samples used; the held-out part is ``test_size`` of it.
    The full permutation test refits per permutation in groups, so it keeps only its null.
    """
    n_test = max(1, math.ceil(int(n_samples) * float(cfg.test_size)))
    mmd_n = min(int(n_samples), 2 * int(cfg.mmd_max_samples))
    return [
        ("permutations", int(cfg.permutations), int(cfg.permutations) * (n_test * _PER_LABEL + _PER_NULL)),
        ("full_permutations", int(cfg.full_permutations), int(cfg.full_permutations) * _PER_NULL),
        # Cai et al.: the label matrix, its bool mask and two float64 products of it.
        ("odds_permutations", int(cfg.odds_permutations), int(cfg.odds_permutations) * n_test * (_PER_LABEL + 16)),
        # MMD permutes in batches; its null is kept whole.
        ("mmd_permutations", int(cfg.mmd_permutations), int(cfg.mmd_permutations) * _PER_NULL + mmd_n * mmd_n * 8),
    ]


def check_permutation_memory(n_samples: int, cfg, *, bound: int | None = None) -> None:
    """Refuse, in one line with the estimate, a battery whose permutations need more than ``bound`` bytes.

    Raises
    ------
    InputError
        Naming the setting (``permutations = 1000000000``), the estimate and the bound.
    """
    bound = memory_bound() if bound is None else int(bound)
    for name, P, need in permutation_memory(n_samples, cfg):
        if need > bound:
            raise InputError(
                f"{name} = {P}: the test would need about {need / 1e9:.3g} GB of memory for {n_samples} samples "
                f"(at most {bound / 1e9:.3g} GB, half this machine's memory, is allowed); use fewer permutations"
            )
