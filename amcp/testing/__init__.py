"""Test doubles of external services, for tests and offline use.

``amcp.testing.alpaca_rest.AlpacaMarketDataServer`` serves Alpaca's market-data REST API from
Arrow tables so the real alpaca-py clients run unchanged against it; ``amcp.testing.alpaca_stream``
does the same for the WebSocket stream. Nothing here is imported by the product at run time.
"""
