"""The report's figures, as PNG bytes, from plain arrays (no results-file knowledge here).

The study's own figures (Gizdov & Akhtari 2023, figs. 6-9) and the ones it wished for:
the layer curve and per-channel selectivity.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

TYPE_COLORS = {1: "#1f77b4", 0: "#d62728"}
TYPE_NAMES = {1: "type 1 (fovea, sharp)", 0: "type 0 (periphery, blurred)"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def coefficients_by_stat(coefs: Mapping[str, Sequence[float]]) -> bytes:
    """Regression coefficients per channel, one panel row per statistic (the paper's fig. 6)."""
    names = list(coefs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1.3]})
    ax = axes[0]
    for name in names:
        c = np.asarray(coefs[name], dtype=float)
        ax.plot(np.arange(c.size), c, lw=0.7, alpha=0.85, label=f"{name} columns")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("channel")
    ax.set_ylabel("logistic coefficient")
    ax.set_title("Coefficients per channel, by statistic")
    ax.legend(fontsize=8)
    ax = axes[1]
    data = [np.abs(np.asarray(coefs[n], dtype=float)) for n in names]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("|coefficient|")
    ax.set_title("|coefficient| by statistic")
    return _png(fig)


def top_feature_histograms(features: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> bytes:
    """Per-class histograms of the top features by |coefficient| (the paper's fig. 7).

    ``features``: (name, values of type 0, values of type 1), at most 9.
    """
    features = list(features)[:9]
    n = max(1, len(features))
    cols = 3
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.0 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, v0, v1) in zip(axes.ravel(), features):
        v0, v1 = np.asarray(v0, float), np.asarray(v1, float)
        allv = np.concatenate([v0, v1])
        bins = np.histogram_bin_edges(allv[np.isfinite(allv)], bins=20) if allv.size else 10
        ax.hist(v1, bins=bins, alpha=0.55, color=TYPE_COLORS[1], label="type 1", density=True)
        ax.hist(v0, bins=bins, alpha=0.55, color=TYPE_COLORS[0], label="type 0", density=True)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle("Top features by |coefficient|: per-class distributions (test split)")
    return _png(fig)


def permutation_null(null_accuracies: Sequence[float], observed: float, *, label: str, alpha: float) -> bytes:
    """Histogram of permutation accuracies with the observed accuracy marked (the paper's fig. 8)."""
    null = np.asarray(null_accuracies, float)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    lo = min(null.min() if null.size else 0.5, observed) - 0.02
    hi = max(null.max() if null.size else 0.5, observed) + 0.02
    ax.hist(null, bins=30, range=(lo, hi), color="#8c959f", label=f"null ({null.size} permutations)")
    ax.axvline(observed, color="#cf222e", lw=2, label=f"observed {observed:.4f}")
    if null.size:
        crit = np.quantile(np.append(null, observed), 1 - alpha, method="higher")
        ax.axvline(crit, color="k", ls="--", lw=1, label=f"1-α quantile ({crit:.4f})")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("count")
    ax.set_title(f"{label}: permutation null distribution")
    ax.legend(fontsize=8)
    return _png(fig)


