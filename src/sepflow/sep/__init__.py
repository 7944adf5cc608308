"""Prices: the SEP schema and validation, importers, the synthetic market and the point-in-time universe."""
