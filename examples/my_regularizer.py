"""A weight regularizer from outside the package: L1 distance to the nearest level.

SINREQ_PLUGINS=examples/my_regularizer.py sinreq train ... --regularizer.name l1grid
SINREQ_PLUGINS=examples/my_regularizer.py dvc exp run -S regularizer.name=l1grid
"""

import torch
from pydantic import Field

from sinreq.quant import Grid
from sinreq.regularizers import REGULARIZERS, GridOptions, Regularizer


class L1GridOptions(GridOptions):  # the shared layer selection and domain, plus its own option
    power: float = Field(1.0, gt=0, description="exponent of the distance (1: L1)")


@REGULARIZERS.register("l1grid")
class L1Grid(Regularizer):
    """``lambda sum_l mean |x_l - nearest level|^p / step_l^p``."""

    Options = L1GridOptions

    def penalty_sum(self, grids: list[Grid]) -> torch.Tensor:
        p = self.options.power
        return torch.stack(
            [((g.x - g.nearest()).abs() / g.step).pow(p).mean() for g in grids]
        ).sum()
