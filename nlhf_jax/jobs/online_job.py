"""The gin-bound online job: every policy-optimisation method in one job.

The policy starts from the SFT checkpoint, which is also the frozen
reference μ; the judge (the preference model, or the reward model for
RLHF) is restored frozen from its own checkpoint; prompts come from the SFT
data (its targets are unused); the algorithm's step runs in the shared
trainer with the frozen parameters as sharded arguments.

The algorithm is chosen in gin: `make_step` is the algorithm module's
`make_train_step(policy, reference, judge, layout, algorithm, responses)`
and `algorithm` its config. The judge's kind follows from `layout`: a
`preference_model.LayoutConfig` packs a pair for the preference model, a
`reward_model.RewardLayoutConfig` one response for the reward model. So a
new online algorithm is one module under `algorithms/` plus one small run
file (see gin_configs/runs/nash_md.gin).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Union

import flax.linen as nn

from nlhf_jax import checkpointing
from nlhf_jax import partitioning
from nlhf_jax import train_state
from nlhf_jax import trainer
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import preference_model
from nlhf_jax.algorithms import reward_model
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5

PROGRESS = ("loss", "preference_vs_opponent", "reward", "kl_to_reference",
            "response_length")
JudgeLayout = Union[preference_model.LayoutConfig,
                    reward_model.RewardLayoutConfig]
# make_train_step(policy, reference, judge, layout, algorithm, responses).
StepFactory = Callable[..., train_state.StepFn]


@dataclasses.dataclass(frozen=True)
class FrozenModels:
  """Checkpoints of the fixed models (workdirs or checkpoint directories).

  Attributes:
    reference: the SFT run: initial policy and reference μ.
    judge: the preference-model run (Nash methods, IPO) or the reward-model
      run (RLHF).
  """

  reference: str
  judge: str

  def __post_init__(self):
    # Imported here: this file's edits are kept to __post_init__ for now.
    from nlhf_jax import errors  # pylint: disable=g-import-not-at-top
    for name, macro in (("reference", "SFT_DIR"), ("judge", "JUDGE_DIR")):
      errors.check_path_exists(
          self, name, getattr(self, name),
          hint=f"gin macro {macro}: the checkpoint of a finished stage; "
          "train that stage first")


def restore_frozen(path: str, init_fn: Callable[[], Any], mesh,
                   ignore_unused=()) -> tuple[Any, Any]:
  """Parameters of a finished run, sharded on `mesh`, and their shardings."""
  boxed = train_state.abstract_boxed_params(init_fn)
  shardings = train_state.params_shardings(boxed, mesh)
  abstract = partitioning.abstract_with_shardings(nn.unbox(boxed),
                                                 shardings)
  params = checkpointing.restore_params(path, abstract,
                                        ignore_unused=ignore_unused)
  return params, shardings


def judge_layout(layout: JudgeLayout, data: Any) -> tuple[Any, str]:
  """The token layout of the judge's input and the judge's role name."""
  if isinstance(layout, preference_model.LayoutConfig):
    return preference_model.make_layout(layout, data), "preference"
  if isinstance(layout, reward_model.RewardLayoutConfig):
    return reward_model.make_layout(layout, data), "reward"
  raise ConfigError(
      f"online_job.layout must be a preference_model.LayoutConfig or a "
      f"reward_model.RewardLayoutConfig, got {type(layout).__name__}.")


def online_job(*, policy: t5.T5Config, judge: t5.T5Config,
               mesh: partitioning.MeshConfig, train: trainer.TrainConfig,
               data: Any, workdir: str, frozen_models: FrozenModels,
               make_step: StepFactory, algorithm: Any,
               responses: online.ResponseConfig, layout: JudgeLayout,
               with_ema: bool = False) -> trainer.TrainResult:
  """Runs one online method (bound by gin_configs/runs/online_common.gin).

  Args:
    policy: policy (and reference) architecture (POLICY_MODEL).
    judge: the preference or reward model's architecture.
    mesh: device mesh.
    train: steps, batch size, optimizer, checkpoints.
    data: prompts (the SFT data source; targets unused).
    workdir: output directory.
    frozen_models: the SFT run and the judge's run.
    make_step: the algorithm's `make_train_step`.
    algorithm: the algorithm's config (e.g. `nash_md.NashMDConfig`).
    responses: decoding length and temperature.
    layout: the judge's input layout (selects preference or reward judge).
    with_ema: keep EMA parameters in the state (Nash-EMA-PG's opponent).

  Returns:
    The TrainResult of the run.
  """
  model_init.check_vocabulary(policy, data)
  token_layout, judge_role = judge_layout(layout, data)
  device_mesh = partitioning.make_mesh(mesh)
  policy_net, judge_net = t5.T5(policy), t5.T5Scorer(judge)
  ref_params, ref_sh = restore_frozen(
      frozen_models.reference, model_init.init_fn(policy_net, 0),
      device_mesh)
  judge_params, judge_sh = restore_frozen(
      frozen_models.judge, model_init.scorer_init_fn(judge_net, 0),
      device_mesh)
  frozen = ({"reference": ref_params, judge_role: judge_params},
            {"reference": ref_sh, judge_role: judge_sh})
  step_fn = make_step(policy_net, policy_net, judge_net, token_layout,
                      algorithm, responses)
  return trainer.run_job(
      config=train, workdir=workdir, mesh_config=mesh,
      init_fn=model_init.init_fn(policy_net, train.seed), step_fn=step_fn,
      data=data, model_config=policy,
      init=checkpointing.InitConfig(path=frozen_models.reference),
      progress_keys=PROGRESS, with_ema=with_ema, frozen=frozen)
