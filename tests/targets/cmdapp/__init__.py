"""A small app for the command tests: models, a cache, settings and worker threads."""

from . import cache, config, models, workers  # noqa: F401
