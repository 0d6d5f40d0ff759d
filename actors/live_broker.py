"""LiveBrokerActor: the trading plane's broker **and** risk role against Alpaca (live modes).

One actor holds one :class:`~amcp.execution.live_plane.LiveBrokerService`, so the pre-trade
checks and the order path share one risk engine and nothing unchecked is sent. Ray restarts it
after a crash (``max_restarts=-1``) by running the constructor again, which reconciles with the
broker before anything else; calls are never retried by Ray (``max_task_retries=0``): an
interrupted submit is finished by reconciliation, never by a blind re-run.
"""

import ray

from amcp.execution.live_plane import LiveBrokerService

LiveBrokerActor = ray.remote(max_restarts=-1, max_task_retries=0)(LiveBrokerService)
