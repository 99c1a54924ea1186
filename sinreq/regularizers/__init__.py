"""Weight regularizers, one module each, in the ``REGULARIZERS`` registry.

``sinreq`` (SinReQ), ``msqe`` (its control), ``dampen`` (oscillation dampening), ``kure``
(kurtosis) and ``binreg`` (bin regularization) register themselves here; one from outside the
package subclasses :class:`Regularizer` and joins with ``@REGULARIZERS.register("name")``::

    reg = REGULARIZERS.get("kure")(model, lam=1.0, schedule="warmup", warmup_epochs=2)
    loss = F.cross_entropy(model(x), y) + reg(epoch)
"""

from sinreq.regularizers.base import (
    REGULARIZERS,
    GridOptions,
    Options,
    Regularizer,
    build_regularizer,
    check_lambda,
)
from sinreq.regularizers.binreg import BinReg, bin_penalty
from sinreq.regularizers.dampen import Dampen, dampening
from sinreq.regularizers.kure import KURE, kurtosis
from sinreq.regularizers.msqe import MSQE, msqe, msqe_of
from sinreq.regularizers.schedules import SCHEDULES, check_warmup_epochs
from sinreq.regularizers.sinreq import SinReQ, sin2, sin2_sum

__all__ = [
    "KURE",
    "MSQE",
    "REGULARIZERS",
    "SCHEDULES",
    "BinReg",
    "Dampen",
    "GridOptions",
    "Options",
    "Regularizer",
    "SinReQ",
    "bin_penalty",
    "build_regularizer",
    "check_lambda",
    "check_warmup_epochs",
    "dampening",
    "kurtosis",
    "msqe",
    "msqe_of",
    "sin2",
    "sin2_sum",
]
