"""The optimal balanced assignment of images to categories.

The problem. Image ``i`` may anchor a sample of any category in ``S_i`` (the categories of
its eligible objects). Each image is used at most once (independence), and each category
``c`` must give as many type-1 as type-0 samples, so the ``k_c`` images assigned to ``c``
yield ``2 * floor(k_c / 2)`` samples. Maximise the total. Equivalently: in the bipartite
image-category eligibility graph ``H``, choose edges so that every image has degree <= 1
and every category an *even* degree ``2 y_c`` (at most ``2 L`` under a fairness level
``L``), with as many edges as possible.

Why not a plain max-flow. Without the parity constraint every assignable image could be
used. With it the problem is a maximum matching in the (non-bipartite) graph on images in
which two images are adjacent when they share a category: pair the images up, each pair
inside a common category. A star shows the gap: image 0 eligible for {a, b, c} and images
1, 2, 3 eligible only for a, b, c respectively give 4 assignable images but only one pair.
First-come assignment fails too: with image A eligible for {1, 2} and B for {2}, giving A
its first category leaves both categories odd and yields nothing; the optimum is a pair in 2.

The method, exact in every case:

1. *Upper bound.* Let ``F_K`` be the maximum number of images assignable within the
   capacities in a connected component ``K`` of ``H`` (a max-flow: source -> image 1,
   image -> category 1, category -> sink ``2 L``). Components share no image and no
   category, and a balanced solution uses an even number of images in each, so
   ``pairs <= sum_K floor(F_K / 2)``.
2. *Fast path.* Start from a maximum flow (``scipy.sparse.csgraph.maximum_flow``) and
   repair parity without losing images: if an alternating path ``c_0 -> c_1 -> ... -> c_m``
   joins two odd categories (hop ``c_j -> c_{j+1}``: an image assigned to ``c_j`` and
   eligible for ``c_{j+1}`` moves there), moving the images along it makes both even and
   leaves every intermediate count unchanged (so capacities still hold: an odd count is
   below its even capacity). When at most one odd category is left in a component, that
   component meets the bound of step 1 -- a certificate of optimality.
3. *Exact fallback* for any component the fast path cannot certify: a mixed-integer
   program over the edge variables ``x_e`` in [0, 1] and the pair counts ``y_c`` in the
   integers, ``max sum_c y_c`` s.t. ``sum_{e at i} x_e <= 1``, ``sum_{e at c} x_e = 2 y_c``,
   ``y_c <= L``. For any *fixed* integral ``y`` the constraints on ``x`` are a bipartite
   transportation problem whose matrix is totally unimodular, so its polytope has integral
   vertices (Schrijver, *Combinatorial Optimization*, 2003, Thm. 18.1, ch. 21): requiring
   integrality of the ``y_c`` alone (one integer per category) loses nothing. HiGHS solves
   it to proven optimality (``scipy.optimize.milp``, ``mip_rel_gap=0``; the objective is
   an integer). The integral assignment is then read off a max-flow with demands ``2 y_c``,
   which is checked to saturate.

The tests compare the result with brute-force enumeration and with Edmonds' blossom matching
(networkx) on the "shares a category" graph, for both paths.

Fairness. Among optimal solutions (or, under a cap ``max_pairs``, among those reaching the
cap), the one whose largest category is smallest is taken: the smallest level ``L`` whose
optimum still reaches the target is found by bisection (the optimum is monotone in ``L``),
then pairs are removed one at a time from the largest categories. Which of several
interchangeable images are used is seeded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["BalancedAssignment", "balanced_assignment", "greedy_assignment", "max_balanced_pairs"]

_INF = 1 << 40


@dataclass(frozen=True)
class BalancedAssignment:
    """The result: which category each used image anchors, and the pairs per category.

    Attributes
    ----------
    assignment:
        image -> category, for the ``total`` images used.
    pairs:
        category -> number of pairs (= type-1 count = type-0 count), for every category seen.
    total:
        Number of samples, ``2 * sum(pairs.values())``.
    optimum:
        The largest balanced total the data allows, before any cap.
    certified_by:
        How optimality was established: ``"bound"`` (the fast path met the upper bound in
        every component), ``"milp"`` (some component needed the exact program), or
        ``"greedy"`` for :func:`greedy_assignment` (not optimal).
    """

    assignment: dict[Hashable, Hashable]
    pairs: dict[Hashable, int]
    total: int
    optimum: int
    certified_by: str = "bound"


def _sort_key(x: Hashable) -> tuple:
    return (0, x) if isinstance(x, (int, np.integer)) else (1, str(x))


class _Graph:
    """The eligibility graph as arrays: images 0..n-1, categories 0..k-1, edges (img, cat).

    Categories with fewer than two eligible images can never hold a pair; their edges are
    dropped up front.
    """

    def __init__(self, eligible: Mapping[Hashable, Collection[Hashable]], seed: int):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        self.images = list(eligible)
        counts: dict[Hashable, int] = {}
        for cs in eligible.values():
            for c in set(cs):
                counts[c] = counts.get(c, 0) + 1
        self.categories = sorted(counts, key=_sort_key)
        cidx = {c: j for j, c in enumerate(self.categories)}
        img, cat = [], []
        for i, im in enumerate(self.images):
            for c in sorted(set(eligible[im]), key=_sort_key):
                if counts[c] >= 2:
                    img.append(i)
                    cat.append(cidx[c])
        self.n, self.k = len(self.images), len(self.categories)
        self.edge_img = np.asarray(img, dtype=np.int64)
        self.edge_cat = np.asarray(cat, dtype=np.int64)
        self.degree = np.bincount(self.edge_cat, minlength=self.k).astype(np.int64)
        # Seeded rank of each image: every choice among interchangeable images follows it.
        self.rank = np.random.default_rng([seed, 0xBA1]).permutation(self.n)
        self.img_cats: list[list[int]] = [[] for _ in range(self.n)]
        for i, c in zip(self.edge_img.tolist(), self.edge_cat.tolist()):
            self.img_cats[i].append(c)
        adj = coo_matrix((np.ones(len(img)), (self.edge_img, self.n + self.edge_cat)), shape=(self.n + self.k,) * 2)
        _, labels = connected_components(adj, directed=False)
        self.img_comp = labels[: self.n]
        self.cat_comp = labels[self.n :]

    def subgraph(self, comp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edge mask, image indices, category indices) of one component."""
        mask = self.cat_comp[self.edge_cat] == comp
        return mask, np.flatnonzero(self.img_comp == comp), np.flatnonzero(self.cat_comp == comp)


