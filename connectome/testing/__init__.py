"""Hooks for the project's own tests, shipped so that real processes (driver, Ray workers) can use them.

`faults`: fault points that SIGKILL the driver at a named moment ($CONNECTOME_FAULTS). Unset,
as always outside tests, nothing here does anything.
"""
