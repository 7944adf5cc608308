"""Evaluation: metrics, error bars (Newey–West, Sharpe SE, PSR, DSR), books, calibration, thresholds, plots."""
