"""Running studies with Ray Tune: the driver (`driver.run_study`), its workers, the Optuna searcher, progress.

The study package plans (schema, trials, definition; no Ray); this package runs the plan. Ray
is imported only when a run starts, so planning, `--dry-run` and analysis never load it. The
Optuna storage belongs to the store (connectome/store/optuna_storage.py): reading it needs no Ray.
"""
