"""User factories for ``--model module:function`` tests (importable: tests/ is on sys.path)."""

from __future__ import annotations

from torch import nn


def tiny_mlp_tokens() -> nn.Module:
    """A token model: (B, 3, H, W) -> 4 x 4 patches as tokens (B, 16, 8) -> a linear layer."""

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 8, stride=8)
            self.mix = nn.Linear(8, 8)

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            return self.mix(tokens).mean(1)

    return Tokens()


def not_a_module():
    """A broken factory: returns a dict."""
    return {"conv": nn.Conv2d(3, 3, 1)}
