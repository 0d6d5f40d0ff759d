"""Revision scripts of the trading state schema, oldest first by ``down_revision``."""
