"""Proxy correlations: a proxy that orders the trials perfectly gets rho 1, noise gets an interval around 0."""
import numpy as np
import pandas as pd

from connectome.analysis.proxies import proxy_correlations


def test_perfect_and_useless_proxies():
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.5, 0.9, 80)
    frame = pd.DataFrame({"test_acc": acc, "proxy.snip": np.exp(acc * 10), "proxy.naswot": rng.standard_normal(80),
                          "proxy.synflow": np.r_[np.full(79, 1.0), -np.inf], "params": rng.integers(1, 10, 80)})
    table = proxy_correlations(frame, n_boot=300).set_index("proxy")
    assert table.loc["snip", "rho"] == 1.0 and table.loc["snip", "ci_low"] > 1 - 1e-9
    assert table.loc["naswot", "ci_low"] < 0 < table.loc["naswot", "ci_high"]
    assert "synflow" not in table.index  # constant once the infinite value is dropped
    assert "params" in table.index and table.loc["params", "n"] == 80
