"""The balanced assignment is optimal: brute force, Edmonds' blossom matching, hand-built cases."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from _helpers import blossom_total

from fovea_ray.data.balance import balanced_assignment, greedy_assignment, max_balanced_pairs


def brute_force_total(eligible: dict) -> int:
    """Try every assignment (each image: one of its categories, or unused)."""
    images = list(eligible)
    best = 0
    for choice in itertools.product(*[[None, *sorted(eligible[i])] for i in images]):
        counts: dict = {}
        for c in choice:
            if c is not None:
                counts[c] = counts.get(c, 0) + 1
        best = max(best, sum(2 * (v // 2) for v in counts.values()))
    return best


def assert_valid(eligible: dict, result) -> None:
    counts: dict = {}
    for image, cat in result.assignment.items():
        assert cat in eligible[image], "an image anchors only a category it is eligible for"
        counts[cat] = counts.get(cat, 0) + 1
    assert sum(counts.values()) == result.total == 2 * sum(result.pairs.values())
    for cat, n in counts.items():
        assert n == 2 * result.pairs[cat], "each category gets an even number of images (its pairs)"


def test_hand_built_cases_where_first_come_is_not_optimal():
    # First-come gives A its first category (1), leaving both categories odd: nothing.
    trap = {"A": [1, 2], "B": [2]}
    assert greedy_assignment(trap).total == 0
    best = balanced_assignment(trap)
    assert_valid(trap, best)
    assert best.total == best.optimum == 2 == brute_force_total(trap)
    assert best.assignment == {"A": 2, "B": 2}
    # A chain: image i_j may anchor category j or j+1, image p_j only j+1. First-come
    # strands i_0 in category 0 and p_5 in category 6 (10 samples); pairing each i_j
    # with p_j in category j+1 uses all 12.
    chain = {f"i{j}": [j, j + 1] for j in range(6)} | {f"p{j}": [j + 1] for j in range(6)}
    greedy, best = greedy_assignment(chain), balanced_assignment(chain)
    assert_valid(chain, best)
    assert greedy.total == 10
    assert best.total == brute_force_total(chain) == blossom_total(chain) == 12


def test_star_needs_the_exact_program():
    # 4 assignable images but only one pair: the parity bound per component is not tight.
    star = {0: ["a", "b", "c"], 1: ["a"], 2: ["b"], 3: ["c"]}
    r = balanced_assignment(star)
    assert_valid(star, r)
    assert r.total == 2 == brute_force_total(star)
    assert r.certified_by == "milp"


@pytest.mark.parametrize("method", ["auto", "milp"])
def test_matches_brute_force_on_small_random_cases(method):
    rng = random.Random(7)
    for trial in range(120 if method == "auto" else 40):
        n, k = rng.randint(1, 7), rng.randint(1, 4)
        eligible = {i: rng.sample(range(k), rng.randint(0, min(k, 3))) for i in range(n)}
        best = brute_force_total(eligible)
        r = balanced_assignment(eligible, seed=trial, method=method)
        assert_valid(eligible, r)
        assert r.total == r.optimum == best, (eligible, r)
        for cap in range(best // 2 + 1):
            capped = balanced_assignment(eligible, seed=trial, method=method, max_pairs=cap)
            assert_valid(eligible, capped)
            assert capped.total == 2 * cap


def test_matches_blossom_matching_on_larger_random_cases():
    rng = random.Random(3)
    certified = set()
    for trial in range(25):
        n, k = rng.randint(20, 50), rng.randint(2, 9)
        geo = np.random.default_rng(trial)
        eligible = {i: rng.sample(range(k), min(k, int(geo.geometric(0.6)))) for i in range(n)}
        r = balanced_assignment(eligible, seed=trial)
        assert_valid(eligible, r)
        assert r.total == blossom_total(eligible), eligible
        certified.add(r.certified_by)
    assert "bound" in certified


def test_cap_is_spread_fairly_and_deterministically():
    # 100 images each eligible for A and B: a cap of 20 pairs gives 10 + 10, not 20 + 0.
    shared = {i: ["A", "B"] for i in range(100)}
    assert balanced_assignment(shared, max_pairs=20).pairs == {"A": 10, "B": 10}
    assert balanced_assignment(shared).pairs == {"A": 25, "B": 25}
    # B can only use the 10 shared images; the fair cap of 10 pairs is 5 + 5.
    mixed = {i: ["A", "B"] for i in range(10)} | {100 + i: ["A"] for i in range(30)}
    assert balanced_assignment(mixed).total == 40
    assert balanced_assignment(mixed, max_pairs=10).pairs == {"A": 5, "B": 5}
    a = balanced_assignment(mixed, seed=1, max_pairs=7)
    b = balanced_assignment(mixed, seed=2, max_pairs=7)
    # Ties (7 pairs over two categories) are broken by the seed; the total and the fairness are not.
    assert a.total == b.total == 14
    assert sorted(a.pairs.values()) == sorted(b.pairs.values()) == [3, 4]
    assert balanced_assignment(mixed, seed=1, max_pairs=7).assignment == a.assignment  # deterministic
    assert max_balanced_pairs(mixed) == 20


def test_bad_arguments_and_empty_input():
    assert balanced_assignment({}).total == 0
    assert balanced_assignment({1: [], 2: ["x"]}).total == 0  # a single image cannot pair
    with pytest.raises(ValueError, match="max_pairs"):
        balanced_assignment({1: ["x"]}, max_pairs=-1)
    with pytest.raises(ValueError, match="method"):
        balanced_assignment({1: ["x"]}, method="greedy")


def test_scales_to_coco_size_quickly():
    """30k images over 80 Zipf-distributed categories (COCO-like): certified in seconds."""
    import time

    rng = np.random.default_rng(0)
    p = 1 / np.arange(1, 81) ** 1.1
    p /= p.sum()
    n = 30_000
    sizes = np.minimum(rng.geometric(0.5, size=n), 80)
    eligible = {i: list(set(rng.choice(80, size=int(s), p=p).tolist())) for i, s in enumerate(sizes)}
    t0 = time.perf_counter()
    r = balanced_assignment(eligible, max_pairs=2000)
    elapsed = time.perf_counter() - t0
    assert_valid(eligible, r)
    assert r.total == 4000 and r.optimum == n and r.certified_by == "bound"
    # No solution can have a smaller largest category than the level L where the per-category
    # supplies min(L, floor(degree / 2)) first reach the cap; the fair spread attains it.
    degree = np.bincount([c for cs in eligible.values() for c in cs], minlength=80)
    level = next(L for L in range(1, 2001) if np.minimum(L, degree // 2).sum() >= 2000)
    assert max(r.pairs.values()) == level
    assert elapsed < 20
