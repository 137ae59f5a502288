"""Loading torchvision DenseNet weights into the executor's models (same architecture)."""
from __future__ import annotations

import re

import torch

from connectome.errors import SpecError
from connectome.executor import ConnectomeNet

_RULES = (
    (r"^features\.(conv0|norm0)\.", r"stem.\1."),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.", lambda m: f"blocks.{int(m[1]) - 1}.nodes.{m[2]}.op."),
    (r"^features\.transition(\d+)\.", lambda m: f"transitions.{int(m[1]) - 1}."),
    (r"^features\.norm5\.", "head.norm."),
    (r"^classifier\.", "head.classifier."),
)


def torchvision_key(key: str) -> str:
    """Name of a torchvision DenseNet parameter or buffer in a ConnectomeNet."""
    for pattern, repl in _RULES:
        new, hits = re.subn(pattern, repl, key)
        if hits:
            return new
    raise SpecError(f"torchvision key {key!r} has no counterpart in a ConnectomeNet")


def load_torchvision_densenet(model: ConnectomeNet, state_dict: dict[str, torch.Tensor]) -> ConnectomeNet:
    """Copy a torchvision DenseNet state_dict into a dense ConnectomeNet of the same shape."""
    mapped = {torchvision_key(k): v for k, v in state_dict.items()}
    own = model.state_dict()
    bad = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if bad or len(mapped) != len(own):
        raise SpecError(f"architectures differ: {len(bad)} mismatched tensors, e.g. {bad[:3]}")
    model.load_state_dict(mapped)
    return model
