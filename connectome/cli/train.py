"""`connectome train`: one trial from a YAML file and/or flags over the same keys.

Progress inside an epoch is shown as a study's live view shows it (orchestration/progress.py): a
live bar on a terminal, a timestamped line now and then in a log; one line per epoch either way.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

from connectome.overrides import apply_overrides, read_yaml_mapping

TRIAL_KEYS = "arch, data, train, seed"

# Shortcut flag -> dotted config key.
SHORTCUTS = {
    "dataset": "data.name",
    "preset": "arch.preset",
    "pattern": "arch.pattern",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "precision": "train.precision",
    "device": "train.device",
    "threads": "train.threads",
    "seed": "seed",
}


# The first trains in seconds on generated data (a depth-10 network, 8x8 images); the second is
# a real one: Fashion-MNIST (downloaded if missing), about a minute an epoch on a CPU core.
EXAMPLES = (
    "connectome train --dataset synthetic --pattern partial -s arch.depth=10 -s arch.growth=6 "
    "-s data.synthetic.size=8 --epochs 2 --threads 1",
    "connectome train benchmarks/fashion_small.yaml --set train.epochs=2 --trial-dir runs/t0",
)
EPILOG = "examples:\n" + "\n".join(f"  {example}" for example in EXAMPLES)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    p = subparsers.add_parser("train", help="train one trial and print its record",
                              description=__doc__.splitlines()[0], epilog=EPILOG)
    p.add_argument("config", nargs="?", type=Path,
                   help="YAML trial config: keys arch, data, train, seed (see connectome/training/config.py)")
    p.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key, value parsed as YAML (e.g. train.lr=0.05, arch.block_layers=[4,4])")
    for flag, key in SHORTCUTS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, default=None, metavar="VALUE",
                       help=f"same as -s {key}=VALUE")
    p.add_argument("--trial-dir", type=Path, default=None,
                   help="write config.json, checkpoints, result.json, spec.json, model.pt here; resumes from it")
    p.add_argument("--json", action="store_true", help="print the full record as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print progress and the summary."""
    from connectome.training import train_trial

    cfg = trial_config(args)
    quiet = args.json or args.verbosity < 0
    with contextlib.nullcontext({}) if quiet else live_progress(cfg) as callbacks:
        record = train_trial(cfg, trial_dir=args.trial_dir, **callbacks)
    print(json.dumps(record, indent=1) if args.json else summary(record))
    return 0 if record["status"] == "completed" else 1


def trial_config(args: argparse.Namespace):
    """The TrialConfig of the YAML file with -s/--set and the shortcut flags on top, its limits checked."""
    from connectome.training import make_trial_config

    raw = read_yaml_mapping(args.config, "trial config", TRIAL_KEYS, allow_empty=True) if args.config else {}
    pairs = list(args.overrides) + [f"{SHORTCUTS[f]}={getattr(args, f)}" for f in SHORTCUTS
                                    if getattr(args, f) is not None]
    apply_overrides(raw, pairs)
    source = f"trial config {args.config}" if args.config else "trial config (flags)"
    limits = raw.pop("limits", None)  # bounds, not part of the trial (its id and record)
    cfg = make_trial_config(raw, source=source)
    check_classes(cfg, raw, source)
    check_limits(cfg, limits, source)
    return cfg


@contextlib.contextmanager
def live_progress(cfg) -> Iterator[dict]:
    """`on_epoch` and `on_batch` for train_trial that show the trial as a study's live view shows one."""
    from connectome.console import make_console
    from connectome.orchestration import batch_progress
    from connectome.orchestration.progress import StudyView
    from connectome.store.labels import trial_label
    from connectome.training.catalog import tokens_per_sample

    label = trial_label({"pattern": cfg.arch.pattern}, seed=cfg.seed)
    meter = batch_progress.BatchMeter(cfg.train.epochs, interval=batch_progress.UPDATE_INTERVAL_S,
                                      tokens_per_sample=tokens_per_sample(cfg))

    def on_batch(epoch: int, batch: int, batches: int, images: int) -> None:
        update = meter(epoch, batch, batches, images)
        if update is not None:
            view.batch(label, **update)

    def on_epoch(row: dict) -> None:
        print_epoch(row)
        if view.live is not None:  # the bar moves on a terminal; a log has the line above already
            view.epoch(label, {**row, "epochs": cfg.train.epochs})

    with StudyView(make_console(), "train", total=1, done=0, transient=True) as view:
        view.started(label)
        yield {"on_epoch": on_epoch, "on_batch": on_batch}


