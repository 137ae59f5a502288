"""Whole-trial time: `connectome train` (its defaults) vs a plain-PyTorch pipeline (issue 9, target 1).

Both sides run as fresh processes with 1 thread (OMP_NUM_THREADS=1), one at a time, alternating
(A,B then B,A each round); each is timed from process start to its final record/print, so
imports, data loading, compilation and evaluation all count. The peer is what a PyTorch user
would write for the same recipe: torchvision FashionMNIST, DataLoader(num_workers=0),
ToTensor + Normalize, a hand-written DenseNet with torch.cat, SGD Nesterov + weight decay, a
per-step cosine schedule, validation every epoch and a final test pass. It reads the same
YAML (epochs, batch, lr, split sizes, architecture) and draws the same train/val split and
training subset; it imports nothing from connectome.

    python benchmarks/trial_vs_pytorch.py benchmarks/fashion_small.yaml --rounds 2
    python benchmarks/trial_vs_pytorch.py benchmarks/fashion_densenet40.yaml --rounds 2
    python benchmarks/trial_vs_pytorch.py benchmarks/fashion_densenet40.yaml --seeds 1 2 3  # a round per seed
    python benchmarks/trial_vs_pytorch.py --peer benchmarks/fashion_small.yaml   # the peer alone

With --seeds, round r uses the r-th seed (both sides; a copy of the YAML with `seed` replaced),
and the accuracy comparison is paired by seed: per-seed differences, their mean and 95% t interval.

torchvision reads un-gzipped idx files from <root>/FashionMNIST/raw; the script unpacks the
Debian files (/usr/share/datasets/fashion-mnist) there once, before any timing, as a user would
after a download.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
TV_ROOT = Path(os.environ.get("TMPDIR", "/tmp")) / "connectome-bench-torchvision"


# ---------------------------------------------------------------- the plain-PyTorch peer
def peer(config_path: Path, conv_init: str = "fan_in") -> None:
    """Train the YAML's network and recipe the way a PyTorch user would; print the test accuracy.

    `conv_init` is the mode of the convolutions' He initialisation: `fan_in` as torchvision's
    DenseNet (the peer as written), `fan_out` as connectome's executor and the DenseNet authors'
    Torch code (a diagnostic: it isolates what the initialisation does to a short run).
    """
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import yaml
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    cfg = yaml.safe_load(config_path.read_text())
    arch, data, train, seed = cfg["arch"], cfg["data"], cfg.get("train", {}), cfg.get("seed", 0)
    epochs, batch, lr = train.get("epochs", 300), train.get("batch_size", 64), train.get("lr", 0.1)
    torch.manual_seed(seed)

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    full = datasets.FashionMNIST(str(TV_ROOT), train=True, transform=tf)
    test = datasets.FashionMNIST(str(TV_ROOT), train=False, transform=tf)
    # The same fixed split as connectome's (seed 0 permutation, first val_size held out) and subset.
    val_size = data.get("val_size") or 5000
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    train_idx, val_idx = perm[val_size:].sort().values, perm[:val_size].sort().values
    if data.get("train_subset"):
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
        train_idx = train_idx[pick[:data["train_subset"]]].sort().values
    train_loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=batch, shuffle=True, num_workers=0)
    val_loader = DataLoader(Subset(full, val_idx.tolist()), batch_size=500, num_workers=0)
    test_loader = DataLoader(test, batch_size=500, num_workers=0)

    class DenseLayer(nn.Module):
        def __init__(self, cin, k):
            super().__init__()
            self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, k, 3, padding=1, bias=False)

        def forward(self, feats):
            return self.conv(F.relu(self.bn(torch.cat(feats, 1))))

    class DenseBlock(nn.Module):
        def __init__(self, n, cin, k):
            super().__init__()
            self.layers = nn.ModuleList(DenseLayer(cin + i * k, k) for i in range(n))

        def forward(self, x):
            feats = [x]
            for layer in self.layers:
                feats.append(layer(feats))
            return torch.cat(feats, 1)

    class DenseNet(nn.Module):
        def __init__(self, block_layers, k, imagenet_stem):
            super().__init__()
            c = 16
            if imagenet_stem:
                self.stem = nn.Sequential(nn.Conv2d(1, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c),
                                          nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            else:
                self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
            stages = []
            for i, n in enumerate(block_layers):
                stages.append(DenseBlock(n, c, k))
                c += n * k
                if i < len(block_layers) - 1:
                    stages += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1, bias=False),
                               nn.AvgPool2d(2)]
            self.features = nn.Sequential(*stages)
            self.bn, self.fc = nn.BatchNorm2d(c), nn.Linear(c, 10)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode=conv_init)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.constant_(m.bias, 0)

        def forward(self, x):
            x = F.relu(self.bn(self.features(self.stem(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    if "block_layers" in arch:
        block_layers = arch["block_layers"]
    else:  # the preset's depth: L = 3n + 4
        block_layers = [(int(re.search(r"-(\d+)-", arch["preset"]).group(1)) - 4) // 3] * 3
    growth = arch.get("growth", 12)
    model = DenseNet(block_layers, growth, arch.get("stem") == "imagenet")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    total = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))

    def accuracy(loader):
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in loader:
                correct += (model(x).argmax(1) == y).sum().item()
        return correct / len(loader.dataset)

    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1} loss {loss.item():.4f} val {accuracy(val_loader):.4f} "
              f"{time.time() - t0:.1f}s", flush=True)
    print(f"test acc {accuracy(test_loader):.4f}")


def prepare_torchvision_root() -> None:
    """Un-gzip the Debian Fashion-MNIST files where torchvision looks for them (once, untimed)."""
    raw = TV_ROOT / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in DEBIAN.glob("*-ubyte.gz"):
        target = raw / gz.name.removesuffix(".gz")
        if not target.exists():
            with gzip.open(gz, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


# ---------------------------------------------------------------- the side-by-side runs
def run_side(name: str, config: Path, env: dict[str, str], conv_init: str = "fan_in") -> tuple[float, float, float]:
    """Wall and CPU seconds (the process and the children it reaped) from start to exit, test accuracy."""
    if name == "connectome":
        cmd = [sys.executable, "-m", "connectome", "train", str(config), "--threads", "1"]
    else:
        cmd = [sys.executable, __file__, "--peer", str(config), "--peer-init", conv_init]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if out.returncode != 0:
        raise SystemExit(f"{name} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    acc = float(re.findall(r"test acc (\d\.\d+)", out.stdout)[-1])
    return wall, cpu, acc


def seeded_copy(config: Path, seed: int) -> Path:
    """The YAML with `seed` replaced, beside the torchvision data (both sides read the copy)."""
    import yaml

    data = yaml.safe_load(config.read_text())
    data["seed"] = seed
    path = TV_ROOT / f"{config.stem}-seed{seed}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def paired_accuracy(ours: list[float], peer: list[float], seeds: list[int]) -> str:
    """Per-seed test-accuracy differences (connectome - peer, points), their mean and 95% t interval."""
    from scipy import stats

    diffs = [100 * (a - b) for a, b in zip(ours, peer)]
    text = ", ".join(f"seed {s} {d:+.2f}" for s, d in zip(seeds, diffs))
    if len(diffs) < 2:
        return f"test acc connectome - pytorch (points): {text}"
    mean, sem = statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5
    half = stats.t.ppf(0.975, len(diffs) - 1) * sem
    return (f"test acc connectome - pytorch (points): {text}; mean {mean:+.2f} "
            f"[{mean - half:+.2f}, {mean + half:+.2f}] (95% t, n={len(diffs)})")


def _children_cpu() -> float:
    """User + system CPU seconds of all reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="YAML trial config (Fashion-MNIST, no augmentation)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (A,B then B,A)")
    parser.add_argument("--seeds", type=int, nargs="+", help="one round per seed (overrides --rounds)")
    parser.add_argument("--peer", action="store_true", help="run only the plain-PyTorch peer, in this process")
    parser.add_argument("--peer-init", choices=["fan_in", "fan_out"], default="fan_in",
                        help="the peer's conv initialisation mode (fan_out: connectome's; a diagnostic)")
    parser.add_argument("--only", choices=["connectome", "pytorch"], help="run one side only (a diagnostic)")
    args = parser.parse_args(argv)
    if args.peer:
        peer(args.config, args.peer_init)
        return 0
    prepare_torchvision_root()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sides = [args.only] if args.only else ["connectome", "pytorch"]
    walls: dict[str, list[float]] = {s: [] for s in sides}
    cpus: dict[str, list[float]] = {s: [] for s in sides}
    accs: dict[str, list[float]] = {s: [] for s in sides}
    loads = [Path("/proc/loadavg").read_text().split()[0]]
    seeds = args.seeds or [None] * args.rounds
    for r, seed in enumerate(seeds):
        config = args.config if seed is None else seeded_copy(args.config, seed)
        for side in sides if r % 2 == 0 else sides[::-1]:
            wall, cpu, acc = run_side(side, config, env, args.peer_init)
            walls[side].append(wall)
            cpus[side].append(cpu)
            accs[side].append(acc)
            loads.append(Path("/proc/loadavg").read_text().split()[0])
            print(f"round {r + 1}{'' if seed is None else f' seed {seed}'} {side:<10} {wall:7.1f} s wall {cpu:7.1f} s CPU  test acc {acc:.4f}  (load {loads[-1]})", flush=True)
    print()
    if args.only:  # a diagnostic of one side: no ratio
        print(json.dumps({"side": args.only, "peer_init": args.peer_init, "walls": walls, "cpus": cpus,
                          "accs": accs, "seeds": args.seeds}))
        return 0
    for label, times in (("wall", walls), ("CPU", cpus)):
        ratios = [p / c for p, c in zip(times["pytorch"], times["connectome"])]
        med = {s: statistics.median(v) for s, v in times.items()}
        print(f"{args.config} ({label} time): pytorch {med['pytorch']:.1f} s / connectome "
              f"{med['connectome']:.1f} s = {med['pytorch'] / med['connectome']:.2f}x "
              f"(per-round {min(ratios):.2f}-{max(ratios):.2f}x)")
    print(f"test acc connectome {accs['connectome']} vs pytorch {accs['pytorch']} (same seed); "
          f"1-min load averages {', '.join(loads)}")
    if args.seeds:
        print(paired_accuracy(accs["connectome"], accs["pytorch"], args.seeds))
    print(json.dumps({"walls": walls, "cpus": cpus, "accs": accs, "seeds": args.seeds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
