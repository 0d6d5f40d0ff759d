"""LiveOMSActor: the live order path in a Ray actor that restarts after a crash.

Ray restarts the actor (``max_restarts=-1``) by running its constructor again; the constructor
(:class:`amcp.execution.live.LiveOMS`) builds a fresh engine over the same database, audit log
and broker and reconciles before anything else, so a restarted OMS holds trading HALTED until
the store and the broker agree. Calls are not retried by Ray (``max_task_retries=0``): a submit
interrupted by a crash is finished by reconciliation, never by a blind re-run.

The actor is threaded (``max_concurrency``) so that submits of concurrent callers can wait
together and be group-committed; ``LiveOMS`` serialises every entry point on one lock.

The actor owns its worker process, so once constructed it freezes the heap it built (``gc.freeze``:
Ray's worker, SQLAlchemy, the broker client, the engine — about 190,000 objects). A full
(generation-2) collection of that heap stops every thread of the process for 100-200 ms on a
busy two-core machine, once every few thousand orders at 100 orders a second, and every order in
flight waits it out; with the heap frozen, collections scan only what was allocated since.
Frozen objects are still freed when their last reference goes; only cycles among them are never
collected, and construction leaves none worth keeping (it collects before it freezes).
"""

import gc
from typing import Any

import ray

from amcp.execution.live import LiveOMS

__all__ = ["OMS_MAX_CONCURRENCY", "LiveOMSActor", "LiveOMSProcess"]

#: Concurrent calls one OMS actor accepts (waiting submits share a group commit).
OMS_MAX_CONCURRENCY = 64


class LiveOMSProcess(LiveOMS):
    """:class:`~amcp.execution.live.LiveOMS` as the sole tenant of its process: construction ends
    with a full collection and ``gc.freeze()`` (see the module docstring). Arguments are
    ``LiveOMS``'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gc.collect()
        gc.freeze()


LiveOMSActor = ray.remote(max_restarts=-1, max_task_retries=0,
                          max_concurrency=OMS_MAX_CONCURRENCY)(LiveOMSProcess)