def score_distribution(scores: Sequence[float], labels: Sequence[int], *, k2: float | None, p: float | None) -> bytes:
    """Out-of-sample classifier scores by class, a normal fit and a Q-Q plot (the paper's fig. 9)."""
    s = np.asarray(scores, float)
    y = np.asarray(labels, int)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    bins = np.histogram_bin_edges(s, bins=40) if s.size else 10
    for t in (1, 0):
        ax.hist(s[y == t], bins=bins, alpha=0.5, density=True, color=TYPE_COLORS[t], label=TYPE_NAMES[t])
    if s.size > 2:
        mu, sd = s.mean(), s.std(ddof=1)
        xs = np.linspace(s.min(), s.max(), 200)
        ax.plot(xs, sps.norm.pdf(xs, mu, sd) * 0.5, "k-", lw=1, label=f"normal fit (μ={mu:.2f}, σ={sd:.2f}), ×½")
    ax.set_xlabel("decision function (logit)")
    ax.set_title("Classifier scores on the test split")
    ax.legend(fontsize=7)
    ax = axes[1]
    if s.size > 2:
        (osm, osr), (slope, icpt, _) = sps.probplot(s, dist="norm")
        ax.plot(osm, osr, ".", ms=3, color="#57606a")
        ax.plot(osm, slope * np.asarray(osm) + icpt, "k-", lw=1)
    title = "Normal Q-Q plot"
    if k2 is not None and p is not None:
        title += f"\nD'Agostino-Pearson s²+k² = {k2:.1f}, p = {p:.3g}"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("theoretical quantiles")
    ax.set_ylabel("ordered scores")
    return _png(fig)


def confusion_matrix(confusion: Sequence[Sequence[int]]) -> bytes:
    """The 2x2 confusion matrix, rows = true class, columns = predicted class."""
    cm = np.asarray(confusion, int)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
                fontsize=13,
            )
    ax.set_xticks([0, 1], ["pred 0", "pred 1"])
    ax.set_yticks([0, 1], ["true 0\n(periphery)", "true 1\n(fovea)"])
    ax.set_title("Confusion (rows = true class)")
    return _png(fig)


def layer_curve(
    layers: Sequence[str],
    accuracy: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    neglog10_p: Sequence[float],
    *,
    control: tuple[float, float, float, float] | None = None,
    alpha: float = 0.01,
    threshold: float | None = None,
) -> bytes:
    """Accuracy (with CI) and −log10 p across layers in network depth order, plus the pixel control.

    ``neglog10_p``: the deciding test's p-values; ``threshold``: the smallest threshold of
    the adjustment across layers (``alpha / m`` for BH), drawn as a second line."""
    x = np.arange(len(layers))
    acc = np.asarray(accuracy, float)
    lo, hi = np.asarray(ci_low, float), np.asarray(ci_high, float)
    fig, axes = plt.subplots(2, 1, figsize=(max(7, 0.32 * len(layers) + 3), 6.2), sharex=True)
    ax = axes[0]
    ax.errorbar(x, acc, yerr=[acc - lo, hi - acc], fmt="o-", ms=3, lw=1, capsize=2, label="network layers")
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    if control is not None:
        c_acc, c_lo, c_hi, _ = control
        ax.axhspan(c_lo, c_hi, color="#d4a72c", alpha=0.25)
        ax.axhline(c_acc, color="#9a6700", lw=1.2, label="pixel-statistics control")
    ax.set_ylabel("test accuracy")
    ax.set_title("Type-1 vs type-0 separability along the depth of the network")
    ax.legend(fontsize=8)
    ax = axes[1]
    nl = np.asarray(neglog10_p, float)
    ax.bar(x, nl, color="#1f77b4")
    ax.axhline(-np.log10(alpha), color="#cf222e", lw=1, ls=":", label=f"α = {alpha}")
    if threshold is not None and threshold < alpha:
        ax.axhline(
            -np.log10(threshold), color="#cf222e", lw=1, ls="--", label=f"BH's smallest threshold {threshold:.2g}"
        )
    if control is not None and control[3] is not None:
        ax.axhline(control[3], color="#9a6700", lw=1.2, label="pixel control")
    ax.set_ylabel("−log10 p (deciding test)")
    ax.legend(fontsize=8)
    short = [name.replace("backbone.body.", "") for name in layers]
    ax.set_xticks(x, short, rotation=90, fontsize=7)
    return _png(fig)


