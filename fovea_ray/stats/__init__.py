"""Statistics: classifier two-sample tests and what the study left open.

Public API:

* :func:`classifier_two_sample_test` -> :class:`C2STResult` (Kim et al.'s asymptotic test,
  half and full permutation tests) and :func:`kim_asymptotic_test`.
* :func:`kim_min_test_per_class`: below this held-out count per class the asymptotic
  test is unreliable at a given alpha (the permutation test then decides).
* The classifier (:mod:`fovea_ray.stats.classifier`): ``"standardized"`` (default),
  ``"unscaled"`` or ``"study"``; one fit per split (:func:`fit_split`), convergence by
  the optimality condition.
* The decision rule (:mod:`fovea_ray.stats.decision`): :func:`required_permutations`
  (``P >= m/alpha - 1``) and :class:`DecisionPlan`, so that every decision can reject.
* Parallel pieces (permutation groups, layers) go through an :data:`Executor`
  (``executor(fn, items)``, like :func:`map`; default :func:`in_process`);
  :class:`fovea_ray.cluster.RayExecutor` runs them as Ray tasks.
* :func:`fit_logistic_batched` / :func:`prepare_design`: many L2-logistic fits over one
  design at once (torch, CPU or CUDA), used by the full permutation test.
* :func:`full_permutation_null`, :func:`half_permutation_null`.
* Score tests: :func:`friedman_score_tests`, :func:`score_normality`, :func:`odds_ratio_test`.
* Networks side by side: :func:`paired_accuracy_test` (McNemar's exact test and Newcombe's
  paired interval on one held-out split), :func:`compare_layers` (Holm across layers),
  :func:`holm`, :func:`merge_layer` (where resolutions merge).
* :func:`mmd_test` (Gretton et al.), :func:`channel_selectivity`, :func:`benjamini_hochberg`.
* :func:`run_battery` (one layer), :func:`run_store_tests` (a store: the layer sweep), and
  the ``results.json`` schema in :mod:`fovea_ray.stats.results`.

Heavy modules (torch, Ray) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LayerComparison": "compare",
    "PairedAccuracyResult": "compare",
    "compare_layers": "compare",
    "holm": "compare",
    "merge_layer": "compare",
    "paired_accuracy_test": "compare",
    "C2STFit": "c2st",
    "C2STResult": "c2st",
    "c2st_split": "c2st",
    "Executor": "executor",
    "InProcess": "executor",
    "in_process": "executor",
    "kim_min_test_per_class": "kim",
    "ClassifierSpec": "classifier",
    "LinearFit": "classifier",
    "fit_split": "classifier",
    "Decision": "decision",
    "DecisionPlan": "decision",
    "required_permutations": "decision",
    "classifier_two_sample_test": "c2st",
    "default_classifier": "c2st",
    "kim_asymptotic_test": "kim",
    "kim_order_statistic_rule": "kim",
    "permutation_pvalue": "kim",
    "confusion_from_paper": "kim",
    "class_errors": "kim",
    "fit_logistic_batched": "solver",
    "prepare_design": "solver",
    "BatchedLogisticFit": "solver",
    "LogisticDesign": "solver",
    "full_permutation_null": "permutation",
    "half_permutation_null": "permutation",
    "FullPermutationNull": "permutation",
    "friedman_score_tests": "scores",
    "score_normality": "scores",
    "odds_ratio_test": "scores",
    "mmd_test": "mmd",
    "channel_selectivity": "selectivity",
    "benjamini_hochberg": "selectivity",
    "ChannelSelectivity": "selectivity",
    "TestOutcome": "outcome",
    "BatteryConfig": "battery",
    "run_battery": "battery",
    "run_store_tests": "sweep",
    "read_results": "results",
    "write_results": "results",
    "validate_results": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"fovea_ray.stats.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fovea_ray.stats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
