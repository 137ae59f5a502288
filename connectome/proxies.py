"""Zero-cost proxies: scores of an untrained network that may predict its trained accuracy.

Each proxy runs on a deep copy of the freshly initialised model, so the model, its BN
statistics and the training RNG are left as they were. All use one fixed mini-batch.
- grad_norm: sum over weight tensors of the l2 norm of the loss gradient (Abdelfattah et al. 2021).
- snip: sum |w * dL/dw| (Lee et al. 2019, connection sensitivity).
- synflow: sum w * dR/dw with R the summed output for an all-ones input, weights made positive,
  BN in eval mode, float64 (Tanaka et al. 2020); reported as log10 since it spans many decades.
- naswot: log|det K| of the Hamming-similarity kernel of the batch's ReLU on/off codes
  (Mellor et al. 2021, "NASWOT"; the v2 form of the Jacobian-covariance score).

torch is imported when a proxy runs, so planning (the study schema's check of `prescreen.proxy`)
and analysis read PROXIES and PREFIX without loading it.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

PREFIX = "proxy."
# Images in the proxies' mini-batch (NASWOT's kernel is batch x batch).
PROXY_BATCH = 64


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Conv and linear weights: the parameters the proxies score."""
    from torch import nn

    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    import torch
    import torch.nn.functional as F

    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [w.grad if w.grad is not None else torch.zeros_like(w) for w in _weights(model)]


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of per-tensor gradient norms of the loss."""
    return float(sum(g.norm() for g in _loss_grads(model, x, y)))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of |weight * gradient| of the loss."""
    grads = _loss_grads(model, x, y)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(_weights(model), grads)))


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log10 of sum w * dR/dw for R = sum of outputs on an all-ones input, with |w|, in float64."""
    import torch

    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    model(ones).sum().backward()
    score = sum(float((w.detach() * w.grad).sum()) for w in _weights(model) if w.grad is not None)
    return math.log10(score) if score > 0 else -math.inf


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log|det| of the batch's ReLU-code Hamming kernel (higher: inputs separated better at init)."""
    import torch
    from torch import nn

    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, out: codes.append((out.detach() > 0).flatten(1).double()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not codes:  # no nn.ReLU modules (e.g. units that call F.relu): no codes to compare
        return math.nan
    c = torch.cat(codes, 1)  # (B, total ReLU units)
    k = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if sign > 0 else -math.inf


PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "grad_norm": grad_norm, "snip": snip, "synflow": synflow, "naswot": naswot,
}


def proxy_columns(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """`proxy.<name>` for every registered proxy, each on its own copy of the model."""
    import torch

    from connectome.training.device import seed_rng

    device = next(model.parameters()).device
    # Dropout masks here must not move the training RNG; only the trial device's generators are touched.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        seed_rng(0, device)
        return {f"{PREFIX}{name}": _guarded(name, fn, copy.deepcopy(model), x, y) for name, fn in PROXIES.items()}


def _guarded(name: str, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], float], model: nn.Module,
             x: torch.Tensor, y: torch.Tensor) -> float:
    """A proxy's value, or NaN with a warning if it cannot be computed: a proxy never fails a trial."""
    try:
        return fn(model, x, y)
    except Exception as err:  # noqa: BLE001 - the proxies are side information about the trial
        log.warning("proxy %s not computed (%s: %s); recorded as NaN", name, type(err).__name__, err)
        return math.nan


def trial_proxy_columns(trial) -> dict[str, float]:
    """Proxies of a trainer `Trial` at initialisation on a seeded training batch ({} if switched off)."""
    if not trial.cfg.train.proxies:
        return {}
    import torch

    data = trial.data
    gen = torch.Generator().manual_seed(trial.cfg.seed)
    idx = torch.randperm(len(data.train_y), generator=gen)[:PROXY_BATCH].to(data.train_y.device)
    x, y = data.normalize(data.train_x[idx]), data.train_y[idx]  # (B, C, H, W), (B,)
    return proxy_columns(trial.model, x, y)
