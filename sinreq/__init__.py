"""SinReQ: sinusoidal regularization for low-bitwidth quantized training (arXiv 1905.01416).

The library needs only torch::

    from sinreq import SinReQ, quantize_model

    model = quantize_model(model, "dorefa", bits=4)   # or a Brevitas / torch.ao QAT model
    reg = SinReQ(model, lam=1.0)                      # binds to the layers below 8 bits
    loss = F.cross_entropy(model(x), y) + reg(epoch)

The regularizers (:class:`SinReQ`, its :class:`MSQE` control, :class:`Dampen`, :class:`KURE`,
:class:`BinReg`; registry ``REGULARIZERS``) are in :mod:`sinreq.regularizers`, the grid adapters
(sinreq's layers, Brevitas, torch.ao, ``grid=`` hooks) in :mod:`sinreq.grids`, the quantizers
(DoReFa, WRPN, LSQ; registry ``QUANTIZERS``) in :mod:`sinreq.quant`. The study (training
CLI, pipeline, report) needs the ``study`` extra: ``pip install 'sinreq[study]'``.
"""

from sinreq.quant import QUANTIZERS, Grid, quantize_model
from sinreq.regularizers import KURE, MSQE, REGULARIZERS, SCHEDULES, BinReg, Dampen, SinReQ

__version__ = "0.1.0"

__all__ = [
    "KURE",
    "MSQE",
    "QUANTIZERS",
    "REGULARIZERS",
    "SCHEDULES",
    "BinReg",
    "Dampen",
    "Grid",
    "SinReQ",
    "__version__",
    "quantize_model",
]
