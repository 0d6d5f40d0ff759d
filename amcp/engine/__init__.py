"""The one trading engine: the cycle that backtest, paper and live all run.

``amcp.engine`` wires the pure components (strategies, portfolio, risk, OMS, broker, journal)
into a cycle. The cycle calls its components through an :class:`~amcp.engine.invoker.Invoker`:
plain method calls in a backtest, Ray actor calls in the trading plane. Same code, same order,
same fills.
"""
