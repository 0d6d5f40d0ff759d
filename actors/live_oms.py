"""LiveOMSActor: the live order path in a Ray actor that restarts after a crash.

Ray restarts the actor (``max_restarts=-1``) by running its constructor again; the constructor
(:class:`amcp.execution.live.LiveOMS`) builds a fresh engine over the same database, audit log
and broker and reconciles before anything else, so a restarted OMS holds trading HALTED until
the store and the broker agree. Calls are not retried by Ray (``max_task_retries=0``): a submit
interrupted by a crash is finished by reconciliation, never by a blind re-run.

The actor is threaded (``max_concurrency``) so that submits of concurrent callers can wait
together and be group-committed; ``LiveOMS`` serialises every entry point on one lock.
"""

import ray

from amcp.execution.live import LiveOMS

#: Concurrent calls one OMS actor accepts (waiting submits share a group commit).
OMS_MAX_CONCURRENCY = 64

LiveOMSActor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=OMS_MAX_CONCURRENCY)(LiveOMS)
