"""Training algorithms: configs and pure train steps, one module each.

Each module exports its config dataclass(es) and `make_train_step(...)`,
which returns `step(state, batch, rng[, frozen]) -> (state, metrics)`
(`train_state.StepFn`), and `make_evaluator(...)` where it has one. Nothing
here imports the trainer, checkpointing, a data source or gin: the jobs
that run these steps live in `nlhf_jax.jobs`.

  sft                supervised fine-tuning of the policy (teacher forcing)
  preference_model   pairwise P(y ≻ y' | x), trained on both presentation
                     orders, symmetrised at inference
  reward_model       Bradley-Terry scalar reward r(x, y)
  nash_md            Nash-MD-PG (mixture opponent; β=0 self-play, β=1 best
                     response)
  nash_ema           Nash-EMA-PG (EMA-of-parameters opponent)
  rlhf               REINFORCE against the reward model
  online_ipo         Online IPO
  ipo_md             IPO-MD (Online IPO on two samples of the mixture)
  egpo               EGPO (extragradient on the Online IPO loss)
  nash_prox          Nash Prox (PG steps against a frozen copy of π_k)
  mpo                MPO (self-play towards a periodically refreshed magnet)
  online             shared pieces of the online steps (rollouts, log-probs)
  packing            token layouts of the scorers' encoder inputs
  policy_gradient    advantages and surrogate losses of the online methods

Importing this package imports none of them.
"""
