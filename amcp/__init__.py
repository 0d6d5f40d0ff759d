"""amcp: an algorithmic trading platform built as a Ray application.

The ``amcp`` package is the pure core: domain model, engines and adapters. It never imports
Ray; the Ray shells live in the top-level ``actors/``, ``pipelines/`` and ``serve/`` packages.
"""

__version__ = "0.1.0"
