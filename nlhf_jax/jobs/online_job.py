"""The gin-bound online job: every policy-optimisation method in one job.

The policy starts from the SFT checkpoint, which is also the frozen
reference μ; the judge (the preference model, or the reward model for
RLHF) is restored frozen from its own checkpoint; prompts come from the SFT
data (its targets are unused). The job builds one Program (the policy's
state layout, the frozen models' layout as a `Frozen(reference, judge)`,
the jitted step), checks the configuration against the mesh, restores the
frozen models at the Program's layout and runs it in the shared trainer.

The algorithm is chosen in gin: `make_step` is the algorithm module's
`make_train_step(policy, reference, judge, layout, algorithm, responses)`
and `algorithm` its config. The judge's input follows from `layout`: a
`preference.LayoutConfig` packs a pair for the preference model, a
`reward.RewardLayoutConfig` one response for the reward model. So a
new online algorithm is one module under `algorithms/` plus one small run
file (see gin_configs/runs/nash_md.gin).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

from nlhf_jax import checkpointing
from nlhf_jax import errors
from nlhf_jax import partitioning
from nlhf_jax import run_spec
from nlhf_jax import train_state
from nlhf_jax import trainer
from nlhf_jax.algorithms import online
from nlhf_jax.jobs import supervised
from nlhf_jax.jobs import training
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import reward
from nlhf_jax.models import t5

PROGRESS = ("loss", "preference_vs_opponent", "reward", "kl_to_reference",
            "response_length")
JudgeLayout = Union[preference.LayoutConfig, reward.RewardLayoutConfig]
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
    for name, macro in (("reference", "SFT_DIR"), ("judge", "JUDGE_DIR")):
      errors.check_path_exists(
          self, name, getattr(self, name),
          hint=f"gin macro {macro}: the checkpoint of a finished stage; "
          "train that stage first")


def restore_frozen(paths: FrozenModels,
                   abstract: train_state.Frozen) -> train_state.Frozen:
  """The frozen models' parameters at the Program's layout `abstract`."""
  return train_state.Frozen(
      reference=checkpointing.restore_params(paths.reference,
                                             abstract.reference),
      judge=checkpointing.restore_params(paths.judge, abstract.judge))


def judge_layout(layout: JudgeLayout, data: Any) -> Any:
  """The token layout of the judge's input (pair or single response)."""
  judge, _, _ = supervised.scorer_of(layout, "online_job")
  return judge.make_layout(layout, data)


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
  token_layout = judge_layout(layout, data)
  policy_net, judge_net = t5.T5(policy), t5.T5Scorer(judge)
  step_fn = make_step(policy_net, policy_net, judge_net, token_layout,
                      algorithm, responses)
  program = trainer.build_program(
      train, partitioning.make_mesh(mesh),
      model_init.init_fn(policy_net, train.seed), step_fn, with_ema=with_ema,
      frozen_init=train_state.Frozen(
          reference=model_init.init_fn(policy_net, 0),
          judge=model_init.scorer_init_fn(judge_net, 0)))
  spec = run_spec.make(
      "online", models={"policy": policy, "judge": judge}, data=data,
      layout=layout, make_step=make_step, algorithm=algorithm,
      responses=responses, with_ema=with_ema, train=train,
      frozen=frozen_models)
  return training.run_training(
      config=train, workdir=workdir, program=program, spec=spec, data=data,
      model_config=policy,
      init=checkpointing.InitConfig(path=frozen_models.reference),
      progress_keys=PROGRESS,
      load_frozen=lambda: restore_frozen(frozen_models,
                                         program.abstract_frozen))
