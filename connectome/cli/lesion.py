"""`connectome lesion RESULTS_DIR`: test-time edge knockout of a trained trial -> lesion.parquet + heat map."""
from __future__ import annotations

import argparse


# Defaults of connectome.analysis.lesion, repeated here so `--help` does not import torch (a test
# checks the two agree).
DEFAULT_IMAGES = 1000
DEFAULT_BUDGET_S = 120.0


def register(subparsers) -> None:
    """Add the `lesion` subcommand."""
    parser = subparsers.add_parser(
        "lesion", help="knock out edges of a trained network and measure the validation error rise (points)",
        description="Zero a source's channels at its reader's input (BN in eval mode), per span class and "
                    "then for single edges in a seeded random order until the time budget is spent; each "
                    "knockout's cost is the rise of the validation error in percentage points (a language model: of "
                    "the validation bits per byte on its fixed windows; edges into named ports and each stream of a "
                    "multi-stream state are lesioned too). "
                    "Writes RESULTS_DIR/lesion.parquet and figures/lesion_<trial>.png/.svg.")
    parser.add_argument("results_dir", help="folder written by `connectome run`")
    parser.add_argument("--trial", default=None, help="trial id (default: lowest validation error)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                        help=f"validation images used (default {DEFAULT_IMAGES})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds for single-edge lesions after the span classes (default {DEFAULT_BUDGET_S:g})")
    parser.add_argument("--no-spans", dest="spans", action="store_false", help="skip the span-class lesions")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image subset and the edge order")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connectome.analysis.lesion import LesionPlan, write_lesions
    from connectome.analysis.units import format_points
    from connectome.errors import ConfigError

    if args.images < 1 or args.budget < 0:
        raise ConfigError("--images must be >= 1 and --budget >= 0 seconds")
    plan = LesionPlan(budget_s=args.budget, spans=args.spans, seed=args.seed)
    out, figures, table = write_lesions(args.results_dir, args.trial, args.images, plan)
    edges, counts = table[table["kind"] == "edge"], table["kind"].value_counts()
    if "baseline_val_bpb" in table:  # a language model
        print(f"trial {table['trial_id'].iloc[0]}: baseline val {table['baseline_val_bpb'].iloc[0]:.4g} bits per byte "
              f"on {table['n_windows'].iloc[0]} windows; {len(edges)} single edges, {counts.get('stream', 0)} "
              f"streams and {counts.get('span', 0)} span classes lesioned (val_bpb_rise: the cost of each)")
    else:
        print(f"trial {table['trial_id'].iloc[0]}: baseline val error "
              f"{format_points(table['baseline_val_error_pts'].iloc[0])} points on {table['n_images'].iloc[0]} images; "
              f"{len(edges)} single edges and {int((table['kind'] == 'span').sum())} span classes lesioned "
              "(val_error_rise_pts: the cost of each)")
    print(f"wrote {out} and {figures[0]}")
    return 0

