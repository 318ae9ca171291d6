"""Seeded random streams: one master seed, one independent stream per purpose and index.

Every random choice in :mod:`fovea_ray.stats` draws from
``SeedSequence(seed, spawn_key=(purpose, *index))``. A permutation's labels therefore
depend only on the master seed and the permutation's index, never on how permutations
are batched, on how many Ray workers run them, or on retries.
"""

from __future__ import annotations

import numpy as np

# Purposes (spawn-key heads). Never renumber: that would change every seeded result.
SPLIT = 0
HALF_PERMUTATION = 1
FULL_PERMUTATION = 2
SCORE_PERMUTATION = 3
MMD_PERMUTATION = 4


def check_seed(seed) -> int:
    """The master seed as a non-negative int (ValueError otherwise)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stream(seed: int, purpose: int, *index: int) -> np.random.Generator:
    """The generator for ``purpose`` (and e.g. a permutation index) under ``seed``."""
    key = (int(purpose), *(int(i) for i in index))
    return np.random.default_rng(np.random.SeedSequence(check_seed(seed), spawn_key=key))


def stratified_split(y: np.ndarray, test_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_index, test_index)``: ``round(test_size * n_c)`` of each class to test.

    Each class keeps at least one sample on each side.
    """
    y = np.asarray(y)
    test = np.zeros(y.shape[0], dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        k = int(np.clip(round(test_size * idx.size), 1, idx.size - 1))
        test[rng.choice(idx, size=k, replace=False)] = True
    return np.flatnonzero(~test), np.flatnonzero(test)
