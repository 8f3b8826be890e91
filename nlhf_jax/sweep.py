r"""Sweep runner: the paper's Table 1 from a folder of experiment gin files.

  python -m nlhf_jax.sweep --experiments gin_configs/experiments \
      --model_gin gin_configs/models/small.gin --data_dir DATA \
      --vocabulary VOCAB.model --sft_dir SFT --pm_dir PM --rm_dir RM \
      --workdir OUT [--mesh_gin gin_configs/mesh/...] [--gin.NAME=VALUE ...] \
      [--only 'nash_md_beta_*'] [--p_star] [--eval_prompts 500] [--dry_run]

For every `*.gin` file of `--experiments` (sorted by name), in sequence, it
runs the gin entry point (`nlhf_jax.main`) with

  --gin_file=<experiment> --gin_file=<model gins> [--gin_file=<mesh gins>]
  --gin.DATA_DIR=... --gin.VOCABULARY=... --gin.SFT_DIR=...
  --gin.JUDGE_DIR=<pm_dir, or rm_dir for experiments built on runs/rlhf.gin>
  --gin.WORKDIR=<workdir>/runs/<experiment name> [--gin.NAME=VALUE ...]

skipping experiments whose final checkpoint is already intact, and resuming
interrupted ones from their newest checkpoint (the trainer does that by
itself). The final step is `--gin.TRAIN_STEPS` when given, else the
`train.steps` the run recorded in its `run_spec.json` when it started (a
run without a spec has not started; a TRAIN_STEPS edited into an experiment
file after its run started is only seen through --gin.TRAIN_STEPS). Then
the tournament (`nlhf_jax.evaluation.pipeline`): one summary per test
prompt from every finished experiment and from the SFT policy, judged pair
by pair by the learned preference model (and by the synthetic world's exact
P* with `--p_star`), written to `<workdir>/report/` (report.md, CSVs,
heatmaps, training curves). Models, vocabularies, lengths and the judge's
layout are read from the run specs of the runs, `--sft_dir` and `--pm_dir`,
not from gin. Table 1's rows get the paper's names (SP, MD1…MD6, BR, EMA1,
EMA2, RLHF; `TABLE1_NAMES`), the follow-up baselines theirs (IPO, IPO-MD,
EGPO, Prox, MPO; `FOLLOWUP_NAMES`); other experiments keep their file names.

Locally the runs execute in this process. On a TPU pod each run must start
on every worker at once: pass `--launcher launch/run_on_pod.sh`, and each
experiment becomes `launch/run_on_pod.sh --name=<experiment> -- <the
arguments above>` (run from your workstation; see launch/README.md); the
finished-check needs a workdir this machine can read (a local path, or
gs:// through etils.epath). `--dry_run` prints every command without running
anything. The tournament then runs on one host (`--stage tournament`).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import glob
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

from nlhf_jax import checkpointing
from nlhf_jax import cli
from nlhf_jax import main as main_lib
from nlhf_jax import run_spec
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import pipeline

# Experiment file stem -> the paper's Table 1 name (paper.md §6, §8.1).
TABLE1_NAMES = {
    "rlhf_tau_005": "RLHF", "nash_md_beta_0": "SP", "nash_md_beta_0125": "MD1",
    "nash_md_beta_025": "MD2", "nash_md_beta_0375": "MD3",
    "nash_md_beta_05": "MD4", "nash_md_beta_0625": "MD5",
    "nash_md_beta_075": "MD6", "nash_md_beta_0875": "MD7",
    "nash_md_beta_10": "BR", "nash_ema_decay_0999": "EMA1",
    "nash_ema_decay_09995": "EMA2"}
# The follow-up baselines' experiment files, in the order they come after
# Table 1 (README "Algorithms").
FOLLOWUP_NAMES = {
    "online_ipo_tau_1": "IPO", "ipo_md_beta_0125": "IPO-MD",
    "egpo_tau_1": "EGPO", "nash_prox_eta_125": "Prox",
    "mpo_refresh_100": "MPO"}
PAPER_NAMES = {**TABLE1_NAMES, **FOLLOWUP_NAMES}
RLHF_RUN = "gin_configs/runs/rlhf.gin"
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment gin file.

  Attributes:
    stem: file name without `.gin` (the run's folder name).
    name: policy name in tables (the paper's name when it has one).
    path: the gin file.
    uses_reward_model: built on runs/rlhf.gin (judged by the reward model).
  """

  stem: str
  name: str
  path: str
  uses_reward_model: bool


