"""Optimizer configuration: Adafactor (default) or AdamW, with an LR schedule.

Adafactor follows the T5X/NLHF setting (factored second moments, decay rate
0.8, update clipping 1.0, updates scaled by the parameter RMS); the Online
IPO re-run of Nash-MD-PG used "AdaFactor with decay 0.8" and lr 3e-5 to 1e-4.
It is `nlhf_jax.adafactor.adafactor`: `optax.adafactor`'s arithmetic and state
in fewer passes over the parameters. Two variants, numerically equal (to
float32 summation order) and with the same state, so a run may switch:

  'adafactor'        portable, the default on every backend (TPU, GPU, CPU);
  'adafactor_fused'  its XLA:CPU-tuned form (`pairwise_means=True`: non-minor
                     axis means as sums of halves), bound by
                     gin_configs/backends/cpu.gin; docs/cpu_speedups.md.
"""

from __future__ import annotations

import dataclasses

import optax

from nlhf_jax import adafactor

OPTIMIZERS = ("adafactor", "adafactor_fused", "adamw")
# Adafactor variants: name -> `adafactor.adafactor(pairwise_means=...)`.
ADAFACTOR_PAIRWISE_MEANS = {"adafactor": False, "adafactor_fused": True}
SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Optimizer and learning-rate schedule (bound by gin as one unit).

  Attributes:
    name: 'adafactor' (portable), 'adafactor_fused' (the same optimizer
      tuned for XLA:CPU; gin_configs/backends/cpu.gin) or 'adamw'.
    learning_rate: peak learning rate.
    schedule: 'constant', 'linear' (decay to 0 at the last step) or 'cosine'.
    warmup_steps: linear warm-up from 0 to `learning_rate`.
    weight_decay: decoupled weight decay (AdamW) / Adafactor's
      `weight_decay_rate`; 0 disables it.
    grad_clip_norm: clip the global gradient norm to this value; 0 disables.
    adafactor_decay_rate: Adafactor's second-moment decay exponent.
    adafactor_multiply_by_parameter_scale: scale updates by the parameter
      RMS (T5X default; makes `learning_rate` a relative step size).
    b1: AdamW first-moment decay.
    b2: AdamW second-moment decay.
  """

  name: str = "adafactor"
  learning_rate: float = 1e-3
  schedule: str = "constant"
  warmup_steps: int = 0
  weight_decay: float = 0.0
  grad_clip_norm: float = 0.0
  adafactor_decay_rate: float = 0.8
  adafactor_multiply_by_parameter_scale: bool = True
  b1: float = 0.9
  b2: float = 0.999

  def __post_init__(self):
    # Imported here: this file's edits are kept to __post_init__ for now.
    from nlhf_jax import errors  # pylint: disable=g-import-not-at-top
    errors.check_choice(self, "name", self.name, OPTIMIZERS)
    errors.check_choice(self, "schedule", self.schedule, SCHEDULES)
    errors.check_positive(self, "learning_rate", self.learning_rate)
    errors.check_non_negative(self, "warmup_steps", self.warmup_steps,
                              integer=True)
    for name in ("weight_decay", "grad_clip_norm", "adafactor_decay_rate"):
      errors.check_non_negative(self, name, getattr(self, name))
    for name in ("b1", "b2"):
      errors.check_in_range(self, name, getattr(self, name), 0.0, 1.0,
                            high_inclusive=False)


def learning_rate_schedule(config: OptimizerConfig,
                           total_steps: int) -> optax.Schedule:
  """The schedule step -> learning rate (warm-up, then constant or decay)."""
  lr, warm = config.learning_rate, config.warmup_steps
  decay_steps = max(total_steps - warm, 1)
  if config.schedule == "constant":
    after = optax.constant_schedule(lr)
  elif config.schedule == "linear":
    after = optax.linear_schedule(lr, 0.0, decay_steps)
  else:
    after = optax.cosine_decay_schedule(lr, decay_steps)
  if not warm:
    return after
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warm), after], [warm])


def make_optimizer(config: OptimizerConfig,
                   total_steps: int) -> optax.GradientTransformation:
  """Builds the optax transformation described by `config`.

  Args:
    config: optimizer settings.
    total_steps: length of the run (for decaying schedules).

  Returns:
    An optax GradientTransformation (gradient clipping first if enabled).
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.name in ADAFACTOR_PAIRWISE_MEANS:
    tx = adafactor.adafactor(
        learning_rate=schedule, decay_rate=config.adafactor_decay_rate,
        multiply_by_parameter_scale=(
            config.adafactor_multiply_by_parameter_scale),
        weight_decay_rate=config.weight_decay or None,
        pairwise_means=ADAFACTOR_PAIRWISE_MEANS[config.name])
  else:
    tx = optax.adamw(schedule, b1=config.b1, b2=config.b2,
                     weight_decay=config.weight_decay)
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx
