"""Language-model training speed: a connectome `prenorm` trial vs a hand-written nanoGPT-style decoder (issue 27).

Part 1, tokens/s at equal loss. Both sides train the same shape (width, heads, sublayer pairs,
context, SwiGLU hidden width, tied or untied head) with the same recipe (AdamW, no decay on
norms/embeddings, warm-up then cosine, clipping, batch, steps) on the same bytes (the corpus,
its contiguous split and the fixed validation windows), each in a fresh process with the same
thread count, one at a time, alternating (A,B then B,A each round). Each side reports the
tokens per second of its training steps (evaluation excluded) and its final validation loss;
the peer imports nothing from connectome. Part 2: every registered decoder pattern (at its default
options; `file` needs a graph and is left out) at the same shape, training-step throughput, peak
resident memory and added parameters relative to prenorm (fresh processes, interleaved rounds).
GPU rows are not measured here (no GPU in the benchmark machine): they print as "not run".

    python benchmarks/lm_vs_pytorch.py --rounds 3                      # defaults: width 128, 8 pairs
    python benchmarks/lm_vs_pytorch.py --smoke                         # seconds: a pipeline check, no numbers
    python benchmarks/lm_vs_pytorch.py --threads 2 --steps 100 --json out.json
    python benchmarks/lm_vs_pytorch.py --rounds 3 --patterns muddformer,hyper-connections  # part 2 for a few
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "prenorm"
SMOKE = dict(width=16, heads=2, pairs=2, context=32, batch=4, steps=4, rounds=1, corpus="generated")


# ---------------------------------------------------------------- the plain-PyTorch peer
def peer(setup: dict) -> dict:
    """Train the shape and recipe of `setup` the way a nanoGPT user would; tokens/s and final validation loss."""
    import time

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(setup["threads"])
    torch.manual_seed(setup["seed"])
    width, heads, hidden = setup["width"], setup["heads"], setup["hidden"]

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def rope(x):  # (B, H, T, D): channel pairs (i, i + D/2) rotated by t * theta_i
        t, d = x.shape[-2], x.shape[-1]
        theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
        angle = torch.arange(t, dtype=torch.float32)[:, None] * theta
        cos, sin = angle.cos(), angle.sin()
        a, b = x[..., : d // 2], x[..., d // 2:]
        return torch.cat((a * cos - b * sin, a * sin + b * cos), -1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = nn.Parameter(torch.ones(width)), nn.Parameter(torch.ones(width))
            self.qkv, self.proj = nn.Linear(width, 3 * width, bias=False), nn.Linear(width, width, bias=False)
            self.gate, self.up = nn.Linear(width, hidden, bias=False), nn.Linear(width, hidden, bias=False)
            self.down = nn.Linear(hidden, width, bias=False)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(rms(x, self.n1)).view(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            h = rms(x, self.n2)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(256, width)
            self.blocks = nn.ModuleList(Block() for _ in range(setup["pairs"]))
            self.norm = nn.Parameter(torch.ones(width))
            self.head = None if setup["tied"] else nn.Linear(width, 256, bias=False)
            for name, p in self.named_parameters():
                if p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * setup["pairs"]) if name.endswith(("proj.weight", "down.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx):
            x = self.wte(idx)
            for block in self.blocks:
                x = block(x)
            x = rms(x, self.norm)
            return x @ self.wte.weight.T if self.head is None else self.head(x)

    data = np.frombuffer(Path(setup["corpus_file"]).read_bytes(), dtype=np.uint8)
    train, val = torch.from_numpy(data[:setup["train_end"]].copy()), torch.from_numpy(np.stack(
        [data[s:s + setup["context"] + 1] for s in setup["val_starts"]]).copy()).long()
    model = GPT()
    shared = torch.load(setup["start_file"]) if setup.get("start_file") else None
    if shared is not None:  # the equivalence round: connectome's initial weights and its batches
        model.load_state_dict(shared["weights"])
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and not n.startswith("wte")]
    rest = [p for n, p in model.named_parameters() if not (p.ndim == 2 and not n.startswith("wte"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": setup["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=setup["lr"], betas=(0.9, 0.95), foreach=True)
    steps, warmup, window = setup["steps"], setup["warmup"], setup["context"] + 1
    gen = torch.Generator().manual_seed(setup["seed"])
    elapsed = 0.0
    for step in range(steps):
        lr = setup["lr"] * ((step + 1) / warmup if step < warmup else
                            0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1))))
        for group in opt.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()  # from the batch on, as connectome's tokens/s counts its training steps
        starts = shared["starts"][step] if shared is not None else \
            torch.randint(0, len(train) - window + 1, (setup["batch"],), generator=gen)
        batch = torch.stack([train[s:s + window] for s in starts.tolist()]).long()
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), setup["clip"])
        opt.step()
        elapsed += time.perf_counter() - t0
    with torch.inference_mode():
        val_loss = F.cross_entropy(model(val[:, :-1]).flatten(0, 1), val[:, 1:].flatten()).item()
    return {"tokens_per_s": steps * setup["batch"] * setup["context"] / elapsed, "val_loss": val_loss}


# ---------------------------------------------------------------- the connectome side
def trial_config(setup: dict, pattern: str) -> dict:
    """The connectome trial of `setup`: one evaluation interval, so evaluation runs once, as the peer's."""
    arch = {"family": "decoder", "pattern": pattern, "growth": setup["width"], "heads": setup["heads"],
            "sublayers": 2 * setup["pairs"], "context": setup["context"], "mlp_ratio": setup["hidden"] / setup["width"],
            "tie_embeddings": setup["tied"] and pattern != "dense-concat"}
    data = {"name": "text", "eval_windows": len(setup["val_starts"]),
            **({"corpus": "generated"} if setup["corpus"] == "generated" else {"path": setup["corpus_file"]})}
    train = {"steps": setup["steps"], "epochs": 1, "batch_size": setup["batch"], "lr": setup["lr"],
             "weight_decay": setup["weight_decay"], "schedule": "cosine", "warmup_steps": setup["warmup"],
             "grad_clip": setup["clip"], "eval_batch_size": len(setup["val_starts"]), "threads": setup["threads"],
             "precision": "fp32", "channels_last": False, "compile": False, "proxies": False}
    return {"arch": arch, "data": data, "train": train, "seed": setup["seed"]}


