"""Optuna samplers that survive pickling: Ray Tune pickles its searcher, and with it the sampler.

Optuna 5.1's genetic-algorithm samplers (NSGA-II) keep a `threading.Lock`, which pickle refuses;
a pickled copy gets a new lock instead (a lock guards one process's threads, so none is lost).
"""
from __future__ import annotations

import threading
from typing import Any

import optuna

# Lock types pickle refuses, by the name of the factory that makes a new one.
LOCK_TYPES = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}
# State key: the attributes that held a lock, and the lock factory of each.
LOCKS = "_connectome_locks"


class LockFreePickle:
    """Pickles an object's own attributes without their threading locks; the copy gets new ones."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        locks = {key: LOCK_TYPES[type(value)] for key, value in state.items() if type(value) in LOCK_TYPES}
        for key in locks:
            del state[key]
        return {**state, LOCKS: locks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop(LOCKS, {})
        self.__dict__.update(state)
        self.__dict__.update({key: getattr(threading, factory)() for key, factory in locks.items()})


class NSGAIISampler(LockFreePickle, optuna.samplers.NSGAIISampler):
    """optuna.samplers.NSGAIISampler that pickles (Optuna 5.1 gave it a lock).

    Keep the name: Optuna keys a GA sampler's generations in the study's storage by its class
    name, so a renamed subclass would not see the generations of a study it resumes.
    """
