"""Training algorithms: one module per train step.

Each module exports `make_train_step(...)` returning
`step(state, batch, rng) -> (state, metrics)` for `trainer.train`, an
evaluator where it has one, and a gin-bindable `train_job`:

  sft                supervised fine-tuning of the policy (teacher forcing)
  preference_model   pairwise P(y ≻ y' | x), trained on both presentation
                     orders, symmetrised at inference
  reward_model       Bradley-Terry scalar reward r(x, y)
  packing            token layouts of the scorers' encoder inputs
  policy_gradient    advantages and surrogate losses of the online methods

Importing this package imports none of them.
"""
