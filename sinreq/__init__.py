"""SinReQ: sinusoidal regularization for low-bitwidth quantized training (arXiv 1905.01416).

The library needs only torch::

    from sinreq import SinReQ, quantize_model

    model = quantize_model(model, "dorefa", bits=4)   # or a Brevitas / torch.ao QAT model
    reg = SinReQ(model, lam=1.0, bits=4)              # binds to the model's quantized layers
    loss = F.cross_entropy(model(x), y) + reg(epoch)

:class:`SinReQ` and the :class:`MSQE` control are in :mod:`sinreq.regularizers`, the grid
adapters (sinreq's DoReFa / WRPN layers, Brevitas, torch.ao, ``grid=`` hooks) in
:mod:`sinreq.grids`, the quantizers in :mod:`sinreq.quant`. The study (training CLI, pipeline,
report) needs the ``study`` extra: ``pip install 'sinreq[study]'``.
"""

from sinreq.grids import Grid
from sinreq.quant import quantize_model
from sinreq.regularizers import MSQE, SinReQ

__version__ = "0.1.0"

__all__ = ["MSQE", "Grid", "SinReQ", "__version__", "quantize_model"]
