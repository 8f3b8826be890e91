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

skipping experiments whose final checkpoint (step TRAIN_STEPS) is already
intact, and resuming interrupted ones from their newest checkpoint (the
trainer does that by itself). Then the tournament: one summary per test
prompt from every finished experiment and from the SFT policy, judged pair
by pair by the learned preference model (and by the synthetic world's exact
P* with `--p_star`), written to `<workdir>/report/` (report.md, CSVs, heatmaps,
training curves). Table 1's rows get the paper's names (SP, MD1…MD6, BR,
EMA1, EMA2, RLHF; `TABLE1_NAMES`); other experiments keep their file names.

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
import glob
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from nlhf_jax import cli
from nlhf_jax import main as main_lib
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import metric_logs

# Experiment file stem -> the paper's Table 1 name (paper.md §6, §8.1).
TABLE1_NAMES = {
    "rlhf_tau_005": "RLHF", "nash_md_beta_0": "SP", "nash_md_beta_0125": "MD1",
    "nash_md_beta_025": "MD2", "nash_md_beta_0375": "MD3",
    "nash_md_beta_05": "MD4", "nash_md_beta_0625": "MD5",
    "nash_md_beta_075": "MD6", "nash_md_beta_0875": "MD7",
    "nash_md_beta_10": "BR", "nash_ema_decay_0999": "EMA1",
    "nash_ema_decay_09995": "EMA2"}
RLHF_RUN = "gin_configs/runs/rlhf.gin"
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.MULTILINE)
_SETTINGS_BINDINGS = """
from __gin__ import dynamic_registration
from nlhf_jax import sweep
from nlhf_jax.models import preference
sweep.resolved_settings:
  policy = %POLICY_MODEL
  preference = %PREFERENCE_MODEL
  data_dir = %DATA_DIR
  vocabulary = %VOCABULARY
  input_length = %INPUT_LENGTH
  response_length = %RESPONSE_LENGTH
  train_steps = %TRAIN_STEPS
  layout = @preference.LayoutConfig()
"""


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


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """What evaluation needs from a run's gin configuration."""

  policy: Any
  preference: Any
  data_dir: str
  vocabulary: str
  input_length: int
  response_length: int
  train_steps: int
  layout: Any


def resolved_settings(**kwargs: Any) -> dict[str, Any]:
  """Gin hook: returns its (gin-bound) keyword arguments."""
  return kwargs


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
  names = list(TABLE1_NAMES.values())
  rank = names.index(experiment.name) if experiment.name in names else len(
      names)
  return rank, experiment.stem


