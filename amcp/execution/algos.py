"""Execution algorithms: a parent order worked over a time window by child orders.

An algorithm is a plain state machine: no clock, no I/O, no randomness beyond a seed. Time
comes in as ``ts_ns`` (UTC nanoseconds) and the children's outcomes come in as the order
events the venue and the risk engine produce. It only *proposes* commands:

- ``SubmitOrder`` children, which the caller runs through the pre-trade risk checks
  (:class:`amcp.risk.engine.RiskEngine`) and sends only if accepted; a denied child is handed
  back through ``on_denied``;
- ``CancelOrder`` for working children, sent straight to the venue.

The cycle for one parent::

    algo = create_algorithm(parent)
    commands = algo.on_start(ts_ns, market)            # then, every tick or bar:
    commands = algo.on_timer(ts_ns, market)            # children now due, or cancels at the end
    for event in venue_events: commands += algo.on_event(event)   # fills, cancels, rejections
    checkpoint = algo.state                             # JSON-able; algorithm_from_state(checkpoint) resumes

Child ids. Child ``i`` of a parent is ``derive_client_order_id(parent_id, start_ns, i,
symbol)``: a function of the parent and the index only, so an algorithm rebuilt from its
checkpoint proposes exactly the ids the original would have. A child proposed again after a
crash (the checkpoint predates the send) carries the id already sent, which risk denies as
``duplicate_client_order_id``; the algorithm then keeps that child as working instead of
returning its quantity, so nothing is ever sent twice. An id is never reused for a new child:
a denied or rejected child's quantity goes out again under the next index.

Invariants (tested): filled + working leaves ≤ parent quantity at every step; every child is
a positive multiple of the instrument's lot; no child at or after ``end_ns``; the parent
completes exactly at its quantity; ``algorithm_from_state(algo.state)`` continues identically.

Algorithms: :class:`TWAPAlgorithm` (equal slices), :class:`VWAPAlgorithm` (slices follow a
volume curve, see :func:`volume_curve_from_bars`), :class:`IcebergAlgorithm` (one display-size
limit child at a time) and :class:`BasketAlgorithm` (one algorithm per leg).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.errors import ExecutionError
from amcp.execution._algo_basket import (
    SINGLE_ALGORITHMS,
    BasketAlgorithm,
    BasketLeg,
    BasketOrder,
    LegProgress,
)
from amcp.execution._algo_iceberg import IcebergAlgorithm, IcebergParams
from amcp.execution._algo_schedule import (
    TWAPAlgorithm,
    TWAPParams,
    VWAPAlgorithm,
    VWAPParams,
    volume_curve_from_bars,
)
from amcp.execution._algo_single import SingleParentAlgorithm
from amcp.execution._algo_types import (
    MAX_CHILDREN,
    STATE_VERSION,
    AlgoCommand,
    AlgorithmAnomaly,
    AlgorithmParams,
    AlgorithmStatus,
    ChildOrder,
    ExecutionAlgorithm,
    InstrumentLookup,
    MarketView,
    ParentOrder,
)

__all__ = [
    "MAX_CHILDREN",
    "SINGLE_ALGORITHMS",
    "STATE_VERSION",
    "AlgoCommand",
    "AlgorithmAnomaly",
    "AlgorithmParams",
    "AlgorithmStatus",
    "BasketAlgorithm",
    "BasketLeg",
    "BasketOrder",
    "ChildOrder",
    "ExecutionAlgorithm",
    "IcebergAlgorithm",
    "IcebergParams",
    "InstrumentLookup",
    "LegProgress",
    "MarketView",
    "ParentOrder",
    "SingleParentAlgorithm",
    "TWAPAlgorithm",
    "TWAPParams",
    "VWAPAlgorithm",
    "VWAPParams",
    "algorithm_from_state",
    "create_algorithm",
    "volume_curve_from_bars",
]


def create_algorithm(
    order: ParentOrder | BasketOrder, instrument_for: InstrumentLookup = default_instrument_for
) -> ExecutionAlgorithm:
    """Build the algorithm a parent names in ``algo`` (or a :class:`BasketAlgorithm`).

    Raises:
        ExecutionError: if the algorithm is unknown or the parent or its params are invalid.
    """
    if isinstance(order, BasketOrder):
        return BasketAlgorithm(order, instrument_for)
    if not isinstance(order, ParentOrder):
        raise ExecutionError(f"expected a ParentOrder or BasketOrder, got {type(order).__name__}")
    algorithm = SINGLE_ALGORITHMS.get(order.algo)
    if algorithm is None:
        raise ExecutionError(
            f"parent {order.parent_id}: unknown algo {order.algo!r}; "
            f"expected one of {sorted(SINGLE_ALGORITHMS)}"
        )
    return algorithm(order, instrument_for)


def algorithm_from_state(
    state: Mapping[str, Any], instrument_for: InstrumentLookup = default_instrument_for
) -> ExecutionAlgorithm:
    """Rebuild whichever algorithm ``state`` (an ``algo.state`` checkpoint) describes.

    Raises:
        ExecutionError: if the state is malformed, of another version, or names an unknown algo.
    """
    if not isinstance(state, Mapping):
        raise ExecutionError(f"checkpoint state must be a mapping, got {type(state).__name__}")
    name = state.get("algo")
    if name == BasketAlgorithm.algo_name:
        return BasketAlgorithm.from_state(state, instrument_for)
    algorithm = SINGLE_ALGORITHMS.get(name) if isinstance(name, str) else None
    if algorithm is None:
        raise ExecutionError(
            f"checkpoint state names algo {name!r}; expected one of {sorted([*SINGLE_ALGORITHMS, 'basket'])}"
        )
    return algorithm.from_state(state, instrument_for)
