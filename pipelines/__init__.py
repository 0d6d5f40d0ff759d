"""Ray jobs: one module per job, each runnable as ``python -m pipelines.<job> --config ...``."""
