"""The TUI's views: one module each with a ``View`` class, bound to a number key in ``app.VIEWS``."""