def _max_flow(g: _Graph, cap: np.ndarray, edge_mask: np.ndarray | None = None) -> np.ndarray:
    """A maximum assignment (image -> category index, -1 free) within category capacities."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    n, k = g.n, g.k
    ei, ec = (g.edge_img, g.edge_cat) if edge_mask is None else (g.edge_img[edge_mask], g.edge_cat[edge_mask])
    assign = np.full(n, -1, dtype=np.int64)
    if len(ei) == 0 or not np.any(cap > 0):
        return assign
    src, sink = 0, n + k + 1
    img_node = 1 + g.rank  # seeded node order -> seeded choice among equivalent images
    cat_node = 1 + n + np.arange(k)
    r = np.concatenate([np.full(n, src), img_node[ei], cat_node])
    c = np.concatenate([img_node, cat_node[ec], np.full(k, sink)])
    capacity = np.concatenate([np.ones(n), np.ones(len(ei)), np.minimum(cap, n)]).astype(np.int32)
    graph = csr_matrix((capacity, (r, c)), shape=(n + k + 2,) * 2)
    flow = maximum_flow(graph, src, sink, method="dinic").flow.tocsr()
    used = np.asarray(flow[img_node[ei], cat_node[ec]]).ravel() > 0
    assign[ei[used]] = ec[used]
    return assign


def _repair_parity(g: _Graph, assign: np.ndarray, cap: np.ndarray) -> None:
    """Move images along alternating paths joining odd categories (in place; see module doc).

    A hop between categories ``c`` and ``d`` moves one image either way (``c -> d`` when an
    image assigned to ``c`` is eligible for ``d``, or ``d -> c``). Each hop flips the parity
    of both its ends, so along a path only the two end categories change parity; an inner
    category's count changes by -2, 0 or +2, and +2 is allowed only within its capacity.
    """
    k = g.k
    count = np.bincount(assign[assign >= 0], minlength=k)
    # movers[c][d]: images assigned to c that are eligible for d.
    movers: list[list[set[int]]] = [[set() for _ in range(k)] for _ in range(k)]
    for i in np.flatnonzero(assign >= 0).tolist():
        a = int(assign[i])
        for d in g.img_cats[i]:
            if d != a:
                movers[a][d].add(i)

    def move(i: int, a: int, b: int) -> None:
        for d in g.img_cats[i]:
            if d != a:
                movers[a][d].discard(i)
            if d != b:
                movers[b][d].add(i)
        assign[i] = b
        count[a] -= 1
        count[b] += 1

    stuck: set[int] = set()
    while True:
        odd = [c for c in range(k) if count[c] % 2 == 1 and c not in stuck]
        if not odd:
            return
        s = odd[0]
        # BFS over (category, +1 if it received the last hop's image / -1 if it gave it).
        parent: dict[tuple[int, int], tuple[int, int] | None] = {(s, 0): None}
        queue, found = deque([(s, 0)]), None
        while queue and found is None:
            c, din = queue.popleft()
            on_path, node = set(), (c, din)
            while node is not None:
                on_path.add(node[0])
                node = parent[node]
            for d in range(k):
                if d in on_path:
                    continue
                for forward in (True, False):  # forward: an image c -> d; else d -> c
                    if not (movers[c][d] if forward else movers[d][c]):
                        continue
                    if c != s:
                        net = din + (-1 if forward else 1)
                        if net > 0 and count[c] + net > cap[c]:
                            continue
                    state = (d, 1 if forward else -1)
                    if state in parent:
                        continue
                    parent[state] = (c, din)
                    if count[d] % 2 == 1:
                        found = state
                        break
                    queue.append(state)
                if found is not None:
                    break
        if found is None:
            stuck.add(s)  # no partner: it will lose one image
            continue
        path = [found]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        path.reverse()
        hops, chosen = [], set()
        for (a, _), (b, dir_b) in zip(path, path[1:]):
            src, dst = (a, b) if dir_b == 1 else (b, a)
            options = movers[src][dst] - chosen
            if not options:  # both hops at one category would need the same image
                hops = None
                break
            i = min(options, key=lambda j: g.rank[j])
            chosen.add(i)
            hops.append((i, src, dst))
        if hops is None:
            stuck.add(s)
            continue
        for i, src, dst in hops:
            move(i, src, dst)


def _milp_pairs(g: _Graph, level: int, edge_mask: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Exact optimal pairs per category (length k; zero outside ``cats``) for one component."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix, hstack, identity, vstack

    ei, ec = g.edge_img[edge_mask], g.edge_cat[edge_mask]
    imgs, img_pos = np.unique(ei, return_inverse=True)
    cat_pos = np.searchsorted(cats, ec)
    n, k, m = len(imgs), len(cats), len(ei)
    ub = np.minimum(g.degree[cats] // 2, level).astype(float)
    out = np.zeros(g.k, dtype=np.int64)
    if m == 0 or not np.any(ub > 0):
        return out
    ones = np.ones(m)
    a_img = coo_matrix((ones, (img_pos, np.arange(m))), shape=(n, m))
    a_cat = coo_matrix((ones, (cat_pos, np.arange(m))), shape=(k, m))
    rows = vstack([hstack([a_img, coo_matrix((n, k))]), hstack([a_cat, -2 * identity(k)])]).tocsr()
    res = milp(
        np.concatenate([np.zeros(m), -np.ones(k)]),
        integrality=np.concatenate([np.zeros(m), np.ones(k)]),
        bounds=Bounds(np.zeros(m + k), np.concatenate([np.ones(m), ub])),
        constraints=[
            LinearConstraint(
                rows, np.concatenate([np.full(n, -np.inf), np.zeros(k)]), np.concatenate([np.ones(n), np.zeros(k)])
            )
        ],
        options={"mip_rel_gap": 0.0, "presolve": True, "disp": False},
    )
    if res.status != 0 or res.x is None:  # pragma: no cover - the program is feasible and bounded
        raise RuntimeError(f"balanced assignment: HiGHS failed ({res.message})")
    out[cats] = np.round(res.x[m:]).astype(np.int64)
    return out


def _solve(g: _Graph, level: int, force_milp: bool = False) -> tuple[np.ndarray, bool]:
    """Optimal assignment (image -> category index or -1) with at most ``level`` pairs per
    category; returns it and whether the exact program was needed."""
    cap = np.minimum(2 * level, _INF).astype(np.int64) * np.ones(g.k, dtype=np.int64)
    assign = _max_flow(g, cap)
    used_milp = False
    if not force_milp:
        _repair_parity(g, assign, cap)
    count = np.bincount(assign[assign >= 0], minlength=g.k)
    odd_per_comp = np.bincount(g.cat_comp[count % 2 == 1], minlength=int(g.cat_comp.max(initial=-1)) + 1)
    for comp in np.flatnonzero((odd_per_comp > 1) | force_milp).tolist():
        if force_milp and not np.any(g.cat_comp == comp):
            continue
        mask, imgs, cats = g.subgraph(comp)
        pairs = _milp_pairs(g, level, mask, cats)
        sub = _max_flow(g, 2 * pairs, edge_mask=mask)
        if np.bincount(sub[sub >= 0], minlength=g.k)[cats].sum() != 2 * pairs.sum():  # pragma: no cover
            raise RuntimeError("balanced assignment: the max-flow does not realise the optimal counts")
        assign[imgs] = sub[imgs]
        used_milp = True
    # Whatever is still odd (at most one per component, by the bound) loses one image.
    count = np.bincount(assign[assign >= 0], minlength=g.k)
    for c in np.flatnonzero(count % 2 == 1).tolist():
        members = np.flatnonzero(assign == c)
        assign[members[np.argmax(g.rank[members])]] = -1
    return assign, used_milp


def _pairs_of(g: _Graph, assign: np.ndarray) -> np.ndarray:
    return np.bincount(assign[assign >= 0], minlength=g.k) // 2


def balanced_assignment(
    eligible: Mapping[Hashable, Collection[Hashable]],
    *,
    max_pairs: int | None = None,
    seed: int = 0,
    method: str = "auto",
) -> BalancedAssignment:
    """Assign images to categories so that the balanced total is as large as possible.

    Parameters
    ----------
    eligible:
        image -> the categories it may anchor.
    max_pairs:
        Cap on the number of pairs (``--n-per-type``); spread so that the largest category
        is as small as possible.
    seed:
        Chooses among interchangeable images (the optimum does not depend on it).
    method:
        ``"auto"`` (certified fast path, exact program where needed) or ``"milp"`` (the exact
        program for every component; for tests).

    Returns
    -------
    BalancedAssignment
        See the module docstring for the method and its proof of optimality.
    """
    if method not in ("auto", "milp"):
        raise ValueError(f"method must be 'auto' or 'milp', got {method!r}")
    if max_pairs is not None and max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")
    g = _Graph(eligible, seed)
    force = method == "milp"
    assign, used = _solve(g, _INF, force)
    pairs = _pairs_of(g, assign)
    optimum = int(pairs.sum())
    target = optimum if max_pairs is None else min(int(max_pairs), optimum)
    if target > 0:
        # Smallest level L whose capped optimum reaches the target (monotone in L: bisection).
        lo, hi = max(1, -(-target // g.k)), int(pairs.max())
        best = assign
        while lo < hi:
            mid = (lo + hi) // 2
            a_mid, u_mid = _solve(g, mid, force)
            if _pairs_of(g, a_mid).sum() >= target:
                hi, best, used = mid, a_mid, used or u_mid
            else:
                lo = mid + 1
        assign = best
        pairs = _pairs_of(g, assign)
        # Down to the target, one pair at a time from the largest categories (ties: seeded).
        order = np.random.default_rng([seed, 0x7A1]).permutation(g.k)
        excess = int(pairs.sum()) - target
        while excess > 0:
            c = int(order[np.argmax(pairs[order])])
            members = np.flatnonzero(assign == c)
            drop = members[np.argsort(g.rank[members])[-2:]]
            assign[drop] = -1
            pairs[c] -= 1
            excess -= 1
    else:
        assign = np.full(g.n, -1, dtype=np.int64)
        pairs = np.zeros(g.k, dtype=np.int64)
    used_idx = np.flatnonzero(assign >= 0)
    return BalancedAssignment(
        assignment={g.images[i]: g.categories[int(assign[i])] for i in used_idx.tolist()},
        pairs={c: int(p) for c, p in zip(g.categories, pairs)},
        total=2 * int(pairs.sum()),
        optimum=2 * optimum,
        certified_by="milp" if used else "bound",
    )


def max_balanced_pairs(eligible: Mapping[Hashable, Collection[Hashable]]) -> int:
    """The largest number of balanced pairs (half the largest balanced total); exact."""
    return balanced_assignment(eligible).optimum // 2


def greedy_assignment(eligible: Mapping[Hashable, Collection[Hashable]]) -> BalancedAssignment:
    """The first-come baseline: each image anchors its first eligible category (by id).

    Each category then keeps ``2 * floor(k_c / 2)`` of its images. Not optimal (see the module
    docstring); reported next to the optimum so the gain is visible.
    """
    by_cat: dict[Hashable, list[Hashable]] = {}
    for im, cs in eligible.items():
        if len(cs):
            by_cat.setdefault(sorted(cs, key=_sort_key)[0], []).append(im)
    assignment: dict[Hashable, Hashable] = {}
    pairs: dict[Hashable, int] = {}
    for c in sorted({c for cs in eligible.values() for c in cs}, key=_sort_key):
        ims = by_cat.get(c, [])
        keep = ims[: 2 * (len(ims) // 2)]
        pairs[c] = len(keep) // 2
        assignment.update({im: c for im in keep})
    total = 2 * sum(pairs.values())
    return BalancedAssignment(assignment=assignment, pairs=pairs, total=total, optimum=total, certified_by="greedy")
