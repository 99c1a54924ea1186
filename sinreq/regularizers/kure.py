"""KURE, kurtosis regularization (Shkolnik et al., NeurIPS 2020, arXiv 2002.07686)::

    R = lambda mean_l (Kurt(W_l) - target)^2,   Kurt(W) = mean(((W - mu) / sigma)^4)

``target`` 1.8 is the kurtosis of a uniform distribution, which round-to-nearest quantizes with
the least error (``sigma`` the population standard deviation). It needs no grid: on a model with
no quantized layer it binds to every Conv / Linear weight (the fine-tune before post-training
quantization); on a quantized model to the quantized layers that the selection keeps.
"""

from __future__ import annotations

import torch
from pydantic import Field

from sinreq.regularizers.base import REGULARIZERS, Options, Regularizer


def kurtosis(w: torch.Tensor) -> torch.Tensor:
    """``mean(((w - mean w) / std w)^4)``, population standard deviation."""
    z = (w - w.mean()) / w.std(correction=0)
    return z.pow(4).mean()


class KUREOptions(Options):
    target: float = Field(1.8, gt=0, description="kurtosis the weights are pulled to")


@REGULARIZERS.register("kure")
class KURE(Regularizer):
    """KURE (module docstring)."""

    Options = KUREOptions
    needs_grid = False

    def penalty(self) -> torch.Tensor:
        terms = [(kurtosis(m.weight) - self.options.target).square() for _, m in self.layers]
        return torch.stack(terms).mean()
