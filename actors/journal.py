"""JournalActor: durable record of every command and event (SQLite by default)."""

import ray

from amcp.store.journal import Journal

JournalActor = ray.remote(Journal)
