"""`connectome wiring RESULTS_DIR`: a trained trial's learned connection weights -> heat map + table."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `wiring` subcommand."""
    parser = subparsers.add_parser(
        "wiring", help="draw a trained trial's learned connection weights (source by target, per block)",
        description="Read every static learned connection weight of a trained trial (joins of kind `weighted`, "
                    "and any kind whose join declares per-edge weights), print them as a table (block, target, "
                    "source, weight, its initial value and the change) and write "
                    "figures/learned_wiring_<trial>.png/.svg; per-token weights (mudd, depth-attention) as their mean "
                    "and spread over the trial's validation tokens, in figures/learned_wiring_dynamic_<trial>.png/.svg"
                    ". Other input-dependent weights (gates, stream mixings) are named, not drawn.")
    parser.add_argument("results_dir", help="folder written by `connectome run`")
    parser.add_argument("--trial", default=None,
                        help="trial id (default: the lowest validation error among trials with learned weights)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from connectome.analysis.learned_wiring import write_learned_wiring

    trial_id, figures, table, sentences, tokens = write_learned_wiring(args.results_dir, args.trial)
    print(f"trial {trial_id}: {len(table)} learned connection weights"
          + (f", {len(tokens)} per-token ones (mean and spread over the validation tokens)" if len(tokens) else ""))
    with pd.option_context("display.max_rows", None, "display.width", 200):
        for part in (table, tokens):
            if len(part):
                print(part.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for sentence in sentences:
        print(sentence)
    for figure in figures[::2]:  # .png of each figure (its .svg beside it)
        print(f"wrote {figure}")
    return 0
