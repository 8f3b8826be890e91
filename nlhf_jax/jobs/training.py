"""What every job does around `trainer.train`: lease, run spec, data, weights.

A job (supervised.py, online_job.py) builds its mesh and its Program
(`trainer.build_program`), restores any frozen models at the Program's
layout, and hands both to `run_training`, which

1. takes the workdir's lease (`lease.Lease`: one writer per workdir;
   process 0 holds it);
2. compares the job's run spec with the one the workdir holds
   (`run_spec.check_resume`: a state-shaping difference is a ConfigError
   before any checkpoint is touched; other differences are recorded) and
   writes it;
3. opens this process's share of the data and, when `init.path` is set,
   loads the initial weights (pretrained or an earlier run) at the
   Program's parameter layout, and runs `trainer.train`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, Sequence

import jax

from nlhf_jax import checkpointing
from nlhf_jax import program as program_lib
from nlhf_jax import run_spec
from nlhf_jax import trainer
from nlhf_jax.data import iterators as data_iterators
from nlhf_jax.jobs import lease as lease_lib


def run_training(*, config: trainer.TrainConfig, workdir: str,
                 program: program_lib.Program, spec: run_spec.RunSpec,
                 data: data_iterators.DataSource,
                 evaluator: Optional[trainer.Evaluator] = None,
                 model_config: Any = None,
                 init: checkpointing.InitConfig = checkpointing.InitConfig(),
                 allow_missing: Sequence[str] = (),
                 ignore_unused: Sequence[str] = (),
                 progress_keys: Optional[tuple[str, ...]] = None,
                 load_frozen: Optional[Callable[[], trainer.Frozen]] = None
                 ) -> trainer.TrainResult:
  """`trainer.train` with the data iterators and initial parameters set up.

  Args:
    config: run settings (`program` was built from them).
    workdir: output directory.
    program: the state layout and jitted step (`trainer.build_program`).
    spec: the job's run spec, written to `workdir` before the first step.
    data: the dataset (train iterator, eval iterator); this process reads
      its share of every global batch.
    evaluator: optional evaluation on `data.eval_iterator`.
    model_config: T5Config of the model (for pretrained imports).
    init: pretrained / params-only initialisation (None path: random).
    allow_missing: parameter prefixes the checkpoint may lack (new heads).
    ignore_unused: checkpoint prefixes the model does not use.
    progress_keys: metrics shown on the console.
    load_frozen: restores the frozen models' parameters (see
      `trainer.train`); called after the lease and the spec check, so a
      refused run reads no checkpoint.

  Returns:
    The TrainResult of `trainer.train`.
  """
  trainer.check_workdir(workdir)
  index = jax.process_index()
  with contextlib.ExitStack() as stack:
    if index == 0:
      stack.enter_context(lease_lib.Lease(workdir))
    changes = run_spec.check_resume(workdir, spec)
    if index == 0:
      _record(workdir, spec, changes)
    return _train(config=config, workdir=workdir, program=program,
                  data=data, evaluator=evaluator, model_config=model_config,
                  init=init, allow_missing=allow_missing,
                  ignore_unused=ignore_unused, progress_keys=progress_keys,
                  frozen=load_frozen() if load_frozen else None)


def _record(workdir: str, spec: run_spec.RunSpec, changes: list) -> None:
  """Reports and records the allowed changes, then writes the new spec."""
  if changes:
    print(f"Resuming {workdir} with changed settings: "
          f"{run_spec.describe(changes)} (recorded in "
          f"{run_spec.CHANGES_FILE}).", flush=True)
    run_spec.record_changes(workdir, changes)
  run_spec.write(workdir, spec)


def _train(*, config, workdir, program, data, evaluator, model_config, init,
           allow_missing, ignore_unused, progress_keys, frozen):
  """This process's iterators and the initial weights, then the loop."""
  index, count = jax.process_index(), jax.process_count()
  train_data = data.train_iterator(config.batch_size, config.seed, index,
                                   count)
  eval_size = config.eval_batch_size or config.batch_size
  eval_data = None
  if evaluator is not None:
    eval_data = lambda: data.eval_iterator(eval_size, index, count)
  initial = None
  if init.path is not None:
    initial = lambda abstract, fresh: checkpointing.load_initial_params(
        init, model_config, abstract, fresh, allow_missing=allow_missing,
        ignore_unused=ignore_unused)
  return trainer.train(config=config, workdir=workdir, program=program,
                       train_data=train_data, evaluator=evaluator,
                       eval_data=eval_data, initial_params_fn=initial,
                       progress_keys=progress_keys, frozen=frozen)
