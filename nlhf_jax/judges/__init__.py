"""Judges: who says which of two responses is better (or how good one is).

Modules (importing this package loads nothing):

  text       judges on strings, `(prompts, first, second) -> [n]`, pure
             numpy (no JAX): the synthetic world's exact P*, any callable
             (an LLM rater), `order_averaged`; used by evaluation and, via
             `host`, by training.
  pairwise   in-step pairwise judges on token arrays (`PairJudge`) and
             `preference`, the order-averaged, checked P(y ≻ y' | x) every
             pairwise online step calls: the learned preference model, a
             reward used pairwise, JAX functions, ensembles.
  pointwise  in-step rewards (`RewardJudge`) for RLHF and `rewards`.
  host       text judges and rewards called from the jitted step through
             `jax.pure_callback`, per batch shard.
  checks     the in-step NaN / range check that names the judge.

Which judge a run uses is chosen in gin (`nlhf_jax.jobs.judges`).
"""
