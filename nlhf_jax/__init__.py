"""nlhf_jax: Nash Learning from Human Feedback in JAX.

Importing the package has no side effects; import the submodules you need
(`nlhf_jax.models`, `nlhf_jax.partitioning`, `nlhf_jax.tabular`, ...).
"""

__version__ = "0.1.0"
