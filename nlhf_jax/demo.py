r"""End-to-end NLHF on the synthetic TL;DR world: `make demo`.

  python -m nlhf_jax.demo --out demo_out [--quick] [--steps_scale 0.5] [--seed 1]
      [--methods MD1,SP] [--eval_prompts 300]

Stages, in order (each prints its name, progress and duration):

  world      the synthetic world (posts, comparisons, hidden annotators)
  vocab      a SentencePiece vocabulary trained on its posts
  sft        SFT of a tiny T5 on the reference summaries (policy init and μ)
  pm, rm     the pairwise preference model and the Bradley–Terry reward model
  RLHF, SP, MD1, MD4, BR, EMA1
             the online runs, each the paper's experiment gin file
             (gin_configs/experiments/) with the demo's small sizes
  tournament one sampled summary per test prompt from every policy and SFT,
             every pair judged by the exact P* and by the learned preference
             model, 95% Clopper–Pearson intervals
  report     report.md with both tables, heatmaps, CSVs, training curves and
             a side-by-side with the paper's Table 1

Every training stage goes through the gin entry point (`nlhf_jax.main`), as
a user would run it. Resuming: a stage whose output is complete (the
world's files, the vocabulary, a run's final checkpoint, a policy's
generations) is skipped, and an interrupted training run restarts from its
newest checkpoint, so re-running the same command continues where it
stopped. The settings are recorded in `<out>/demo_state.json`; re-running
with other settings into the same folder is refused.

`--quick` shrinks everything (tiny world, a few steps per stage) for the
end-to-end test; `--steps_scale` multiplies every stage's step count.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

from nlhf_jax import cli
from nlhf_jax import errors
from nlhf_jax import main as main_lib
from nlhf_jax import sweep
from nlhf_jax.errors import ConfigError

STATE_FILE = "demo_state.json"
TINY_GIN = "gin_configs/models/tiny.gin"
# The demo runs on CPU: its XLA:CPU speedups (docs/cpu_speedups.md).
CPU_GIN = "gin_configs/backends/cpu.gin"
STAGE_TEXT = {
    "world": "generating the synthetic world",
    "vocab": "training the SentencePiece vocabulary",
    "sft": "supervised fine-tuning (initial policy and reference μ)",
    "pm": "training the pairwise preference model",
    "rm": "training the Bradley–Terry reward model",
    "report": "generating summaries, tournaments (P* and learned PM), "
              "report"}
# Paper Table 1 (PaLM 2 judge; paper.md §8.1): P*(policy ≻ SFT), P*(· ≻ RLHF).
PAPER_VS_SFT = {"RLHF": 0.990, "SP": 0.983, "MD1": 0.982, "MD4": 0.985,
                "BR": 0.943, "EMA1": 0.970}
PAPER_VS_RLHF = {"SP": 0.489, "MD1": 0.598, "MD4": 0.501, "BR": 0.148,
                 "EMA1": 0.468}


@dataclasses.dataclass(frozen=True)
class Method:
  """One online run of the demo.

  Attributes:
    name: the policy's name in the tables (the paper's).
    experiment: file stem in gin_configs/experiments/.
  """

  name: str
  experiment: str


METHODS = (Method("RLHF", "rlhf_tau_005"), Method("SP", "nash_md_beta_0"),
           Method("MD1", "nash_md_beta_0125"), Method("MD4", "nash_md_beta_05"),
           Method("BR", "nash_md_beta_10"),
           Method("EMA1", "nash_ema_decay_0999"))


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  """Sizes of the demo (defaults: the full demo, < 20 min on 2 CPU cores).

  Attributes:
    seed: seed of the world, initialisations and sampling.
    world_size: posts (5% are test posts: the tournament's prompts).
    vocab_size: SentencePiece pieces (also the model's vocabulary).
    d_model, num_heads, d_ff, layers: the tiny T5 (d_kv 16; encoder and
      decoder both have `layers` layers); policy, PM and RM share it.
    input_length: prompt tokens (OpenAI's truncation beyond).
    target_length: summary tokens in SFT / comparison data.
    response_length: sampled response tokens (training and evaluation).
    packed_length: the preference model's input [prompt; " Summary 1:" y;
      " Summary 2:" y'; EOS] (the prompt is cut to fit); the reward model
      gets input_length + target_length + 8.
    sft_steps, pm_steps, rm_steps, online_steps: optimizer steps per
      stage (the pairwise PM learns more slowly than the single-summary RM).
    sft_batch, scorer_batch, online_batch: batch sizes.
    sft_lr, scorer_lr, online_lr: Adafactor relative step sizes.
    ema_time_constant: Nash-EMA's 1 / (1 − decay) as a fraction of the run
      (paper: 0.999 over 10k steps, i.e. 0.1).
    eval_prompts: test prompts in the tournament (0: all).
    methods: names of the online runs to train and compare (`METHODS`).
    log_every: console / metrics interval.
    checkpoints_per_run: checkpoints saved per training run (resume points;
      the last one at the final step).
  """

  seed: int = 0
  world_size: int = 6000
  vocab_size: int = 640
  d_model: int = 32
  num_heads: int = 2
  d_ff: int = 64
  layers: int = 2
  input_length: int = 192
  target_length: int = 40
  response_length: int = 32
  packed_length: int = 256
  sft_steps: int = 500
  pm_steps: int = 1000
  rm_steps: int = 400
  online_steps: int = 150
  sft_batch: int = 32
  scorer_batch: int = 32
  online_batch: int = 32
  sft_lr: float = 1e-2
  scorer_lr: float = 1e-2
  online_lr: float = 3e-4
  ema_time_constant: float = 0.1
  eval_prompts: int = 300
  log_every: int = 25
  checkpoints_per_run: int = 4
  methods: tuple[str, ...] = tuple(m.name for m in METHODS)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name == "seed" or field.name == "methods":
        continue  # Any seed; the methods are checked below.
      if field.name == "eval_prompts":
        errors.check_non_negative(self, field.name, value, integer=True,
                                  hint="0: all")
      else:
        errors.check_positive(self, field.name, value)
    width = max(self.target_length, self.response_length)
    if self.packed_length < 2 * width + 16:
      raise ConfigError(
          f"DemoConfig.packed_length {self.packed_length} cannot hold two "
          f"summaries of {width} tokens with their markers (needs >= "
          f"{2 * width + 16}).")
    known = [m.name for m in METHODS]
    unknown = [m for m in self.methods if m not in known]
    if unknown or not self.methods:
      raise ConfigError(f"Unknown or no methods {list(self.methods)}; "
                        f"known: {known}.")

  def scaled(self, factor: float) -> "DemoConfig":
    """The same demo with every step count multiplied by `factor` (> 0)."""
    if not factor > 0:
      raise ConfigError(f"--steps_scale must be > 0, got {factor}.")
    steps = lambda n: max(1, int(round(n * factor)))
    return dataclasses.replace(
        self, sft_steps=steps(self.sft_steps),
        pm_steps=steps(self.pm_steps), rm_steps=steps(self.rm_steps),
        online_steps=steps(self.online_steps))

  @property
  def ema_decay(self) -> float:
    return 1.0 - 1.0 / max(self.ema_time_constant * self.online_steps, 1.0)


QUICK = DemoConfig(world_size=400, vocab_size=384, d_model=16, num_heads=1,
                   d_ff=32, layers=1, input_length=96, target_length=24,
                   response_length=12, packed_length=144, sft_steps=4,
                   pm_steps=4, rm_steps=4, online_steps=3, sft_batch=8,
                   scorer_batch=8, online_batch=8, eval_prompts=0,
                   log_every=2, checkpoints_per_run=1)


class Demo:
  """The pipeline's stages over one output folder (module docstring)."""

  def __init__(self, out: str, config: DemoConfig,
               log: Optional[Callable[[str], None]] = None):
    self.out = os.path.abspath(out)
    self.config = config
    self.log = log or functools.partial(print, flush=True)
    self.world = os.path.join(self.out, "world")
    self.vocabulary = os.path.join(self.world, f"sp{config.vocab_size}.model")
    self.report_dir = os.path.join(self.out, "report")
    self.state = self._load_state()

  # Bookkeeping ------------------------------------------------------------

  def _state_path(self) -> str:
    return os.path.join(self.out, STATE_FILE)

  def _load_state(self) -> dict[str, Any]:
    wanted = json.loads(json.dumps(dataclasses.asdict(self.config)))
    path = self._state_path()
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        state = json.load(f)
      if state.get("config") != wanted:
        changed = sorted(k for k in wanted
                         if state.get("config", {}).get(k) != wanted[k])
        raise ConfigError(
            f"{self.out} holds a demo run with other settings (differing: "
            f"{changed}); use another --out or delete that folder.")
      return state
    os.makedirs(self.out, exist_ok=True)
    state = {"config": wanted, "seconds": {}}
    self._save_state(state)
    return state

  def _save_state(self, state: dict[str, Any]) -> None:
    tmp = self._state_path() + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(state, f, indent=1)
    os.replace(tmp, self._state_path())

  def run_dir(self, name: str) -> str:
    return os.path.join(self.out, "runs", name)

  # Entry-point arguments ---------------------------------------------------

  def model_args(self) -> list[str]:
    """The tiny model and CPU backend files, then the demo's sizes."""
    c = self.config
    values = (("vocab_size", c.vocab_size), ("d_model", c.d_model),
              ("num_heads", c.num_heads), ("d_kv", 16), ("d_ff", c.d_ff),
              ("num_encoder_layers", c.layers),
              ("num_decoder_layers", c.layers))
    return [f"--gin_file={TINY_GIN}", f"--gin_file={CPU_GIN}"] + [
        f"--gin.t5_tiny/t5.T5Config.{k}={v}" for k, v in values]

  def data_args(self) -> list[str]:
    c = self.config
    return [f"--gin.DATA_DIR={sweep.gin_string(self.world)}",
            f"--gin.VOCABULARY={sweep.gin_string(self.vocabulary)}",
            f"--gin.INPUT_LENGTH={c.input_length}",
            f"--gin.TARGET_LENGTH={c.target_length}",
            f"--gin.LOG_EVERY={c.log_every}", f"--gin.SEED={c.seed}"]

  def packed_length(self) -> int:
    """Preference-model input length (prompt cut to fit two summaries)."""
    return self.config.packed_length

  def supervised_argv(self, run: str, gin_file: str, steps: int, batch: int,
                      lr: float, extra: Sequence[str] = ()) -> list[str]:
    return ([f"--gin_file=gin_configs/runs/{gin_file}", *self.model_args(),
             *self.data_args(),
             f"--gin.WORKDIR={sweep.gin_string(self.run_dir(run))}",
             f"--gin.TRAIN_STEPS={steps}", f"--gin.BATCH_SIZE={batch}",
             f"--gin.LEARNING_RATE={lr}", "--gin.EVAL_EVERY=0",
             f"--gin.CHECKPOINT_EVERY={self.checkpoint_every(steps)}"] +
            list(extra))

  def checkpoint_every(self, steps: int) -> int:
    """Checkpoints `checkpoints_per_run` times per run (the last at the end)."""
    return max(steps // self.config.checkpoints_per_run, 1)

  def sweep_paths(self) -> sweep.SweepPaths:
    """The online runs as a sweep over the paper's experiment files."""
    c = self.config
    bindings = (
        f"TRAIN_STEPS={c.online_steps}", f"BATCH_SIZE={c.online_batch}",
        f"LEARNING_RATE={c.online_lr}", f"RESPONSE_LENGTH={c.response_length}",
        f"PACKED_LENGTH={self.packed_length()}",
        f"CHECKPOINT_EVERY={self.checkpoint_every(c.online_steps)}",
        f"EMA_DECAY={self.config.ema_decay!r}")
    files = [a for a in self.model_args() if a.startswith("--gin_file=")]
    model = [a[len("--gin_file="):] for a in files]
    extra = [a[len("--gin."):] for a in self.model_args()[len(files):] +
             self.data_args()[2:]]
    return sweep.SweepPaths(
        config_gins=tuple(model), data_dir=self.world,
        vocabulary=self.vocabulary, sft_dir=self.run_dir("sft"),
        pm_dir=self.run_dir("pm"), rm_dir=self.run_dir("rm"),
        workdir=self.out, bindings=tuple(extra) + bindings)

  def experiments(self) -> list[sweep.Experiment]:
    by_stem = {e.stem: e for e in sweep.discover(
        os.path.join(main_lib.REPO_ROOT, "gin_configs", "experiments"))}
    return [dataclasses.replace(by_stem[m.experiment], name=m.name)
            for m in METHODS if m.name in self.config.methods]

  # Stages ------------------------------------------------------------------

  def make_world(self) -> None:
    from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    result = synthetic.generate(self.world, seed=self.config.seed,
                                size=self.config.world_size)
    self.log(f"  posts {result.posts_per_split}, comparisons "
             f"{result.comparisons_per_split}")
    with open(os.path.join(self.world, ".complete"), "w",
              encoding="utf-8") as f:
      f.write("ok\n")

  def make_vocab(self) -> None:
    from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
    prefix = self.vocabulary[:-len(".model")]
    vocab.train_from_data_dir(self.world, prefix, self.config.vocab_size)

  def train(self, argv: Sequence[str]) -> None:
    sweep.run_experiment(argv, name=os.path.basename(
        argv[0]).replace(".gin", ""))

  def supervised_stages(self) -> list[tuple[str, str, Sequence[str]]]:
    """(stage name, run directory, entry-point arguments)."""
    c = self.config
    pm_extra = [f"--gin.PACKED_LENGTH={self.packed_length()}",
                "--gin.WITH_P_STAR=True"]
    rm_extra = [f"--gin.PACKED_LENGTH="
                f"{c.input_length + c.target_length + 8}",
                "--gin.WITH_P_STAR=True"]
    return [
        ("sft", "sft", self.supervised_argv(
            "sft", "sft.gin", c.sft_steps, c.sft_batch, c.sft_lr)),
        ("pm", "pm", self.supervised_argv(
            "pm", "preference_model.gin", c.pm_steps, c.scorer_batch,
            c.scorer_lr, pm_extra)),
        ("rm", "rm", self.supervised_argv(
            "rm", "reward_model.gin", c.rm_steps, c.scorer_batch,
            c.scorer_lr, rm_extra))]

  def stages(self) -> list[tuple[str, Callable[[], bool], Callable[[], Any]]]:
    """(name, is_complete, run) for every stage, in order."""
    c = self.config
    out = [("world", lambda: os.path.exists(
        os.path.join(self.world, ".complete")), self.make_world),
           ("vocab", lambda: os.path.exists(self.vocabulary),
            self.make_vocab)]
    steps = {"sft": c.sft_steps, "pm": c.pm_steps, "rm": c.rm_steps}
    for name, run, argv in self.supervised_stages():
      out.append((name, functools.partial(
          sweep.is_finished, self.run_dir(run), steps[name]),
                  functools.partial(self.train, argv)))
    paths = self.sweep_paths()
    for experiment in self.experiments():
      argv = sweep.experiment_argv(experiment, paths)
      out.append((experiment.name, functools.partial(
          sweep.is_finished, paths.run_dir(experiment), c.online_steps),
                  functools.partial(sweep.run_experiment, argv,
                                    name=experiment.stem)))
    out.append(("report", lambda: os.path.exists(
        os.path.join(self.report_dir, "report.md")), self.make_report))
    return out

  def policies(self) -> dict[str, str]:
    paths = self.sweep_paths()
    return {e.name: paths.run_dir(e) for e in self.experiments()}

  def make_report(self) -> str:
    paths = self.sweep_paths()
    # Any online run gives the models, lengths and the PM's layout.
    settings = sweep.settings_of(sweep.experiment_argv(
        self.experiments()[0], paths))
    results = sweep.evaluate(
        self.policies(), settings, sft_dir=paths.sft_dir,
        pm_dir=paths.pm_dir, out_dir=self.report_dir,
        num_prompts=self.config.eval_prompts, p_star=True,
        seed=self.config.seed, log=self.log)
    curves = sweep.training_curves(
        {"SFT": self.run_dir("sft"), **self.policies()},
        os.path.join(self.report_dir, "curves"),
        metrics=("loss", *sweep.CURVE_METRICS))
    return sweep.write_summary(
        self.report_dir, results, title="NLHF demo on the synthetic TL;DR "
        "world", intro=intro(self), curves=curves,
        notes=paper_comparison(results))

  def run(self) -> str:
    """Runs (or skips) every stage; returns the report path."""
    stages = self.stages()
    total = time.perf_counter()
    for i, (name, complete, run) in enumerate(stages, 1):
      tag = f"[demo {i}/{len(stages)}] {name}"
      if complete():
        self.log(f"{tag}: complete, skipped.")
        continue
      self.log(f"{tag}: {STAGE_TEXT.get(name, 'online run')} ...")
      start = time.perf_counter()
      run()
      seconds = time.perf_counter() - start
      self.state["seconds"][name] = round(seconds, 1)
      self._save_state(self.state)
      self.log(f"{tag}: done in {_duration(seconds)} (elapsed "
               f"{_duration(time.perf_counter() - total)})")
    report = os.path.join(self.report_dir, "report.md")
    self.log(f"Report: {report}")
    return report


def _duration(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _last_eval(run_dir: str) -> dict[str, float]:
  """The last evaluation record of a run's metrics.jsonl ({} if none)."""
  from nlhf_jax import metrics  # pylint: disable=g-import-not-at-top
  if not os.path.exists(os.path.join(run_dir, metrics.METRICS_FILE)):
    return {}
  records = metrics.read_metrics(run_dir, "eval")
  return records[-1] if records else {}


def intro(demo: Demo) -> str:
  """Settings, machine, stage timings and PM/RM quality, as Markdown."""
  import platform  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  c = demo.config
  seconds = demo.state["seconds"]
  lines = [
      f"Tiny T5 (d_model {c.d_model}, {c.layers}+{c.layers} layers, "
      f"{c.num_heads} heads, d_ff {c.d_ff}, vocabulary {c.vocab_size}) for "
      f"the policy, the preference model (PM) and the reward model (RM). "
      f"World: {c.world_size} posts (seed {c.seed}). Steps: SFT "
      f"{c.sft_steps} (batch {c.sft_batch}), PM {c.pm_steps}, RM {c.rm_steps} "
      f"(batch {c.scorer_batch}), online runs {c.online_steps} each "
      f"(batch {c.online_batch}, Adafactor relative lr {c.online_lr}, "
      f"responses ≤ {c.response_length} tokens at temperature 1). "
      f"τ = 0.008 (Nash runs), 0.05 (RLHF); EMA1 decay "
      f"{c.ema_decay:.4f} (time constant {c.ema_time_constant:.0%} of the "
      "run, as 0.999 over the paper's 10k steps).", "",
      f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, "
      f"{jax.devices()[0].platform} ({len(jax.devices())} device(s)), "
      f"JAX {jax.__version__}; load average at report time "
      f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
      "| stage | " + " | ".join(seconds) + " | total |",
      "|---" * (len(seconds) + 2) + "|",
      "| seconds | " + " | ".join(f"{v:.0f}" for v in seconds.values()) +
      f" | {sum(seconds.values()):.0f} |", ""]
  for run, label in (("pm", "preference model"), ("rm", "reward model")):
    ev = _last_eval(demo.run_dir(run))
    if ev:
      lines.append(
          f"- {label}: validation accuracy {ev.get('accuracy', math.nan):.3f}"
          f" on {ev.get('examples', 0):.0f} held-out comparisons, agreement "
          f"with the Bayes decision 1[P* > ½] "
          f"{ev.get('bayes_agreement', math.nan):.3f} (label ceiling "
          f"E[max(P*, 1−P*)] = {ev.get('ceiling', math.nan):.3f}).")
  return "\n".join(lines)


def _cell(result: Any, row: str, column: str) -> str:
  if row not in result.policies or column not in result.policies:
    return "–"
  cell = result.cell(row, column)
  return f"{cell.win_rate:.3f} [{cell.ci_low:.3f}, {cell.ci_high:.3f}]"


def paper_comparison(results: dict[str, Any]) -> str:
  """Side-by-side with the paper's Table 1 rows vs SFT and vs RLHF."""
  star = results.get("p_star")
  pm = results.get("preference_model")
  lines = ["Win rates of each policy (column) over SFT and over RLHF, here "
           "(exact P*, and the learned PM) and in the paper (PaLM 2 judge, "
           "T5-L policies, 10k steps; paper.md §8.1).", "",
           "| policy | P*(· ≻ SFT) | PM(· ≻ SFT) | paper (· ≻ SFT) | "
           "P*(· ≻ RLHF) | PM(· ≻ RLHF) | paper (· ≻ RLHF) |",
           "|---|---|---|---|---|---|---|"]
  names = star.policies if star is not None else pm.policies
  for name in (n for n in names if n != "SFT"):
    paper_sft = PAPER_VS_SFT.get(name)
    paper_rlhf = PAPER_VS_RLHF.get(name)
    lines.append(
        f"| {name} | {_cell(star, 'SFT', name) if star else '–'} | "
        f"{_cell(pm, 'SFT', name) if pm else '–'} | "
        f"{paper_sft if paper_sft is not None else '–'} | "
        f"{_cell(star, 'RLHF', name) if star and name != 'RLHF' else '–'} |"
        f" {_cell(pm, 'RLHF', name) if pm and name != 'RLHF' else '–'} | "
        f"{paper_rlhf if paper_rlhf is not None else '–'} |")
  if star is not None:
    beat = [n for n in star.policies if n != "SFT" and
            star.cell("SFT", n).ci_low > 0.5]
    lose = [n for n in star.policies if n != "SFT" and
            star.cell("SFT", n).ci_high < 0.5]
    lines += ["", f"Under P*, {', '.join(beat) or 'no policy'} beat SFT "
              f"(95% interval above ½); {', '.join(lose) or 'none'} lose to "
              "it (interval below ½). In the paper every method beats SFT "
              "with ≥ 0.94."]
  return "\n".join(lines)


def _flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.demo", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="demo_out", help="output folder")
  parser.add_argument("--quick", action="store_true",
                      help="tiny world, a few steps per stage (tests)")
  parser.add_argument("--steps_scale", type=float, default=1.0,
                      help="multiply every stage's step count")
  parser.add_argument("--seed", type=int, default=None,
                      help="seed of the world, initialisations and sampling "
                      "(default 0)")
  parser.add_argument("--eval_prompts", type=int, default=None,
                      help="test prompts in the tournament (0: all)")
  parser.add_argument("--methods", default=None,
                      help="comma-separated subset of "
                      f"{','.join(m.name for m in METHODS)}")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point; returns 0.

  A ConfigError (e.g. another run's settings in `--out`) prints one line and
  exits with 2 (`nlhf_jax.cli`).
  """
  flags = _flags(sys.argv[1:] if argv is None else argv)
  with cli.exit_on_config_error():
    config = (QUICK if flags.quick else DemoConfig()).scaled(
        flags.steps_scale)
    if flags.seed is not None:
      config = dataclasses.replace(config, seed=flags.seed)
    if flags.eval_prompts is not None:
      config = dataclasses.replace(config, eval_prompts=flags.eval_prompts)
    if flags.methods is not None:
      config = dataclasses.replace(config, methods=tuple(
          m.strip() for m in flags.methods.split(",") if m.strip()))
    Demo(flags.out, config).run()
  return 0


if __name__ == "__main__":
  sys.exit(main())