def selectivity(
    auc: np.ndarray, stat_names: Sequence[str], n_type1: Sequence[int], n_type0: Sequence[int], *, layer: str
) -> bytes:
    """Per-channel AUC distributions and the counts of channels preferring each type after FDR."""
    auc = np.atleast_2d(np.asarray(auc, float))  # (C, S)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    for j, name in enumerate(stat_names):
        ax.hist(auc[:, j], bins=40, range=(0, 1), histtype="step", lw=1.3, label=name)
    ax.axvline(0.5, color="k", lw=0.6, ls=":")
    ax.set_xlabel("AUC (> 0.5: higher for type 1)")
    ax.set_ylabel("channels")
    ax.set_title(f"Per-channel selectivity, {layer}")
    ax.legend(fontsize=8)
    ax = axes[1]
    xs = np.arange(len(stat_names))
    ax.bar(xs - 0.2, n_type1, 0.4, color=TYPE_COLORS[1], label="prefer type 1")
    ax.bar(xs + 0.2, n_type0, 0.4, color=TYPE_COLORS[0], label="prefer type 0")
    ax.set_xticks(xs, stat_names)
    ax.set_ylabel("channels (BH q < α)")
    ax.set_title("Selective channels after FDR")
    ax.legend(fontsize=8)
    return _png(fig)


def network_layer_curves(
    curves: Mapping[str, tuple[Sequence[str], Sequence[float], Sequence[float], Sequence[float]]],
    *,
    order: Sequence[str],
    control: tuple[float, float, float] | None = None,
) -> bytes:
    """Held-out accuracy (with CI) per layer for several networks, overlaid on one depth axis.

    ``curves``: network name -> (layers, accuracy, ci_low, ci_high); ``order``: every
    layer in depth order (the x axis); ``control``: the pixel control's (acc, lo, hi).
    """
    x_of = {name: i for i, name in enumerate(order)}
    fig, ax = plt.subplots(figsize=(max(7, 0.32 * len(order) + 3), 4.2))
    if control is not None:
        ax.axhspan(control[1], control[2], color="#d4a72c", alpha=0.22)
        ax.axhline(control[0], color="#9a6700", lw=1.2, label="pixel-statistics control (95% CI band)")
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    n = max(1, len(curves))
    for k, (net, (layers, acc, lo, hi)) in enumerate(curves.items()):
        x = np.array([x_of[name] for name in layers], float) + (k - (n - 1) / 2) * 0.12
        a, lo_, hi_ = (np.asarray(v, float) for v in (acc, lo, hi))
        ax.errorbar(x, a, yerr=[a - lo_, hi_ - a], fmt="o-", ms=3, lw=1, capsize=2, label=net)
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Type-1 vs type-0 separability per network, along the depth")
    ax.legend(fontsize=8)
    short = [name.replace("backbone.body.", "") for name in order]
    ax.set_xticks(np.arange(len(order)), short, rotation=90, fontsize=7)
    return _png(fig)


def accuracy_differences(
    layers: Sequence[str],
    difference: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    different: Sequence[bool],
    *,
    title: str,
) -> bytes:
    """Paired accuracy differences per layer with their CIs; layers called different
    (Holm-adjusted McNemar) are filled."""
    x = np.arange(len(layers))
    d, lo, hi = (np.asarray(v, float) for v in (difference, ci_low, ci_high))
    diff = np.asarray(different, bool)
    fig, ax = plt.subplots(figsize=(max(7, 0.32 * len(layers) + 3), 3.6))
    ax.axhline(0.0, color="k", lw=0.8)
    ax.errorbar(x, d, yerr=[d - lo, hi - d], fmt="none", ecolor="#57606a", lw=1, capsize=2)
    ax.scatter(x[~diff], d[~diff], s=18, facecolors="white", edgecolors="#1f77b4", label="not different", zorder=3)
    ax.scatter(x[diff], d[diff], s=22, color="#cf222e", label="different (Holm-adjusted McNemar)", zorder=3)
    ax.set_ylabel("accuracy difference")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.set_xticks(x, [name.replace("backbone.body.", "") for name in layers], rotation=90, fontsize=7)
    return _png(fig)