def connectome_side(setup: dict, pattern: str = "prenorm") -> dict:
    """One connectome trial's training tokens/s and final validation loss (nats per byte)."""
    from connectome.training.trainer import train_trial

    record = train_trial(trial_config(setup, pattern))
    row = record["epochs"][-1]
    return {"tokens_per_s": row["tokens_per_s"], "val_loss": row["val_loss"], "status": record["status"],
            "params": record["params"]}


def shared_start(setup: dict, path: str) -> dict:
    """The prenorm trial's initial weights (named as the peer names them) and the batch starts it will draw,
    saved to `path` for the peer: with them both sides train the same network on the same bytes."""
    import torch

    from connectome.training.config import make_trial_config
    from connectome.training.trainer import epoch_seed, setup_trial

    trial = setup_trial(make_trial_config(trial_config(setup, BASELINE)))
    names = {"stem.embedding.weight": "wte.weight", "head.norm.weight": "norm"}
    for i in range(setup["pairs"]):
        attention, mlp = f"blocks.0.nodes.{2 * i + 1}.op.", f"blocks.0.nodes.{2 * i + 2}.op."
        names.update({attention + "norm.weight": f"blocks.{i}.n1", mlp + "norm.weight": f"blocks.{i}.n2",
                      **{attention + k + ".weight": f"blocks.{i}.{k}.weight" for k in ("qkv", "proj")},
                      **{mlp + k + ".weight": f"blocks.{i}.{k}.weight" for k in ("gate", "up", "down")}})
    weights = {names[k]: v.clone() for k, v in trial.model.state_dict().items()}
    window = setup["context"] + 1  # as connectome's one evaluation interval draws them (training/lm.py)
    gen = torch.Generator().manual_seed(epoch_seed(setup["seed"], 0))
    starts = torch.randint(0, len(trial.data.train) - window + 1, (setup["steps"], setup["batch"]), generator=gen)
    torch.save({"weights": weights, "starts": starts}, path)
    return {"tensors": len(weights)}