def discover(folder: str, only: Sequence[str] = ()) -> list[Experiment]:
  """The experiments of `folder`, optionally filtered by globs.

  Table 1's experiments come first in the paper's column order (RLHF, SP,
  MD1…MD7, BR, EMA1, EMA2), then the others by file name.

  Args:
    folder: directory of experiment gin files.
    only: shell patterns on the file stem (e.g. 'nash_md_beta_*'); empty
      keeps all.

  Raises:
    ConfigError: no folder, or no experiment matches.
  """
  if not os.path.isdir(folder):
    raise ConfigError(f"--experiments {folder!r} is not a directory.")
  import fnmatch  # pylint: disable=g-import-not-at-top
  out = []
  for path in sorted(glob.glob(os.path.join(folder, "*.gin"))):
    stem = os.path.splitext(os.path.basename(path))[0]
    if only and not any(fnmatch.fnmatch(stem, p) for p in only):
      continue
    out.append(Experiment(stem, TABLE1_NAMES.get(stem, stem), path,
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


def experiment_argv(experiment: Experiment, paths: SweepPaths) -> list[str]:
  """Arguments of `python -m nlhf_jax.main` for one experiment.

  Raises:
    ConfigError: an RLHF experiment without `rm_dir`.
  """
  judge = paths.rm_dir if experiment.uses_reward_model else paths.pm_dir
  if judge is None:
    raise ConfigError(f"Experiment {experiment.stem} trains against the "
                      "reward model; pass --rm_dir.")
  return ([f"--gin_file={experiment.path}"] +
          [f"--gin_file={g}" for g in paths.config_gins] +
          [f"--gin.DATA_DIR={gin_string(paths.data_dir)}",
           f"--gin.VOCABULARY={gin_string(paths.vocabulary)}",
           f"--gin.SFT_DIR={gin_string(paths.sft_dir)}",
           f"--gin.JUDGE_DIR={gin_string(judge)}",
           f"--gin.WORKDIR={gin_string(paths.run_dir(experiment))}"] +
          [f"--gin.{b}" for b in paths.bindings])


def settings_of(argv: Sequence[str]) -> RunSettings:
  """Resolves the gin configuration of an entry-point command line.

  Parses the same gin files and bindings as `nlhf_jax.main` (no job runs)
  and evaluates the models, lengths and preference layout.
  """
  bindings, rest = main_lib.split_gin_args(argv)
  files = [a.split("=", 1)[1] for a in rest if a.startswith("--gin_file=")]
  main_lib.parse_config(files, bindings + [_SETTINGS_BINDINGS])
  # The hook as gin registered it: under `python -m nlhf_jax.sweep` this
  # module is __main__, and gin's dynamic registration imports (and
  # registers) the function of the module `nlhf_jax.sweep` instead.
  hook = importlib.import_module("nlhf_jax.sweep").resolved_settings
  try:
    values = gin.get_configurable(hook)()
  finally:
    gin.clear_config()
  return RunSettings(**values)


def is_finished(run_dir: str, train_steps: int) -> bool:
  """True when `run_dir` holds an intact checkpoint of step `train_steps`."""
  from nlhf_jax import checkpointing  # pylint: disable=g-import-not-at-top
  step_dir = os.path.join(run_dir, checkpointing.CHECKPOINTS_SUBDIR,
                          str(train_steps))
  return checkpointing.verify_manifest(step_dir) is None


def run_experiment(argv: Sequence[str], launcher: Optional[str] = None,
                   name: str = "run") -> Any:
  """Runs one entry-point command here (in-process) or through `launcher`.

  Raises:
    RuntimeError: the launcher failed, or the run was preempted (SIGTERM;
      its checkpoint was saved, run again to resume).
  """
  if launcher:
    cmd = shlex.split(launcher) + [f"--name={name}", "--", *argv]
    status = subprocess.run(cmd, check=False).returncode
    if status:
      raise RuntimeError(f"{shlex.join(cmd)} failed with status {status}.")
    return None
  result = main_lib.main(list(argv))
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
    argv = experiment_argv(experiment, paths)
    tag = f"[sweep {i}/{len(experiments)}] {experiment.name}"
    if dry_run:
      extra = [f"--name={experiment.stem}", "--"] if launcher else []
      log(shlex.join(prefix + extra + argv))
      continue
    steps = settings_of(argv).train_steps
    if is_finished(paths.run_dir(experiment), steps):
      log(f"{tag}: finished ({steps} steps), skipped.")
      seconds[experiment.stem] = 0.0
      continue
    log(f"{tag}: training {steps} steps in {paths.run_dir(experiment)}")
    start = time.perf_counter()
    run_experiment(argv, launcher, experiment.stem)
    seconds[experiment.stem] = time.perf_counter() - start
    log(f"{tag}: done in {seconds[experiment.stem]:.0f}s")
  return seconds


SFT_NAME = "SFT"
CURVE_METRICS = ("preference_vs_opponent", "reward", "kl_to_reference",
                 "response_length", "policy_entropy")
JUDGE_TITLES = {"p_star": "the synthetic world's exact P* (annotator "
                          "population)",
                "preference_model": "the learned preference model"}


def read_train_metrics(path: str) -> list[metric_logs.Record]:
  """Training records of a run's metrics.jsonl (evaluation lines dropped)."""
  records = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        obj = json.loads(line)
        if obj.get("split", "train") == "train":
          records.append(metric_logs.parse_record(obj, f"{path}:{number}"))
  return records


def training_curves(runs: Mapping[str, str], out_dir: str,
                    metrics: Sequence[str] = CURVE_METRICS
                    ) -> dict[str, str]:
  """PNG curves of the metrics present in the runs' metrics.jsonl files.

  Args:
    runs: {policy name: run directory}; runs without a log are left out.
    out_dir: folder of the PNGs.
    metrics: metric names to plot when some run has them.

  Returns:
    {metric: PNG path}.
  """
  from nlhf_jax.evaluation import plots  # pylint: disable=g-import-not-at-top
  records = {}
  for name, run_dir in runs.items():
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
      records[name] = read_train_metrics(path)
  present = set(metric_logs.metric_names(records)) if records else set()
  wanted = [m for m in metrics if m in present]
  if not wanted:
    return {}
  return plots.plot_training_curves(records, out_dir, metrics=wanted)


def _file_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def generate_all(policies: Mapping[str, str], settings: RunSettings, *,
                 sft_dir: str, out_dir: str, prompts: Any, seed: int = 0,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
  """One summary per prompt from each policy, cached as JSON lines.

  Args:
    policies: {name: run directory} (the SFT run is the reference μ).
    settings: models, vocabulary and response length.
    sft_dir: the SFT run (reference for the KL estimates).
    out_dir: `out_dir/generations/<name>.jsonl` are written / reused.
    prompts: a `generation.PromptSet`.
    seed: sampling seed (shared by all policies).
    log: progress printer.

  Returns:
    {name: generation.Generations}.
  """
  from nlhf_jax.evaluation import generation  # pylint: disable=g-import-not-at-top
  reference = generation.restore_policy(sft_dir, settings.policy)
  out = {}
  for name, run_dir in policies.items():
    path = os.path.join(out_dir, "generations", f"{_file_name(name)}.jsonl")
    if os.path.exists(path):
      cached = generation.Generations.from_jsonl(path)
      if len(cached.summaries) == len(prompts.texts):
        log(f"  {name}: {path} exists, reused.")
        out[name] = cached
        continue
    start = time.perf_counter()
    params = (reference if os.path.abspath(run_dir) == os.path.abspath(
        sft_dir) else generation.restore_policy(run_dir, settings.policy))
    gens = generation.generate(
        settings.policy, params, reference, prompts.tokens,
        vocabulary=settings.vocabulary,
        max_decode_length=settings.response_length, seed=seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    gens.to_jsonl(path)
    out[name] = gens
    log(f"  {name}: {len(gens.summaries)} summaries in "
        f"{time.perf_counter() - start:.0f}s (mean length "
        f"{gens.lengths.mean():.1f} tokens, KL to SFT {gens.kl.mean():.2f})")
  return out


def make_judges(settings: RunSettings, pm_dir: str, p_star: bool
                ) -> dict[str, tuple[Any, bool]]:
  """{key: (judge, average_orders)}: the learned PM, and P* if asked.

  Both are exactly antisymmetric (the PM is symmetrised over presentation
  order by `preference_probability`, P* by construction), so the
  tournament's order averaging is only kept for P*, where it is free.
  """
  from nlhf_jax.data import jsonl_sources  # pylint: disable=g-import-not-at-top
  from nlhf_jax.models import preference  # pylint: disable=g-import-not-at-top
  from nlhf_jax.evaluation import generation  # pylint: disable=g-import-not-at-top
  from nlhf_jax.evaluation import judges  # pylint: disable=g-import-not-at-top
  data = jsonl_sources.SftJsonlSource(
      settings.data_dir, settings.vocabulary,
      input_length=settings.input_length,
      target_length=settings.response_length)
  params = generation.restore_scorer(pm_dir, settings.preference)
  score_fn = generation.preference_model_score_fn(
      settings.preference, params, data,
      preference.make_layout(settings.layout, data))
  out = {}
  if p_star:
    out["p_star"] = (judges.synthetic_judge(), True)
  out["preference_model"] = (judges.PreferenceModelJudge(
      score_fn, name="learned preference model"), False)
  return out


def evaluate(policies: Mapping[str, str], settings: RunSettings, *,
             sft_dir: str, pm_dir: str, out_dir: str, num_prompts: int,
             split: str = "test", p_star: bool = False, seed: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  """Generates, judges every pair and writes one report per judge.

  Args:
    policies: {name: run directory} in table order; "SFT" is added first.
    settings: the runs' resolved configuration (`settings_of`).
    sft_dir: the SFT run.
    pm_dir: the preference-model run (a judge).
    out_dir: generations/ and one folder per judge (report.md, CSVs, PNGs).
    num_prompts: prompts of `split` to use (0: all).
    split: 'test' (default) or 'valid'.
    p_star: also judge with the synthetic world's exact P*.
    seed: sampling seed.
    log: progress printer.

  Returns:
    {judge key: tournament.TournamentResult}.
  """
  from nlhf_jax.data import jsonl_sources  # pylint: disable=g-import-not-at-top
  from nlhf_jax.evaluation import generation  # pylint: disable=g-import-not-at-top
  from nlhf_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from nlhf_jax.evaluation import tournament  # pylint: disable=g-import-not-at-top
  data = jsonl_sources.SftJsonlSource(settings.data_dir, settings.vocabulary,
                                      input_length=settings.input_length)
  prompts = generation.load_prompts(data, split, num_prompts)
  everyone = {SFT_NAME: sft_dir, **policies}
  log(f"Generating {len(prompts.texts)} summaries per policy ({split} "
      "split, temperature 1).")
  gens = generate_all(everyone, settings, sft_dir=sft_dir, out_dir=out_dir,
                      prompts=prompts, seed=seed, log=log)
  results = {}
  counter = lambda s: len(data.encode(s))
  for key, (judge, average) in make_judges(settings, pm_dir, p_star).items():
    start = time.perf_counter()
    result = tournament.run_tournament(
        prompts.texts, {n: gens[n].summaries for n in everyone}, judge,
        references=prompts.references, baseline=SFT_NAME,
        kl={n: gens[n].kl for n in everyone}, token_counter=counter,
        average_orders=average, seed=seed)
    report.write_report(os.path.join(out_dir, key), result,
                        title=f"Tournament judged by {JUDGE_TITLES[key]}")
    results[key] = result
    log(f"  tournament judged by {JUDGE_TITLES[key]}: "
        f"{time.perf_counter() - start:.0f}s")
  return results


def write_summary(out_dir: str, results: Mapping[str, Any], *, title: str,
                  intro: str = "", curves: Optional[Mapping[str, str]] = None,
                  notes: str = "") -> str:
  """Writes `out_dir/report.md` with every judge's tables and figures.

  Args:
    out_dir: folder holding the per-judge report folders (`evaluate`).
    results: {judge key: TournamentResult}.
    title: heading.
    intro: Markdown before the tables.
    curves: {metric: PNG path} of the training curves.
    notes: Markdown after the tables.

  Returns:
    The path of report.md.
  """
  from nlhf_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  parts = [f"# {title}", "", intro.strip(), ""]
  for key, result in results.items():
    parts += [f"## Judged by {JUDGE_TITLES.get(key, key)}", "",
              report.win_rate_markdown(result),
              f"![heatmap]({key}/win_rates.png)", "",
              report.policy_stats_markdown(result),
              f"CSV: [{key}/win_rates.csv]({key}/win_rates.csv), "
              f"[{key}/win_rate_cells.csv]({key}/win_rate_cells.csv), "
              f"[{key}/policy_stats.csv]({key}/policy_stats.csv).", ""]
  if curves:
    parts += ["## Training curves", ""]
    parts += [f"![{m}]({os.path.relpath(p, out_dir)})" for m, p in
              curves.items()] + [""]
  if notes.strip():
    parts += ["## Notes", "", notes.strip(), ""]
  path = os.path.join(out_dir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return path


def evaluate_sweep(experiments: Sequence[Experiment], paths: SweepPaths, *,
                   num_prompts: int, split: str = "test",
                   p_star: bool = False,
                   log: Callable[[str], None] = print) -> str:
  """The tournament over the finished experiments; returns report.md."""
  finished, settings = {}, None
  for experiment in experiments:
    run_settings = settings_of(experiment_argv(experiment, paths))
    if is_finished(paths.run_dir(experiment), run_settings.train_steps):
      finished[experiment.name] = paths.run_dir(experiment)
      settings = settings or run_settings
    else:
      log(f"{experiment.name}: not finished, left out of the tournament.")
  if settings is None:
    raise ConfigError("No finished experiment to evaluate.")
  out_dir = os.path.join(paths.workdir, "report")
  results = evaluate(finished, settings, sft_dir=paths.sft_dir,
                     pm_dir=paths.pm_dir, out_dir=out_dir,
                     num_prompts=num_prompts, split=split, p_star=p_star,
                     log=log)
  curves = training_curves(finished, os.path.join(out_dir, "curves"))
  return write_summary(out_dir, results, title="Sweep tournament",
                       intro=f"Experiments from {len(finished)} runs under "
                       f"{paths.workdir}/runs; P(column ≻ row).",
                       curves=curves)


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
