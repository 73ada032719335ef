"""Experiments: run folders, Optuna storage, per-trial records and artifacts, the run over a dataset
and PostgreSQL workers."""
