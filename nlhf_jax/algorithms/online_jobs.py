"""Gin-bound jobs of the online algorithms (Nash-MD-PG, Nash-EMA-PG, RLHF, IPO).

Each job: the policy starts from the SFT checkpoint, which is also the frozen
reference μ; the preference (or reward) model is restored frozen from its
own checkpoint; prompts come from the SFT data (its targets are unused);
the algorithm's step runs in the shared trainer with the frozen parameters
as sharded arguments. See gin_configs/runs/{nash_md,nash_ema,self_play,
best_response,rlhf,online_ipo}.gin.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import flax.linen as nn

from nlhf_jax import checkpointing
from nlhf_jax import partitioning
from nlhf_jax import train_state as ts
from nlhf_jax import trainer
from nlhf_jax.algorithms import nash_ema
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import online_ipo
from nlhf_jax.algorithms import preference_model as pm_lib
from nlhf_jax.algorithms import reward_model as rm_lib
from nlhf_jax.algorithms import rlhf
from nlhf_jax.algorithms import sft
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import t5

PROGRESS = ("loss", "preference_vs_opponent", "reward", "kl_to_reference",
            "response_length")


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
    for name in ("reference", "judge"):
      path = getattr(self, name)
      if not isinstance(path, str) or not os.path.exists(path):
        raise ConfigError(f"FrozenModels.{name}: checkpoint {path!r} does "
                          "not exist (train that stage first).")


def restore_frozen(path: str, init_fn: Callable[[], Any], mesh,
                   ignore_unused=()) -> tuple[Any, Any]:
  """Parameters of a finished run, sharded on `mesh`, and their shardings."""
  boxed = ts.abstract_boxed_params(init_fn)
  shardings = ts.params_shardings(boxed, mesh)
  abstract = partitioning.abstract_with_shardings(nn.unbox(boxed),
                                                 shardings)
  params = checkpointing.restore_params(path, abstract,
                                        ignore_unused=ignore_unused)
  return params, shardings


def _run(*, policy_cfg: t5.T5Config, judge_cfg: t5.T5Config,
         mesh: partitioning.MeshConfig, train: trainer.TrainConfig,
         data: Any, workdir: str, frozen_models: FrozenModels,
         judge_key: str, make_step: Callable[..., Any],
         with_ema: bool = False) -> trainer.TrainResult:
  sft.check_vocabulary(policy_cfg, data)
  device_mesh = partitioning.make_mesh(mesh)
  policy, judge = t5.T5(policy_cfg), t5.T5Scorer(judge_cfg)
  ref_params, ref_sh = restore_frozen(frozen_models.reference,
                                      sft.init_fn(policy, 0), device_mesh)
  judge_params, judge_sh = restore_frozen(
      frozen_models.judge, pm_lib.scorer_init_fn(judge, 0), device_mesh)
  frozen = ({"reference": ref_params, judge_key: judge_params},
            {"reference": ref_sh, judge_key: judge_sh})
  return trainer.run_job(
      config=train, workdir=workdir, mesh_config=mesh,
      init_fn=sft.init_fn(policy, train.seed),
      step_fn=make_step(policy, judge), data=data, model_config=policy_cfg,
      init=checkpointing.InitConfig(path=frozen_models.reference),
      progress_keys=PROGRESS, with_ema=with_ema, frozen=frozen)


def nash_md_job(*, policy: t5.T5Config, preference: t5.T5Config,
                mesh: partitioning.MeshConfig, train: trainer.TrainConfig,
                data: Any, workdir: str, frozen_models: FrozenModels,
                algorithm: nash_md.NashMDConfig,
                responses: online.ResponseConfig,
                layout: pm_lib.LayoutConfig) -> trainer.TrainResult:
  """Nash-MD-PG (self-play at β=0, best response at β=1)."""
  pair = pm_lib.make_layout(layout, data)
  return _run(policy_cfg=policy, judge_cfg=preference, mesh=mesh,
              train=train, data=data, workdir=workdir,
              frozen_models=frozen_models, judge_key="preference",
              make_step=lambda p, j: nash_md.make_train_step(
                  p, p, j, pair, algorithm, responses))


def nash_ema_job(*, policy: t5.T5Config, preference: t5.T5Config,
                 mesh: partitioning.MeshConfig, train: trainer.TrainConfig,
                 data: Any, workdir: str, frozen_models: FrozenModels,
                 algorithm: nash_ema.NashEMAConfig,
                 responses: online.ResponseConfig,
                 layout: pm_lib.LayoutConfig) -> trainer.TrainResult:
  """Nash-EMA-PG; the EMA parameters are part of the checkpointed state."""
  pair = pm_lib.make_layout(layout, data)
  return _run(policy_cfg=policy, judge_cfg=preference, mesh=mesh,
              train=train, data=data, workdir=workdir,
              frozen_models=frozen_models, judge_key="preference",
              make_step=lambda p, j: nash_ema.make_train_step(
                  p, p, j, pair, algorithm, responses), with_ema=True)


def online_ipo_job(*, policy: t5.T5Config, preference: t5.T5Config,
                   mesh: partitioning.MeshConfig,
                   train: trainer.TrainConfig, data: Any, workdir: str,
                   frozen_models: FrozenModels,
                   algorithm: online_ipo.OnlineIPOConfig,
                   responses: online.ResponseConfig,
                   layout: pm_lib.LayoutConfig) -> trainer.TrainResult:
  """Online IPO against the preference model."""
  pair = pm_lib.make_layout(layout, data)
  return _run(policy_cfg=policy, judge_cfg=preference, mesh=mesh,
              train=train, data=data, workdir=workdir,
              frozen_models=frozen_models, judge_key="preference",
              make_step=lambda p, j: online_ipo.make_train_step(
                  p, p, j, pair, algorithm, responses))


def rlhf_job(*, policy: t5.T5Config, reward: t5.T5Config,
             mesh: partitioning.MeshConfig, train: trainer.TrainConfig,
             data: Any, workdir: str, frozen_models: FrozenModels,
             algorithm: rlhf.RLHFConfig, responses: online.ResponseConfig,
             layout: rm_lib.RewardLayoutConfig) -> trainer.TrainResult:
  """RLHF baseline against the Bradley–Terry reward model."""
  reward_layout = rm_lib.make_layout(layout, data)
  return _run(policy_cfg=policy, judge_cfg=reward, mesh=mesh, train=train,
              data=data, workdir=workdir, frozen_models=frozen_models,
              judge_key="reward",
              make_step=lambda p, j: rlhf.make_train_step(
                  p, p, j, reward_layout, algorithm, responses))
