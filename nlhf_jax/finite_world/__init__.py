"""Finite-answer worlds: tiny tasks whose Nash targets are known exactly.

Each prompt is answered by one of K short answer strings; voters' rankings
with weights (one population per prompt) give the exact population
preference P*; every response outside the answer set is the outcome
"other", which loses to every answer and ties with itself. A policy's
distribution over the K + 1 outcomes is exact too (teacher-forced
probability of each answer), so every algorithm's exact target, computed
by `nlhf_jax.tabular`, can be compared with a trained T5 policy.

Modules (importing this package loads nothing):

  population  worlds: answers, prompts, voters; P*, Condorcet and Borda
              winners; JSON files; the ready worlds (pure NumPy)
  targets     the exact target of every algorithm on a world (NumPy):
              π*_τ, the best response to μ, RLHF's μ·exp(r/τ)
  tokens      the world's word vocabulary and each response's outcome
  data        `FiniteWorldSource`: SFT rows and teacher-forcing rows
  judge       the exact P* and the Bradley–Terry reward as JAX judges
  evaluation  exact KL(target ‖ π_θ), KL(π*_τ ‖ π_θ) during training
"""
