"""Peeka: live diagnostics for running Python processes."""

__version__ = "0.1.0"
