"""Validation of models in time: panel-aware purged splitters and the date rule (the evaluation window)."""
