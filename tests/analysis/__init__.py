"""Tests of connectome.analysis (a package, so module names do not clash with other test folders)."""
