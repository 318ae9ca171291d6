"""Learning rate as a pure function of the step: linear warm-up, then step or cosine decay.

A function of the step (rather than a stateful scheduler) makes a resumed run's rate
exactly the uninterrupted run's, with nothing to save.

References: linear warm-up and the linear scaling rule, Goyal et al., "Accurate, Large
Minibatch SGD: Training ImageNet in 1 Hour" (2017); the step schedule (x0.1 at about 2/3
and 8/9 of training) of Mask R-CNN's 1x recipe, He et al., "Mask R-CNN" (ICCV 2017);
cosine decay, Loshchilov & Hutter, "SGDR" (ICLR 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["learning_rate"]


def learning_rate(
    step: int,
    *,
    base_lr: float,
    steps: int,
    schedule: str = "step",
    milestones: Sequence[float] = (2 / 3, 8 / 9),
    gamma: float = 0.1,
    warmup_steps: int = 0,
    warmup_factor: float = 1e-3,
) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``steps``.

    Warm-up multiplies the rate by a factor rising linearly from ``warmup_factor`` at
    step 0 to 1 at ``warmup_steps``. After it, "step" multiplies by ``gamma`` at each
    milestone (fractions of ``steps``) passed, and "cosine" follows
    ``0.5 (1 + cos(pi step / steps))``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if schedule == "step":
        passed = sum(step >= int(round(m * steps)) for m in milestones)
        decay = gamma**passed
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose 'step' or 'cosine'")
    warm = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        alpha = step / warmup_steps
        warm = warmup_factor * (1 - alpha) + alpha
    return base_lr * warm * decay
