"""Loading reference implementations' weights into the executor's models (same architecture, other names).

Each reference is a list of renaming rules (the first that matches a key renames it); tensors whose shapes
differ only in singleton dimensions (a layer scale of (C,) against (C, 1, 1)) are reshaped.
"""
from __future__ import annotations

import re
from typing import Callable, Union

import torch

from connectome.errors import SpecError
from connectome.executor import ConnectomeNet

Rule = tuple[str, Union[str, Callable[[re.Match], str]]]

_DENSENET_RULES: tuple[Rule, ...] = (
    (r"^features\.(conv0|norm0)\.", r"stem.\1."),
    (r"^features\.denseblock(\d+)\.denselayer(\d+)\.", lambda m: f"blocks.{int(m[1]) - 1}.nodes.{m[2]}.op."),
    (r"^features\.transition(\d+)\.", lambda m: f"transitions.{int(m[1]) - 1}."),
    (r"^features\.norm5\.", "head.norm."),
    (r"^classifier\.", "head.classifier."),
)

# torchvision's ConvNeXt: features 0 (stem), 1/3/5/7 (stages of CNBlocks), 2/4/6 (downsampling), classifier.
_CONVNEXT_PARTS = {"0": "conv_dw", "2": "norm", "3": "fc1", "5": "fc2"}
_CONVNEXT_RULES: tuple[Rule, ...] = (
    (r"^features\.0\.0\.", "stem.conv."),
    (r"^features\.0\.1\.", "stem.norm."),
    (r"^features\.([1357])\.(\d+)\.layer_scale$",
     lambda m: f"blocks.{int(m[1]) // 2}.nodes.{int(m[2]) + 1}.op.layer_scale"),
    (r"^features\.([1357])\.(\d+)\.block\.(\d)\.",
     lambda m: f"blocks.{int(m[1]) // 2}.nodes.{int(m[2]) + 1}.op.{_CONVNEXT_PARTS[m[3]]}."),
    (r"^features\.([246])\.0\.", lambda m: f"transitions.{int(m[1]) // 2 - 1}.norm."),
    (r"^features\.([246])\.1\.", lambda m: f"transitions.{int(m[1]) // 2 - 1}.conv."),
    (r"^classifier\.0\.", "head.norm."),
    (r"^classifier\.2\.", "head.classifier."),
)

# torchvision's EfficientNet: features 0 (stem conv), 1-7 (MBConv stages), 8 (head conv), classifier.
_EFFICIENTNET_RULES: tuple[Rule, ...] = (
    (r"^features\.0\.", "stem.conv."),
    (r"^features\.1\.0\.", "stem.unit."),
    (r"^features\.8\.", "head.conv."),
    (r"^features\.([2-7])\.0\.", lambda m: f"transitions.{int(m[1]) - 2}."),
    (r"^features\.([1-7])\.(\d+)\.", lambda m: f"blocks.{int(m[1]) - 1}.nodes.{m[2]}.op."),
    (r"^classifier\.1\.", "head.classifier."),
)

# timm's RDNet: stem, dense_stages (stage i > 0: 0 norm, 1 conv, 2 dense blocks), head.
_RDNET_RULES: tuple[Rule, ...] = (
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^dense_stages\.0\.0\.dense_block(\d+)\.gamma$", lambda m: f"blocks.0.nodes.{int(m[1]) + 1}.op.layer_scale"),
    (r"^dense_stages\.0\.0\.dense_block(\d+)\.layers\.", lambda m: f"blocks.0.nodes.{int(m[1]) + 1}.op."),
    (r"^dense_stages\.(\d+)\.0\.", lambda m: f"transitions.{int(m[1]) - 1}.norm."),
    (r"^dense_stages\.(\d+)\.1\.", lambda m: f"transitions.{int(m[1]) - 1}.conv."),
    (r"^dense_stages\.(\d+)\.2\.dense_block(\d+)\.gamma$",
     lambda m: f"blocks.{m[1]}.nodes.{int(m[2]) + 1}.op.layer_scale"),
    (r"^dense_stages\.(\d+)\.2\.dense_block(\d+)\.layers\.", lambda m: f"blocks.{m[1]}.nodes.{int(m[2]) + 1}.op."),
    (r"^head\.norm\.", "head.norm."),
    (r"^head\.fc\.", "head.classifier."),
)

# Reference implementations by name, and their renaming rules.
REFERENCES: dict[str, tuple[Rule, ...]] = {
    "torchvision-densenet": _DENSENET_RULES, "torchvision-convnext": _CONVNEXT_RULES,
    "torchvision-efficientnet": _EFFICIENTNET_RULES, "timm-rdnet": _RDNET_RULES,
}


def reference_key(key: str, reference: str = "torchvision-densenet") -> str:
    """Name of a reference implementation's parameter or buffer in a ConnectomeNet."""
    for pattern, repl in REFERENCES[reference]:
        new, hits = re.subn(pattern, repl, key)
        if hits:
            return new
    raise SpecError(f"{reference} key {key!r} has no counterpart in a ConnectomeNet")


def torchvision_key(key: str) -> str:
    """Name of a torchvision DenseNet parameter or buffer in a ConnectomeNet."""
    return reference_key(key, "torchvision-densenet")


def load_reference(model: ConnectomeNet, state_dict: dict[str, torch.Tensor], reference: str) -> ConnectomeNet:
    """Copy a reference implementation's state_dict into a ConnectomeNet of the same architecture."""
    own = model.state_dict()
    mapped = {}
    for key, value in state_dict.items():
        name = reference_key(key, reference)
        if name in own and own[name].shape != value.shape and own[name].numel() == value.numel():
            value = value.reshape(own[name].shape)  # a (C,) layer scale held as (C, 1, 1)
        mapped[name] = value
    bad = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if bad or len(mapped) != len(own):
        raise SpecError(f"architectures differ: {len(bad)} mismatched tensors, e.g. {bad[:3]}")
    model.load_state_dict(mapped)
    return model


def load_torchvision_densenet(model: ConnectomeNet, state_dict: dict[str, torch.Tensor]) -> ConnectomeNet:
    """Copy a torchvision DenseNet state_dict into a dense ConnectomeNet of the same shape."""
    return load_reference(model, state_dict, "torchvision-densenet")
