"""Key numbers of a trained trial's Figure 4 heat map, next to the same network at initialisation.

    python scripts/feature_usage_numbers.py results/feature_usage_fashion/trials/<trial_id> [--seed 0]

Per-source usage (`feature_usage(model, per_source=True)`: root mean square of the per-map weight
norms, each column divided by its largest), summarised as the paper's three observations:
1. spread: mean usage over (layer, source) pairs, and the share of pairs at >= 0.5;
2. within-block bias: in blocks 2 and 3, the block input's usage vs the block's own layers';
3. transitions and classifier: usage of the newest half of the block's layers / the oldest half.
The initialisation row (the trial's seed, as the trainer seeds it) shows what training changed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from connectome.analysis import feature_usage, load_trial_model
from connectome.executor import ConnectomeNet


def summary(model) -> dict[str, float]:
    """The three observations as numbers."""
    f = feature_usage(model, per_source=True)
    layers = f[f.target_kind == "layer"]
    inner = layers[layers.block > 1]
    from_input = inner.source.str.startswith("transition")
    out = {
        "mean usage, layers": layers.value.mean(),
        "share of (layer, source) >= 0.5": (layers.value >= 0.5).mean(),
        "blocks 2-3: block input": inner[from_input].value.mean(),
        "blocks 2-3: own layers": inner[~from_input].value.mean(),
    }
    for target in ("transition1", "transition2", "classifier"):
        t = f[(f.target == target) & f.source.str.contains("layer")]
        k = t.source.str.extract(r"layer(\d+)")[0].astype(int)
        out[f"{target}: newest/oldest half"] = t[k > k.max() / 2].value.mean() / t[k <= k.max() / 2].value.mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="the trial's seed (initialisation)")
    args = parser.parse_args()
    trained = load_trial_model(args.trial_dir)
    torch.manual_seed(args.seed)  # as setup_trial seeds the initialisation
    initial = ConnectomeNet(trained.spec)
    rows = {"trained": summary(trained), "initialisation": summary(initial)}
    print(f"| number | {' | '.join(rows)} |\n|---|---|---|")
    for key in rows["trained"]:
        print(f"| {key} | " + " | ".join(f"{rows[r][key]:.3f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
