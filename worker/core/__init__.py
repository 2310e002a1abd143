"""The pure core: mapping, validation, resolution and retry decisions.

Nothing in this package performs I/O, imports Celery, Redis or requests, or reads the
environment. Side effects reach it only through the small ports in ``ports.py``.
"""
