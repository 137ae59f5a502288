"""How strongly each layer uses each earlier source, from trained weights (Figure 4 of arXiv 1608.06993 v1)."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from connectome.errors import ConfigError
from connectome.store.layout import TrialFiles

if TYPE_CHECKING:
    import pandas as pd


class RefusedFileError(ConfigError):
    """A results file that is not what connectome writes (e.g. a model.pt that holds code)."""


def normalize_usage(matrix: np.ndarray) -> np.ndarray:
    """Divide each row (one layer) by its largest entry: 1 marks the source it uses most.

    Rows are layers 1..n and columns sources 0..n-1 as in `ConnectomeNet.source_usage()`;
    NaN (no edge) stays NaN, and a row of zeros stays zero.
    """
    matrix = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.where(np.isnan(matrix), -np.inf, matrix), axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
    return matrix / peak


def model_usage(model) -> list[np.ndarray]:
    """Per-block normalised usage matrices of a `ConnectomeNet`."""
    return [normalize_usage(m) for m in model.source_usage()]


def load_trial_model(trial_dir: str | Path):
    """The trained `ConnectomeNet` of a trial folder (spec.json + model.pt), on the CPU."""
    import torch

    from connectome.executor import ConnectomeNet
    from connectome.spec import NetworkSpec

    files = TrialFiles(Path(trial_dir))
    spec_file, weights = files.spec, files.model
    for file in (spec_file, weights):
        if not file.exists():
            raise ConfigError(f"{file} not found: the trial kept no trained model (did it finish?)")
    model = ConnectomeNet(NetworkSpec.from_json(spec_file.read_text()))
    try:
        # weights_only: tensors and plain containers; a pickle that would build other objects is refused.
        with warnings.catch_warnings():  # torch warns about the protocol before refusing
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise RefusedFileError(f"{weights}: refused, not a weights file of {spec_file.name} "
                               f"({_reason(err)})") from None
    return model.eval()


def _reason(err: Exception) -> str:
    """The informative line of torch's multi-line load errors."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"


def trial_usage(trial_dir: str | Path) -> list[np.ndarray]:
    """Per-block normalised usage matrices of a trained trial."""
    return model_usage(load_trial_model(trial_dir))



# feature_usage: the whole network at the paper's resolution (one row per input feature map).

USAGE_COLUMNS = ["target", "source", "channel", "value", "norm", "target_kind", "block"]


def feature_usage(model, per_source: bool = False) -> pd.DataFrame:
    """Figure 4's data: how strongly each conv (and the classifier) weights each input feature map.

    One row per (target, source feature map): `norm` is the l2 norm of the target's filter
    weights on that map (all output filters and kernel positions), `value` is `norm` divided
    by the target's largest, as the paper normalises each column. Targets are every layer of
    every block (`block1.layer1`, ...; a layer's first conv), `transition1`, `transition2`, ...
    (their 1x1 conv) and `classifier` (the linear layer). Sources are named by the layer that
    produced the map (`stem`, `block1.layer3`, `transition1`, ...), `channel` is the map's index
    within it. With `per_source=True` the maps of one source are pooled into one row per
    (target, source): the root mean square of their norms, so wide and narrow sources compare.
    Rows come in network order; `target_kind` is layer/transition/classifier.
    """
    import pandas as pd

    rows = list(_usage_rows(model))
    frame = pd.DataFrame(rows, columns=USAGE_COLUMNS[:2] + ["channel", "norm", "target_kind", "block"])
    if per_source:
        keys = ["target", "source", "target_kind", "block"]
        frame = (frame.assign(sq=frame["norm"] ** 2).groupby(keys, sort=False)["sq"].mean()
                 .pow(0.5).rename("norm").reset_index())
        frame.insert(2, "channel", pd.NA)
    peak = frame.groupby("target", sort=False)["norm"].transform("max")
    frame["value"] = (frame["norm"] / peak.where(peak > 0, 1.0)).astype(float)
    return frame[USAGE_COLUMNS]


def _usage_rows(model):
    """(target, source, channel, norm, kind, block) in network order."""
    spec = model.spec
    producer = "stem"
    for i, block in enumerate(model.blocks):
        names = _source_names(block.spec, i, producer)
        known: dict[int, list] = {}  # one block's channel maps, each node's computed once
        for k, v in enumerate(block.spec.layer_ids, start=1):
            op = block.nodes[str(v)].op
            if op.in_conv is not None:
                yield from _rows(f"block{i + 1}.layer{k}", "layer", i + 1, op.in_conv.weight,
                                 _channel_map(block.spec, v, names, known))
        reads = _channel_map(block.spec, block.spec.output, names, known)
        if i < len(model.transitions):
            producer = f"transition{i + 1}"
            weight = _input_weight(model.transitions[i])
            if weight is not None:
                yield from _rows(producer, "transition", i + 1, weight, reads)
        else:
            yield from _rows("classifier", "classifier", len(spec.blocks), model.head.classifier.weight, reads)


def _source_names(block, index: int, producer: str) -> dict[int, str]:
    """Node id -> name of the layer whose maps it holds (node 0: the block's producer)."""
    names = {0: producer}
    names.update({v: f"block{index + 1}.layer{k}" for k, v in enumerate(block.layer_ids, start=1)})
    names.update({n.id: f"block{index + 1}.node{n.id}" for n in block.nodes if n.id not in names})
    return names


def _channel_map(block, v: int, names: dict[int, str], known: dict[int, list]) -> list[list[tuple[str, int]]]:
    """For each input channel of node v: the (source, channel) maps it carries (several under sum).

    `known` holds the maps of the block's nodes already computed: a chain of joins (a fractal's
    means, a highway's gates) reads each earlier join through several paths, and recomputing them
    grew exponentially with the depth (a report of a fractal study ran for minutes in here).
    """
    if v in known:
        return known[v]
    node = block.nodes[v]
    columns: list[list[tuple[str, int]]] = [[] for _ in range(block.input_width(v))]
    start = 0
    for e in block.inputs[v]:
        lo, hi = e.window or (0, block.nodes[e.src].width)
        offset = start if node.agg == "concat" else 0
        for j, c in enumerate(range(lo, hi)):
            columns[offset + j].extend(_expand(block, e.src, c, names, known))
        start += hi - lo
    known[v] = columns
    return columns


def _expand(block, u: int, c: int, names: dict[int, str], known: dict[int, list]) -> list[tuple[str, int]]:
    """Channel c of node u as produced maps: an output (identity) node passes its inputs through."""
    if block.nodes[u].op != "identity":
        return [(names[u], c)]
    return _channel_map(block, u, names, known)[c]


def _input_weight(module):
    """The weight reading a transition's input channels (1x1 conv), or None for other kinds."""
    conv = getattr(module, "conv", None)
    return None if conv is None else conv.weight


def _rows(target: str, kind: str, block: int, weight, columns):
    """One row per (input channel, source map): the l2 norm of the weights on that channel."""
    w = weight.detach().float()
    norms = w.reshape(w.shape[0], w.shape[1], -1).norm(dim=(0, 2)).tolist()  # (C_in,)
    for norm, maps in zip(norms, columns):
        for source, channel in maps:
            yield target, source, channel, norm, kind, block
