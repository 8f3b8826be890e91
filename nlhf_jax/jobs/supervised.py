"""Gin-bound supervised jobs: SFT, and one scorer job for both judges.

`sft_job` trains the policy; `scorer_job` trains the preference model or
the reward model, whichever its layout config names. Each job checks the
vocabulary, builds the network and its algorithm's step and evaluator
(pure functions from `nlhf_jax.algorithms`), builds the mesh and the
Program (`trainer.build_program`: mesh and batch are checked before
anything compiles) and hands it to `training.run_training`. See
gin_configs/runs/{sft,preference_model,reward_model}.gin.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from nlhf_jax import checkpointing
from nlhf_jax import partitioning
from nlhf_jax import run_spec
from nlhf_jax import train_state
from nlhf_jax import trainer
from nlhf_jax.algorithms import preference_model
from nlhf_jax.algorithms import reward_model
from nlhf_jax.algorithms import sft
from nlhf_jax.data import iterators as data_iterators
from nlhf_jax.errors import ConfigError
from nlhf_jax.jobs import training
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import reward
from nlhf_jax.models import t5

# A new scorer head is initialised randomly; a pretrained LM head is unused.
_SCORER_HEADS = {"allow_missing": ("score_head",),
                 "ignore_unused": ("logits_dense",)}


def _run(*, model: t5.T5Config, mesh: partitioning.MeshConfig,
         train: trainer.TrainConfig, data: data_iterators.DataSource,
         workdir: str, init: checkpointing.InitConfig,
         init_fn: Callable[[], Any], step_fn: train_state.StepFn,
         evaluator: train_state.Evaluator, progress: tuple[str, ...],
         scorer: bool, spec: run_spec.RunSpec) -> trainer.TrainResult:
  program = trainer.build_program(train, partitioning.make_mesh(mesh),
                                  init_fn, step_fn)
  return training.run_training(
      config=train, workdir=workdir, program=program, spec=spec, data=data,
      evaluator=evaluator, model_config=model, init=init,
      progress_keys=progress, **(_SCORER_HEADS if scorer else {}))


def sft_job(*, model: t5.T5Config, mesh: partitioning.MeshConfig,
            train: trainer.TrainConfig, data: data_iterators.DataSource,
            workdir: str,
            init: checkpointing.InitConfig = checkpointing.InitConfig()
            ) -> trainer.TrainResult:
  """Supervised fine-tuning job (bound by gin_configs/runs/sft.gin).

  Args:
    model: policy architecture.
    mesh: device mesh.
    train: steps, batch size, optimizer, checkpoints, evaluation.
    data: SFT batches (the `data.iterators` SFT layout).
    workdir: checkpoints, metrics.jsonl, model_info.txt.
    init: optional pretrained weights (HF / T5X / our checkpoint).

  Returns:
    The TrainResult (final state, metrics).
  """
  model_init.check_vocabulary(model, data)
  net = t5.T5(model)
  return _run(model=model, mesh=mesh, train=train, data=data,
              workdir=workdir, init=init,
              init_fn=model_init.init_fn(net, train.seed),
              step_fn=sft.make_train_step(net),
              evaluator=sft.make_evaluator(net),
              progress=("loss", "token_accuracy"), scorer=False,
              spec=run_spec.make("sft", models={"policy": model}, data=data,
                                 train=train, init=init))


# The scorer a layout config selects: (its model side, its training
# algorithm, the metrics shown on the console).
_SCORERS = {
    preference.LayoutConfig: (preference, preference_model,
                              ("loss", "accuracy", "order_gap")),
    reward.RewardLayoutConfig: (reward, reward_model, ("loss", "accuracy")),
}
ScorerLayout = Union[preference.LayoutConfig, reward.RewardLayoutConfig]


def scorer_of(layout: Any, owner: str) -> tuple[Any, Any, tuple[str, ...]]:
  """(model side, training algorithm, console metrics) a layout selects.

  Raises:
    ConfigError: naming `owner`, when `layout` is neither layout config.
  """
  if type(layout) not in _SCORERS:
    raise ConfigError(
        f"{owner}.layout must be a preference.LayoutConfig or a "
        f"reward.RewardLayoutConfig, got {type(layout).__name__}.")
  return _SCORERS[type(layout)]


def scorer_job(*, model: t5.T5Config, mesh: partitioning.MeshConfig,
               train: trainer.TrainConfig, data: data_iterators.DataSource,
               workdir: str, layout: ScorerLayout,
               init: checkpointing.InitConfig = checkpointing.InitConfig()
               ) -> trainer.TrainResult:
  """A T5Scorer judge: the preference model or the reward model.

  The layout's type selects which: a `preference.LayoutConfig` trains the
  pairwise preference model P(y ≻ y' | x) on both presentation orders
  (gin_configs/runs/preference_model.gin), a `reward.RewardLayoutConfig`
  the Bradley–Terry reward model r(x, y) of the RLHF baseline
  (gin_configs/runs/reward_model.gin).

  Args:
    model: scorer architecture (PREFERENCE_MODEL / REWARD_MODEL).
    mesh: device mesh.
    train: steps, batch size, optimizer, checkpoints, evaluation.
    data: pair batches; must provide `encode(text)` for the markers.
    workdir: output directory.
    layout: packed length and marker texts.
    init: optional pretrained weights; the new `score_head` is initialised
      randomly and an LM head in the checkpoint is ignored.

  Returns:
    The TrainResult; `eval_metrics` holds accuracy / log_loss / ece.

  Raises:
    ConfigError: `layout` is neither layout config.
  """
  judge, algorithm, progress = scorer_of(layout, "scorer_job")
  model_init.check_vocabulary(model, data)
  net = t5.T5Scorer(model)
  token_layout = judge.make_layout(layout, data)
  return _run(model=model, mesh=mesh, train=train, data=data,
              workdir=workdir, init=init,
              init_fn=model_init.scorer_init_fn(net, train.seed),
              step_fn=algorithm.make_train_step(net, token_layout),
              evaluator=algorithm.make_evaluator(net, token_layout),
              progress=progress, scorer=True,
              spec=run_spec.make(algorithm.__name__.rpartition(".")[2],
                                 models={"judge": model}, data=data,
                                 layout=layout, train=train, init=init))
