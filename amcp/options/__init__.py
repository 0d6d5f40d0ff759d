"""Option pricing models (Black-Scholes-Merton) on numpy arrays."""
