"""Samplers pickle (Ray Tune pickles its searcher, sampler included), locks and all."""
import pickle

import optuna

from connectome.study.samplers import LOCK_TYPE, NSGAIISampler


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x


def _params(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict]:
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials]


def test_nsga2_sampler_pickles_and_the_copy_samples_as_the_original():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    original = NSGAIISampler(seed=3, population_size=4)
    copy = pickle.loads(pickle.dumps(original))
    locks = [key for key, value in vars(original).items() if isinstance(value, LOCK_TYPE)]
    assert all(isinstance(getattr(copy, key), LOCK_TYPE) for key in locks)  # a new lock where there was one
    assert getattr(copy, "_connectome_locks", None) is None
    # Past the first generation, so NSGA-II's selection (the locked part in Optuna 5.1) runs too.
    assert _params(copy, 10) == _params(original, 10)
