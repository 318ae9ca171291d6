"""Size and power of the deciding tests on simulated activations (the README's table).

Data: :func:`fovea_ray.stats.simulate.activation_like`, d = 1024 (512 channels' mean and
max), skewed gamma values with a shared contrast factor, channel scales either log-normal
(about one decade) or log-uniform over 2 or 5 decades. Under H1 the max statistic of 32
channels (spread over all scales) is 30% larger in type 1. Each data set is split 50/50 and
fitted once; the half permutation uses the rule's P (19 at alpha = 0.05).

    python benchmarks/size_power.py            # the full table (about 10 minutes on 2 cores)
    python benchmarks/size_power.py --quick    # fewer data sets

Prints Markdown tables: the size of each deciding test over 300 null data sets (with the 99%
binomial band), and the power of the standardized classifier against the study's.
"""

from __future__ import annotations

import argparse
import os
import time

from scipy import stats

from fovea_ray.stats.simulate import decision_rates

ALPHA = 0.05
SPREADS = {"log-normal (~1 decade)": None, "2 decades": 2.0, "5 decades": 5.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 null and 30 power data sets per cell")
    args = ap.parse_args()
    n_null = 100 if args.quick else 300
    n_power = 30 if args.quick else 100
    lo, hi = (x / n_null for x in stats.binom.interval(0.99, n_null, ALPHA))
    print(f"machine: {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}; alpha = {ALPHA}")
    print(f"\n### Size over {n_null} null data sets (99% band {lo:.3f}-{hi:.3f}), five decades of scale\n")
    print("| samples per class | test | rejection rate |\n|---|---|---|")
    t0 = time.perf_counter()
    for n, tests in ((40, ("half", "full")), (250, ("asymptotic", "half")), (500, ("asymptotic",))):
        rates = decision_rates(n_per_class=n, n_datasets=n_null, tests=tests, alpha=ALPHA)
        for t in tests:
            print(f"| {n} | {t} | {rates[t]:.3f} |", flush=True)
    rates = decision_rates(n_per_class=40, n_datasets=n_null, n_layers=4, tests=("half",), alpha=ALPHA)
    print(f"| 40 (4 layers) | BH across layers, any call | {rates['bh_half']:.3f} |")
    print(f"| 40 (4 layers) | merge layer after the first | {rates['merge_half']:.3f} |", flush=True)
    print(f"\n### Power over {n_power} data sets (half permutation, alpha = {ALPHA})\n")
    print("| channel scales | samples per class | standardized | study (unscaled, lbfgs 500) |\n|---|---|---|---|")
    for label, decades in SPREADS.items():
        for n in (40, 100, 250):
            common = dict(
                n_per_class=n,
                n_datasets=n_power,
                tests=("half",),
                alpha=ALPHA,
                shift=0.3,
                shifted_channels=32,
                scale_decades=decades,
                seed=10_000,
            )
            std = decision_rates(**common)["half"]
            study = decision_rates(classifier="study", **common)["half"]
            print(f"| {label} | {n} | {std:.2f} | {study:.2f} |", flush=True)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