# How `connectome train` raises a bound, for the error message ({key} is the Limits field).
RAISE_IN_TRAIN = "with `--set limits.{key}=N` (or `limits:` in the config file)"


def check_classes(cfg, raw: dict, source: str) -> None:
    """An `arch.classes` given explicitly must be the data's (a preset's or the default value comes from the data)."""
    from connectome.errors import ConfigError
    from connectome.training.plan import classes_conflict

    arch = raw.get("arch")
    problem = classes_conflict(cfg.arch.classes, cfg.data) if isinstance(arch, dict) and "classes" in arch else None
    if problem:
        raise ConfigError(f"{source}: {problem}")


def check_limits(cfg, limits: object, source: str) -> None:
    """The study size bounds for one trial; a `limits:` section (or --set limits.KEY=N) raises them."""
    from pydantic import ValidationError

    from connectome.errors import ConfigError
    from connectome.study.limits import Limits, check_trial_limits

    try:
        bounds = Limits.model_validate(limits or {})
        check_trial_limits(cfg, bounds, how=RAISE_IN_TRAIN)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"invalid {source}: limits.{'.'.join(map(str, first['loc']))}: {first['msg']} "
                          f"(keys: {', '.join(Limits.model_fields)})") from None
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    from connectome.study.limits import check_planned_limits
    from connectome.training.plan import plan_trial

    try:  # the network as planned (graph files set their own widths): before any weight is allocated
        check_planned_limits(plan_trial(cfg), bounds, how=RAISE_IN_TRAIN)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def print_epoch(row: dict) -> None:
    """One progress line per epoch (per evaluation interval of a language model: bits per byte, tokens/s)."""
    if "val_bpb" in row:
        print(f"interval {row['epoch']:>3}  train {row['train_bpb']:.4f} bpb  val {_fmt(row['val_bpb'])} bpb  "
              f"lr {row['lr']:.4g}  {row['seconds']:.1f}s  {row['tokens_per_s']:.0f} tokens/s", flush=True)
        return
    print(f"epoch {row['epoch']:>3}  loss {row['train_loss']:.4f}  train {row['train_acc']:.4f}  "
          f"val {_fmt(row['val_acc'])}  lr {row['lr']:.4g}  {row['seconds']:.1f}s  "
          f"{row['images_per_s']:.0f} img/s", flush=True)


def summary(record: dict) -> str:
    """The record's headline numbers in a few lines."""
    language_model = "best_val_bpb" in record
    per = "token" if language_model else "image"
    lines = [f"status {record['status']}  graph {record['graph_hash']}  params {record['params']}  "
             f"flops {record['flops']} (multiply-adds per {per})"]
    if language_model:
        lines.append(f"test {_fmt(record.get('test_bpb'))} bpb  best val {_fmt(record['best_val_bpb'])} bpb "
                     f"(interval {record['best_val_epoch']})  intervals {record['epochs_completed']}  "
                     f"wall {record['wall_time_s']:.1f}s  device {record['device']}")
    else:
        lines.append(f"test acc {_fmt(record['test_acc'])}  best val {_fmt(record['best_val_acc'])} "
                     f"(epoch {record['best_val_epoch']})  epochs {record['epochs_completed']}  "
                     f"wall {record['wall_time_s']:.1f}s  device {record['device']}")
    if record["error"]:
        lines.append(f"error: {record['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"
