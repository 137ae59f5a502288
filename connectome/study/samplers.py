"""Optuna samplers that survive pickling: Ray Tune pickles its searcher, and with it the sampler.

Optuna 5.1's genetic-algorithm samplers (NSGA-II) keep a `threading.Lock`, which pickle refuses;
a pickled copy gets a new lock instead (a lock guards one process's threads, so none is lost).
"""
from __future__ import annotations

import threading
from typing import Any

import optuna

LOCK_TYPE = type(threading.Lock())
# State key naming the attributes that held a lock.
LOCKS = "_connectome_locks"


class LockFreePickle:
    """Pickles an object without its threading locks and gives the copy new ones."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        locks = [key for key, value in state.items() if isinstance(value, LOCK_TYPE)]
        for key in locks:
            del state[key]
        return {**state, LOCKS: locks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop(LOCKS, [])
        self.__dict__.update(state)
        self.__dict__.update({key: threading.Lock() for key in locks})


class NSGAIISampler(LockFreePickle, optuna.samplers.NSGAIISampler):
    """optuna.samplers.NSGAIISampler that pickles (Optuna 5.1 gave it a lock)."""
