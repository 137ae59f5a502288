"""Samplers pickle (Ray Tune pickles its searcher, sampler included), locks and all."""
import pickle
import threading

import optuna
import pytest
import yaml

from connectome.study import load_study
from connectome.study.samplers import LOCK_TYPES, LockFreePickle, NSGAIISampler
from connectome.study.space import make_sampler


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x


def _params(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict]:
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials]


class _Guarded(LockFreePickle):
    def __init__(self) -> None:
        self.lock, self.rlock, self.value = threading.Lock(), threading.RLock(), [1, 2]


def test_lock_free_pickle_gives_the_copy_new_locks_of_the_same_kinds():
    copy = pickle.loads(pickle.dumps(_Guarded()))
    assert type(copy.lock) is type(threading.Lock()) and type(copy.rlock) is type(threading.RLock())
    assert copy.value == [1, 2] and not hasattr(copy, "_connectome_locks")
    with copy.lock, copy.rlock, copy.rlock:  # usable, and the RLock is re-entrant
        pass


def test_nsga2_sampler_pickles_and_the_copy_samples_as_the_original():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    original = NSGAIISampler(seed=3, population_size=4)
    copy = pickle.loads(pickle.dumps(original))
    locks = [key for key, value in vars(original).items() if type(value) in LOCK_TYPES]
    assert all(type(getattr(copy, key)) is type(getattr(original, key)) for key in locks)
    # Past the first generation, so NSGA-II's selection (the locked part in Optuna 5.1) runs too.
    assert _params(copy, 10) == _params(original, 10)


def test_nsga2_sampler_keeps_optunas_generation_key():
    # Optuna stores a GA sampler's generations under its class name: a resumed study finds them.
    if not hasattr(optuna.samplers.NSGAIISampler, "_get_generation_key"):
        pytest.skip("this Optuna release keys generations another way")
    assert NSGAIISampler._get_generation_key() == optuna.samplers.NSGAIISampler._get_generation_key()


def test_a_studys_nsga2_sampler_pickles(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "data": {"name": "synthetic"}, "arch": {"block_layers": [2]},
        "search": {"kind": "optuna", "sampler": "nsga2", "population": 2, "n_trials": 2,
                   "space": {"growth": {"choices": [4, 8]}},
                   "objectives": [{"metric": "best_val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}]},
    }))
    sampler = make_sampler(load_study(path))
    assert isinstance(sampler, NSGAIISampler)
    assert isinstance(pickle.loads(pickle.dumps(sampler)), NSGAIISampler)
