"""Benchmark commands of nlhf_jax: run as `python -m benchmarks.<name>`."""
