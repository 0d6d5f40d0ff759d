"""Brokers: the Alpaca broker (alpaca-py) and, in paper mode, the simulated venue."""
