"""AIFX: continuous learning for forex trading-signal models."""

__version__ = "0.1.0"