# ---------------------------------------------------------------- rounds in fresh processes
def run_side(setup: dict, side: str) -> dict:
    """One side in a fresh process with `threads` OpenMP threads; its result and peak resident memory (MiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(setup["threads"]), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, "--side", side, "--setup", json.dumps(setup)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(args: argparse.Namespace) -> dict:
    """The shared setup: shape, recipe, and the corpus bytes both sides read (file, split end, validation windows)."""
    from connectome.training.config import DataConfig
    from connectome.training.corpus import corpus_key, generated_text, split_bounds
    from connectome.training.lm import window_starts

    cfg = DataConfig(name="text", **({"corpus": "generated"} if args.corpus == "generated" else {}))
    key = corpus_key(cfg)
    corpus_file = key[0]
    if key[0] == "generated":  # the peer reads a file: the generated corpus written once, outside the timing
        corpus_file = str(Path(os.environ.get("TMPDIR", "/tmp")) / "connectome-bench-generated.txt")
        Path(corpus_file).write_bytes(generated_text())
    size = Path(corpus_file).stat().st_size
    bounds, window = split_bounds(size, cfg), args.context + 1
    val = [bounds.val[0] + s for s in window_starts(bounds.val[1] - bounds.val[0], window, args.eval_windows)]
    return dict(width=args.width, heads=args.heads, pairs=args.pairs, context=args.context, hidden=round(8 / 3 * args.width),
                tied=True, batch=args.batch, steps=args.steps, warmup=max(1, args.steps // 10), lr=3e-3,
                weight_decay=0.1, clip=1.0, threads=args.threads, seed=0, corpus=args.corpus, corpus_file=corpus_file,
                train_end=bounds.train[1], val_starts=val)


def interval(values: list[float]) -> str:
    """`mean (min-max)` of a few ratios."""
    return f"{statistics.mean(values):.2f}x ({min(values):.2f}-{max(values):.2f})" if values else "-"


def same_start(setup: dict) -> dict:
    """The equivalence round: the peer starts from the prenorm trial's weights and trains on its batches, so
    the two final losses differ only by floating-point order (the bodies and recipes are the same)."""
    path = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"connectome-bench-start-{os.getpid()}.pt")
    try:
        run_side({**setup, "start_file": path}, "start")
        got = {"connectome": run_side(setup, "connectome"), "peer": run_side({**setup, "start_file": path}, "peer")}
    finally:
        Path(path).unlink(missing_ok=True)
    a, b = got["connectome"]["val_loss"], got["peer"]["val_loss"]
    print(f"same start (seed {setup['seed']}: connectome's initial weights and batches for both): final validation "
          f"loss {a:.4f} vs {b:.4f} nats per byte, difference {a - b:+.2e}", flush=True)
    return got


def compare(setup: dict, rounds: int) -> dict:
    """Part 1: the equivalence round, then interleaved rounds of the prenorm trial and the peer, round r on seed r
    for both sides, each initialising and drawing batches its own way (so the losses are compared against their
    spread over seeds); ratios of tokens/s and the paired loss difference."""
    same_start(setup)
    rows = []
    for r in range(rounds):
        seeded = {**setup, "seed": setup["seed"] + r}
        order = ("connectome", "peer") if r % 2 == 0 else ("peer", "connectome")
        got = {side: run_side(seeded, side) for side in order}
        rows.append(got)
        print(f"round {r + 1} (seed {seeded['seed']}): connectome {got['connectome']['tokens_per_s']:.0f} tokens/s "
              f"(val {got['connectome']['val_loss']:.3f}), peer {got['peer']['tokens_per_s']:.0f} tokens/s "
              f"(val {got['peer']['val_loss']:.3f})", flush=True)
    ratios = [row["connectome"]["tokens_per_s"] / row["peer"]["tokens_per_s"] for row in rows]
    losses = {side: [row[side]["val_loss"] for row in rows] for side in ("connectome", "peer")}
    print(f"connectome / peer tokens per second: {interval(ratios)}; final validation loss (nats per byte, "
          f"mean over seeds) {statistics.mean(losses['connectome']):.3f} vs {statistics.mean(losses['peer']):.3f}; "
          f"{paired_difference(losses['connectome'], losses['peer'])}")
    return {"rounds": rows, "speed_ratio": ratios}


def paired_difference(a: list[float], b: list[float]) -> str:
    """`connectome - peer: mean [95% t interval] over n seeds`, or the single difference of one round."""
    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2:
        return f"connectome - peer: {diffs[0]:+.3f} (one seed: no interval)"
    from scipy import stats

    mean, sem = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * sem
    return f"connectome - peer: {mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] (95% t over {len(diffs)} seeds)"


def decoder_patterns() -> tuple[str, ...]:
    """Every registered decoder pattern that builds at its defaults (a `file` wiring needs its graph), prenorm first."""
    from connectome.patterns import DECODER_PATTERNS

    ready = [name for name, pattern in DECODER_PATTERNS.items() if name != BASELINE and builds_alone(pattern.build)]
    return (BASELINE, *ready)


def builds_alone(build) -> bool:
    """True when every option of a pattern's builder (after the block context) has a default."""
    options = list(inspect.signature(build).parameters.values())[1:]
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in options)


