"""`connectome export RESULTS_DIR`: the replayable benchmark table; `--replay STUDY` answers a study from it."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the `export` subcommand."""
    parser = subparsers.add_parser(
        "export", help="write a benchmark table keyed by (canonical hash, training hash, seed, epoch)",
        description="Export every completed trial's per-epoch metrics, final metrics and spec to "
                    "RESULTS_DIR/export.parquet; with --replay STUDY, answer that study's trials from it "
                    "without training and write replay.csv.")
    parser.add_argument("results_dir", help="folder written by `connectome run`")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="output file (default RESULTS_DIR/export.parquet)")
    parser.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--replay", metavar="STUDY", default=None,
                        help="study file to replay against the table (grid or Optuna)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from connectome.analysis.export import write_export
    from connectome.store.layout import StudyDir

    path = write_export(args.results_dir, args.output)
    table = pd.read_parquet(path)
    print(f"wrote {path}: {table['canonical_key'].nunique()} architectures, {len(table)} rows")
    if args.replay:
        from connectome.study import load_study
        from connectome.study.replay import ReplayTable, replay_study

        frame = replay_study(load_study(args.replay), ReplayTable(table))
        out = StudyDir(args.results_dir).replay_file
        frame.to_csv(out, index=False)
        print(f"replayed {int((frame['status'] == 'replayed').sum())} of {len(frame)} trials; wrote {out}")
    return 0
