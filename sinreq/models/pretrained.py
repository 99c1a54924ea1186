"""Published ImageNet weights through torchvision's weights API, for the networks that share
torchvision's architecture and state_dict keys (the authors fine-tuned pretrained models)."""

from __future__ import annotations

import torch

# the last layer of each network: its rows are the classes
CLASSIFIERS = {"alexnet": "classifier.6", "resnet18": "fc"}


def torchvision_state(model: str, tag: str, num_classes: int) -> dict[str, torch.Tensor]:
    """torchvision's weights ``tag`` (e.g. ``IMAGENET1K_V1``) for ``model``, downloaded once and
    hash-checked by torchvision. With ``num_classes`` < 1000 the classifier keeps the rows of the
    first classes: the ImageNet subset keeps the first classes by sorted wnid, which is
    torchvision's class order."""
    from torchvision.models import get_model_weights

    if model not in CLASSIFIERS:
        allowed = ", ".join(CLASSIFIERS)
        raise ValueError(f"--init-from torchvision:{tag}: {model} has none; allowed: {allowed}")
    weights = get_model_weights(model)
    if tag not in weights.__members__:
        allowed = ", ".join(weights.__members__)
        raise ValueError(f"--init-from torchvision:{tag}: unknown weights; allowed: {allowed}")
    try:
        state = weights[tag].get_state_dict(progress=False, check_hash=True)
    except (RuntimeError, OSError) as err:  # a bad hash, or no network
        reason = " ".join(str(err).split())
        raise ValueError(f"--init-from torchvision:{tag}: {reason}") from None
    last = CLASSIFIERS[model]
    if num_classes > state[f"{last}.weight"].shape[0]:
        raise ValueError(
            f"--init-from torchvision:{tag}: {num_classes} classes; allowed: at most "
            f"{state[f'{last}.weight'].shape[0]}"
        )
    for name in (f"{last}.weight", f"{last}.bias"):
        state[name] = state[name][:num_classes]
    return state
