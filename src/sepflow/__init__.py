"""sepflow: from a daily equity price table to models you can trust in production."""

__version__ = "0.1.0"
