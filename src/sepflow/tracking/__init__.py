"""Tracking: MLflow runs and lineage, the model registry and its promotion gate, reproducing a run."""
