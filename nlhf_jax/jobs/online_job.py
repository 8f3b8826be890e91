"""The gin-bound online job: every policy-optimisation method in one job.

The policy starts from the SFT checkpoint, which is also the frozen
reference μ; the judge is chosen in gin (`JUDGE`, a config of
`jobs.judges`: the learned preference or reward model by default, the
synthetic world's exact P*, any Python or JAX function); prompts come from
the SFT data (its targets are unused). The job builds the judge, one
Program (the policy's state layout, the frozen models' layout as a
`Frozen(reference, judge)`, the jitted step), checks the configuration
against the mesh, restores the frozen models at the Program's layout and
runs it in the shared trainer.

The algorithm is chosen in gin: `make_step` is the algorithm module's
`make_train_step(policy, reference, judge, algorithm, responses)` and
`algorithm` its config, whose `judge_kind` ('pairwise' or 'pointwise')
says which judge it takes; a config whose class attribute `keeps_anchor` is
true gets an anchor copy of the parameters in its train state (Nash Prox,
MPO). So a new online algorithm is one module under
`algorithms/` plus one small run file (see gin_configs/runs/nash_md.gin).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from nlhf_jax import checkpointing
from nlhf_jax import errors
from nlhf_jax import partitioning
from nlhf_jax import run_spec
from nlhf_jax import train_state
from nlhf_jax import trainer
from nlhf_jax.algorithms import online
from nlhf_jax.jobs import judges
from nlhf_jax.jobs import training
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5

PROGRESS = ("loss", "preference_vs_opponent", "reward", "kl_to_reference",
            "response_length")
# make_train_step(policy, reference, judge, algorithm, responses).
StepFactory = Callable[..., train_state.StepFn]


class Evaluation(Protocol):
  """An online run's evaluation (gin: `online_job.evaluation`)."""

  def build(self, policy: t5.T5, algorithm: Any,
            data: Any) -> train_state.Evaluator:
    """The Evaluator of this run (its step may read the frozen models)."""


def judge_kind(algorithm: Any) -> str:
  """'pairwise' or 'pointwise': the judge an algorithm's config asks for."""
  kind = getattr(algorithm, "judge_kind", None)
  if kind not in judges.KINDS:
    raise errors.ConfigError(
        f"{type(algorithm).__name__} does not say which judge it takes: give "
        f"it a class attribute judge_kind in {judges.KINDS}.")
  return kind


def online_job(*, policy: t5.T5Config, mesh: partitioning.MeshConfig,
               train: trainer.TrainConfig, data: Any, workdir: str,
               sft_dir: str, judge: judges.JudgeConfig,
               make_step: StepFactory, algorithm: Any,
               responses: online.ResponseConfig,
               with_ema: bool = False,
               evaluation: Optional[Evaluation] = None
               ) -> trainer.TrainResult:
  """Runs one online method (bound by gin_configs/runs/online_common.gin).

  Args:
    policy: policy (and reference) architecture (POLICY_MODEL).
    mesh: device mesh.
    train: steps, batch size, optimizer, checkpoints.
    data: prompts (the SFT data source; targets unused).
    workdir: output directory.
    sft_dir: the SFT run (SFT_DIR): initial policy and reference μ.
    judge: the judge's config (JUDGE, `jobs.judges`).
    make_step: the algorithm's `make_train_step`.
    algorithm: the algorithm's config (e.g. `nash_md.NashMDConfig`).
    responses: decoding length and temperature.
    with_ema: keep EMA parameters in the state (Nash-EMA-PG's opponent).
    evaluation: what to evaluate every `train.eval_every` steps and at the
      end (e.g. `finite_world.evaluation.ExactTargets`); None: nothing.

  Returns:
    The TrainResult of the run.
  """
  errors.check_path_exists(
      "online_job", "sft_dir", sft_dir,
      hint="gin macro SFT_DIR: the checkpoint of a finished SFT stage; "
      "train that stage first")
  model_init.check_vocabulary(policy, data)
  device_mesh = partitioning.make_mesh(mesh)
  in_step_judge = judge.build(data, device_mesh, judge_kind(algorithm))
  policy_net = t5.T5(policy)
  step_fn = make_step(policy_net, policy_net, in_step_judge, algorithm,
                      responses)
  program = trainer.build_program(
      train, device_mesh, model_init.init_fn(policy_net, train.seed),
      step_fn, with_ema=with_ema,
      with_anchor=bool(getattr(algorithm, "keeps_anchor", False)),
      timed_stages=True,
      frozen_init=train_state.Frozen(
          reference=model_init.init_fn(policy_net, 0),
          judge=in_step_judge.init_params))
  evaluator = (None if evaluation is None else
               evaluation.build(policy_net, algorithm, data))
  spec = run_spec.make(
      "online", models={"policy": policy}, data=data, judge=judge,
      make_step=make_step, algorithm=algorithm, responses=responses,
      with_ema=with_ema, train=train, sft_dir=sft_dir, evaluation=evaluation)

  def load_frozen():
    abstract = program.abstract_frozen
    return train_state.Frozen(
        reference=checkpointing.restore_params(sft_dir, abstract.reference),
        judge=judge.load(abstract.judge))

  return training.run_training(
      config=train, workdir=workdir, program=program, spec=spec, data=data,
      evaluator=evaluator, model_config=policy,
      init=checkpointing.InitConfig(path=sft_dir),
      progress_keys=PROGRESS, load_frozen=load_frozen)
