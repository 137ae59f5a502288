"""Cost of the zero-cost proxies (issue 12) against training steps, measured side by side.

Each round times one SGD step on a batch and one `proxy_columns` call on the same model and
batch, alternating the order (A,B then B,A), in process CPU time with one torch thread; the
ratio proxies / step says how many training steps recording the proxies costs.

    python benchmarks/proxies.py --reps 4
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from connectome import build_spec, make_arch
from connectome.executor import ConnectomeNet
from connectome.proxies import PROXY_BATCH, proxy_columns

MODELS = {
    "fashion_small (imagenet stem, 4-4-4, k=16, 28x28x1)": (dict(stem="imagenet", block_layers=[4, 4, 4], growth=16,
                                                                 in_channels=1, classes=10), (1, 28, 28)),
    "DenseNet L=40 k=12 (32x32x3)": (dict(depth=40, growth=12, in_channels=3, classes=10), (3, 32, 32)),
}


def cpu_seconds(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, (arch, shape) in MODELS.items():
        torch.manual_seed(0)
        model = ConnectomeNet(build_spec(make_arch(**arch)))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(PROXY_BATCH, *shape), torch.randint(0, 10, (PROXY_BATCH,))

        def step():
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        def proxies():
            proxy_columns(model, x, y)

        step(), proxies()  # warm-up
        ratios, steps, pros = [], [], []
        for r in range(args.reps):
            pair = (step, proxies) if r % 2 == 0 else (proxies, step)
            times = {fn.__name__: cpu_seconds(fn) for fn in pair}
            steps.append(times["step"]), pros.append(times["proxies"])
            ratios.append(times["proxies"] / times["step"])
        print(f"{name}: step {statistics.median(steps):.2f}s, proxies {statistics.median(pros):.2f}s CPU; "
              f"proxies/step median {statistics.median(ratios):.2f} (per round {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
