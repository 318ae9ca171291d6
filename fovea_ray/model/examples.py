"""Example user factories for ``--model package.module:function`` (and the tests' two-layer net).

A factory is any importable function that takes no arguments and returns an
``nn.Module`` whose forward takes a (B, 3, H, W) batch; fovea-ray seeds torch's RNG around
the call (``--seed``), so random weights are reproducible. Write your own the same way and
name it as ``mypackage.nets:my_net`` (the module must be importable on every Ray worker,
e.g. installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

__all__ = ["two_layer_cnn"]


def two_layer_cnn() -> nn.Module:
    """Two conv layers, then a pooled linear head: ``conv1`` (16 ch) -> ``conv2`` (32 ch) -> ``head``.

    Its default layer (the middle of its seven named children) is ``act2``, the second
    conv's rectified map.
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, stride=2, padding=1),
            act1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, stride=2, padding=1),
            act2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            head=nn.Linear(32, 10),
        )
    )