def include_chain(path: str) -> list[str]:
  """`path` and every file it includes, recursively (repo-relative paths).

  Raises:
    ConfigError: a file is missing or includes itself.
  """
  chain, stack = [], [path]
  while stack:
    current = stack.pop()
    resolved = main_lib.resolve_gin_file(current)
    if current in chain:
      raise ConfigError(f"gin include cycle at {current!r} (from {path!r}).")
    chain.append(current)
    with open(resolved, encoding="utf-8") as f:
      stack.extend(reversed(_INCLUDE.findall(f.read())))
  return chain


def _table_order(experiment: Experiment) -> tuple[int, str]:
  names = list(PAPER_NAMES.values())
  rank = names.index(experiment.name) if experiment.name in names else len(
      names)
  return rank, experiment.stem


def discover(folder: str, only: Sequence[str] = ()) -> list[Experiment]:
  """The experiments of `folder`, optionally filtered by globs.

  Table 1's experiments come first in the paper's column order (RLHF, SP,
  MD1…MD7, BR, EMA1, EMA2), then the follow-up baselines (IPO, IPO-MD,
  EGPO, Prox, MPO), then the others by file name.

  Args:
    folder: directory of experiment gin files.
    only: shell patterns on the file stem (e.g. 'nash_md_beta_*'); empty
      keeps all.

  Raises:
    ConfigError: no folder, or no experiment matches.
  """
  if not os.path.isdir(folder):
    raise ConfigError(f"--experiments {folder!r} is not a directory.")
  out = []
  for path in sorted(glob.glob(os.path.join(folder, "*.gin"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    if only and not any(fnmatch.fnmatch(stem, p) for p in only):
      continue
    out.append(Experiment(stem, PAPER_NAMES.get(stem, stem), path,
                          RLHF_RUN in include_chain(path)))
  if not out:
    raise ConfigError(f"No experiment gin files in {folder!r} match "
                      f"{list(only) or '*'}.")
  return sorted(out, key=_table_order)


def gin_string(value: str) -> str:
  """A path as a gin string literal (double quotes; none allowed inside)."""
  if '"' in value or "\\" in value:
    raise ConfigError(f"Path {value!r} may not contain quotes or "
                      "backslashes.")
  return f'"{value}"'


@dataclasses.dataclass(frozen=True)
class SweepPaths:
  """Inputs and outputs shared by every experiment of a sweep.

  Attributes:
    config_gins: model (and mesh) gin files added after each experiment.
    data_dir: DATA_DIR (tldr_3_filtered/ with the prompts).
    vocabulary: VOCABULARY (SentencePiece model).
    sft_dir: the SFT run (initial policy and reference μ).
    pm_dir: the preference-model run (Nash methods' judge).
    rm_dir: the reward-model run (RLHF's reward), may be None without RLHF.
    workdir: runs go to workdir/runs/<stem>, the report to workdir/report.
    bindings: extra `NAME=VALUE` gin bindings for every experiment.
  """

  config_gins: tuple[str, ...]
  data_dir: str
  vocabulary: str
  sft_dir: str
  pm_dir: str
  rm_dir: Optional[str]
  workdir: str
  bindings: tuple[str, ...] = ()

  def run_dir(self, experiment: Experiment) -> str:
    return os.path.join(self.workdir, "runs", experiment.stem)

  def train_steps(self) -> Optional[int]:
    """The last `TRAIN_STEPS=N` of `bindings`, or None when not given.

    Raises:
      ConfigError: a TRAIN_STEPS binding that is not an integer.
    """
    steps = None
    for binding in self.bindings:
      name, _, value = binding.partition("=")
      if name.strip() == "TRAIN_STEPS":
        try:
          steps = int(value.strip())
        except ValueError:
          raise ConfigError(f"--gin.{binding}: TRAIN_STEPS must be an "
                            "integer.") from None
    return steps


@dataclasses.dataclass(frozen=True)
class GinRun:
  """One run of the gin entry point: gin files, then `NAME=VALUE` bindings.

  `main.run_config(gin_files, bindings)` runs it in this process; `argv()`
  is the same run as `python -m nlhf_jax.main` arguments (for launchers).
  """

  gin_files: tuple[str, ...]
  bindings: tuple[str, ...] = ()

  def argv(self) -> list[str]:
    return ([f"--gin_file={f}" for f in self.gin_files] +
            [f"--gin.{b}" for b in self.bindings])


def experiment_run(experiment: Experiment, paths: SweepPaths) -> GinRun:
  """The entry-point run of one experiment.

  Raises:
    ConfigError: an RLHF experiment without `rm_dir`.
  """
  judge = paths.rm_dir if experiment.uses_reward_model else paths.pm_dir
  if judge is None:
    raise ConfigError(f"Experiment {experiment.stem} trains against the "
                      "reward model; pass --rm_dir.")
  return GinRun(
      (experiment.path, *paths.config_gins),
      (f"DATA_DIR={gin_string(paths.data_dir)}",
       f"VOCABULARY={gin_string(paths.vocabulary)}",
       f"SFT_DIR={gin_string(paths.sft_dir)}",
       f"JUDGE_DIR={gin_string(judge)}",
       f"WORKDIR={gin_string(paths.run_dir(experiment))}", *paths.bindings))


def experiment_argv(experiment: Experiment, paths: SweepPaths) -> list[str]:
  """Arguments of `python -m nlhf_jax.main` for one experiment."""
  return experiment_run(experiment, paths).argv()


def final_step(run_dir: str, train_steps: Optional[int] = None
               ) -> Optional[int]:
  """The step a run ends at: `train_steps` when given, else the
  `train.steps` its run spec recorded when it started (None: no spec yet,
  the run has not started)."""
  if train_steps is not None:
    return train_steps
  spec = run_spec.maybe_read(run_dir)
  return None if spec is None else spec.field("train", "steps")


def is_finished(run_dir: str, train_steps: Optional[int] = None) -> bool:
  """True when `run_dir` holds an intact checkpoint of its final step.

  The final step is `train_steps` when given (the sweep passes its
  `--gin.TRAIN_STEPS`), else the one the run's spec recorded (`final_step`):
  a run that never started is not finished, and a change of TRAIN_STEPS in
  an experiment's gin file after its run started is not seen unless the
  steps are given.
  """
  steps = final_step(run_dir, train_steps)
  if steps is None:
    return False
  step_dir = os.path.join(run_dir, checkpointing.CHECKPOINTS_SUBDIR,
                          str(steps))
  return checkpointing.verify_manifest(step_dir) is None


def run_experiment(run: GinRun, launcher: Optional[str] = None,
                   name: str = "run") -> Any:
  """Runs one entry-point run here (`main.run_config`) or via `launcher`.

  Raises:
    ConfigError: a configuration problem (in-process runs).
    RuntimeError: the launcher failed, or the run was preempted (SIGTERM;
      its checkpoint was saved, run again to resume).
  """
  if launcher:
    cmd = shlex.split(launcher) + [f"--name={name}", "--", *run.argv()]
    status = subprocess.run(cmd, check=False).returncode
    if status:
      raise RuntimeError(f"{shlex.join(cmd)} failed with status {status}.")
    return None
  result = main_lib.run_config(run.gin_files, run.bindings)
  if getattr(result, "preempted", False):
    raise RuntimeError(f"Run {name} was preempted at step {result.step}; "
                       "its checkpoint is saved: run again to resume.")
  return result


def run_sweep(experiments: Sequence[Experiment], paths: SweepPaths, *,
              launcher: Optional[str] = None, dry_run: bool = False,
              log: Callable[[str], None] = print) -> dict[str, float]:
  """Runs the experiments in sequence, skipping finished ones.

  Returns:
    {experiment stem: seconds spent} (0 for skipped ones).
  """
  seconds = {}
  prefix = (shlex.split(launcher) if launcher else
            [sys.executable, "-m", "nlhf_jax.main"])
  for i, experiment in enumerate(experiments, 1):
    run = experiment_run(experiment, paths)
    tag = f"[sweep {i}/{len(experiments)}] {experiment.name}"
    if dry_run:
      extra = [f"--name={experiment.stem}", "--"] if launcher else []
      log(shlex.join(prefix + extra + run.argv()))
      continue
    run_dir = paths.run_dir(experiment)
    steps = final_step(run_dir, paths.train_steps())
    if is_finished(run_dir, steps):
      log(f"{tag}: finished ({steps} steps), skipped.")
      seconds[experiment.stem] = 0.0
      continue
    what = f"{steps} steps" if steps else "TRAIN_STEPS of its gin files"
    log(f"{tag}: training {what} in {run_dir}")
    start = time.perf_counter()
    run_experiment(run, launcher, experiment.stem)
    seconds[experiment.stem] = time.perf_counter() - start
    log(f"{tag}: done in {seconds[experiment.stem]:.0f}s")
  return seconds


def evaluate_sweep(experiments: Sequence[Experiment], paths: SweepPaths, *,
                   num_prompts: int, split: str = "test",
                   p_star: bool = False,
                   log: Callable[[str], None] = print) -> str:
  """The tournament over the finished experiments; returns report.md.

  Models, data, response lengths and the judge's layout come from the run
  specs of the runs, the SFT run and the PM run (`evaluation.pipeline`).
  """
  finished = {}
  for experiment in experiments:
    if is_finished(paths.run_dir(experiment), paths.train_steps()):
      finished[experiment.name] = paths.run_dir(experiment)
    else:
      log(f"{experiment.name}: not finished, left out of the tournament.")
  if not finished:
    raise ConfigError("No finished experiment to evaluate.")
  return pipeline.report(
      finished, sft_dir=paths.sft_dir, pm_dir=paths.pm_dir,
      out_dir=os.path.join(paths.workdir, "report"),
      title="Sweep tournament", num_prompts=num_prompts, split=split,
      p_star=p_star, log=log,
      intro=f"Experiments from {len(finished)} runs under "
      f"{paths.workdir}/runs; P(column ≻ row).")


def _flags(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.sweep", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--experiments", default="gin_configs/experiments")
  parser.add_argument("--model_gin", action="append", required=True,
                      help="model gin file(s), e.g. models/small.gin")
  parser.add_argument("--mesh_gin", action="append", default=[])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--vocabulary", required=True)
  parser.add_argument("--sft_dir", required=True)
  parser.add_argument("--pm_dir", required=True)
  parser.add_argument("--rm_dir", default=None)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--only", action="append", default=[],
                      help="glob on experiment names (repeatable)")
  parser.add_argument("--launcher", default=None,
                      help="e.g. launch/run_on_pod.sh (per-worker runs)")
  parser.add_argument("--stage", choices=("all", "train", "tournament"),
                      default="all")
  parser.add_argument("--eval_prompts", type=int, default=500)
  parser.add_argument("--eval_split", default="test")
  parser.add_argument("--p_star", action="store_true",
                      help="also judge with the synthetic world's exact P*")
  parser.add_argument("--dry_run", action="store_true")
  flags, rest = parser.parse_known_args(argv)
  bad = [a for a in rest if not a.startswith("--gin.")]
  if bad:
    parser.error(f"unrecognized arguments: {' '.join(bad)}")
  return flags, [a[len("--gin."):] for a in rest]


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point (module docstring); returns 0.

  A ConfigError prints one line and exits with 2 (`nlhf_jax.cli`).
  """
  flags, bindings = _flags(sys.argv[1:] if argv is None else argv)
  with cli.exit_on_config_error():
    experiments = discover(flags.experiments, flags.only)
    paths = SweepPaths(
        config_gins=tuple(flags.model_gin + flags.mesh_gin),
        data_dir=flags.data_dir, vocabulary=flags.vocabulary,
        sft_dir=flags.sft_dir, pm_dir=flags.pm_dir, rm_dir=flags.rm_dir,
        workdir=flags.workdir, bindings=tuple(bindings))
    if flags.stage in ("all", "train"):
      run_sweep(experiments, paths, launcher=flags.launcher,
                dry_run=flags.dry_run)
    if flags.stage in ("all", "tournament") and not flags.dry_run:
      report = evaluate_sweep(experiments, paths,
                              num_prompts=flags.eval_prompts,
                              split=flags.eval_split, p_star=flags.p_star)
      print(f"Report: {report}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
