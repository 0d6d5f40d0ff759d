"""Options: pricing and greeks (Black-Scholes-Merton, Black-76, American by Barone-Adesi-Whaley
and Leisen-Reimer, a torch path), implied volatility, chains, SVI surfaces, the named strategy
catalog, the opportunity scanner and multi-leg orders — numpy kernels over whole chains."""