def chosen_patterns(given: str | None) -> tuple[str, ...]:
    """The patterns part 2 measures: `--patterns` (checked against the registry), else every one; prenorm first."""
    known = decoder_patterns()
    if not given:
        return known
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--patterns: unknown decoder pattern(s) {', '.join(unknown)}; use {', '.join(known)}")
    return (BASELINE, *dict.fromkeys(n for n in names if n != BASELINE))


def patterns(setup: dict, rounds: int, names: tuple[str, ...]) -> dict:
    """Part 2: each pattern's tokens/s and peak memory relative to prenorm, interleaved, fresh processes."""
    runs: dict[str, list[dict]] = {p: [] for p in names}
    for r in range(rounds):
        for pattern in (names if r % 2 == 0 else names[::-1]):
            runs[pattern].append(run_side(setup, f"pattern:{pattern}"))
    base = runs[BASELINE]
    print(f"| pattern | params (vs {BASELINE}) | CPU tokens/s vs {BASELINE} | CPU peak memory vs {BASELINE} | GPU |")
    print("|---|---|---|---|---|")
    for pattern, rows in runs.items():
        speed = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(rows, base)]
        memory = [a["peak_mib"] / b["peak_mib"] for a, b in zip(rows, base)]
        added = rows[0]["params"] - base[0]["params"]
        print(f"| {pattern} | {rows[0]['params']:,} ({added:+,}) | {interval(speed)} | {interval(memory)} | not run |")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8, help="attention + SwiGLU pairs (sublayers / 2)")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-windows", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", choices=["kjv", "generated"], default="kjv")
    parser.add_argument("--patterns", help="part 2: comma-separated decoder patterns (default: every registered one "
                        "that builds at its defaults; prenorm is always measured, as the baseline)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: checks the pipeline only")
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    args = parser.parse_args(argv)
    if args.side:
        setup = json.loads(args.setup)
        if args.side == "start":
            out = shared_start(setup, setup["start_file"])
        else:
            out = peer(setup) if args.side == "peer" else connectome_side(
                setup, args.side.removeprefix("pattern:") if args.side.startswith("pattern:") else "prenorm")
        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.eval_windows = 4
    try:
        names = chosen_patterns(args.patterns)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    setup = prepare(args)
    print(f"decoder width {setup['width']}, {setup['pairs']} pairs, context {setup['context']}, batch {setup['batch']}, "
          f"{setup['steps']} steps, {setup['threads']} thread(s), corpus {setup['corpus']}; GPU: not run", flush=True)
    result = {"setup": setup, "compare": compare(setup, args.rounds), "patterns": patterns(setup, args.rounds, names)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
