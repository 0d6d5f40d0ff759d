"""Ray actors of the trading plane: thin shells built from amcp's plain classes.

Each module exposes ``<Name>Actor = ray.remote(<amcp class>)``; resources are set at the call
site with ``.options(num_cpus=..., num_gpus=...)`` from config, never in decorators.
"""
