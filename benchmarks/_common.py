"""Helpers shared by the benchmark scripts: progress notes, JSON lines, metric lines, load average.

Not a benchmark itself (``make bench`` runs ``benchmarks/[!_]*.py``). The scripts are run as files,
so each puts this folder on ``sys.path`` and imports ``from _common import ...``, as they import
``_backtrader_peer``.

Every script writes JSON lines to stdout, one per metric and a final ``"summary": true`` line;
progress notes go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def progress(message: str) -> None:
    """Write a ``# message`` progress note to stderr."""
    print(f"# {message}", file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Write ``record`` to stdout as one JSON line and return it."""
    print(json.dumps(record), flush=True)
    return record


def line(bench: str, metric: str, ours: float, peer: str, peer_value: float | None, unit: str,
         higher_is_better: bool, digits: int = 2, **extra: Any) -> dict[str, Any]:
    """Build one metric line comparing ours with a peer.

    ``ratio`` > 1 means ours is better: ``ours / peer_value`` when higher is better, else
    ``peer_value / ours`` (latencies, costs). A metric without a measured peer
    (``peer_value=None``) has ``peer_value`` and ``ratio`` null.

    Args:
        bench: Benchmark name (the ``bench`` key).
        metric: Metric name.
        ours: Our measured value.
        peer: What we compare against, in words.
        peer_value: The peer's value, or None when there is none.
        unit: Unit of ``ours`` and ``peer_value``.
        higher_is_better: Whether a larger value is better.
        digits: Decimal places ``ours`` and ``peer_value`` are rounded to (``ratio``: 3).
        **extra: Further keys, appended after ``unit``.

    Returns:
        The line, keys in the order bench, metric, ours, peer, peer_value, ratio, unit, extras.
    """
    ratio = None
    if peer_value is not None:
        ratio = round(ours / peer_value if higher_is_better else peer_value / ours, 3)
    return {"bench": bench, "metric": metric, "ours": round(ours, digits), "peer": peer,
            "peer_value": None if peer_value is None else round(peer_value, digits), "ratio": ratio,
            "unit": unit, **extra}


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, by numpy's linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def load_average_1m() -> float:
    """Return the host's 1-minute load average, rounded to 2 places."""
    return round(os.getloadavg()[0], 2)


def host_load(load_before: float) -> dict[str, Any]:
    """Return the summary's host keys: ``cpus``, ``load_avg_1m_before`` and ``load_avg_1m_after`` (now).

    Args:
        load_before: The 1-minute load average taken when the benchmark started
            (``load_average_1m()``).
    """
    return {"cpus": os.cpu_count(), "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": load_average_1m()}
