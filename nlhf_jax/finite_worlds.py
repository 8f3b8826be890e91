r"""Deep runs against exact targets on the finite-answer worlds.

  python -m nlhf_jax.finite_worlds --out worlds_out [--worlds majority,iia]
      [--seeds 0,1] [--methods RLHF,SP,MD1] [--steps 400] [--tau 0.05]
      [--quick]

For each world (`finite_world.population.READY`) and seed: SFT of a tiny T5
on the world's answers (uniform over each prompt's offered answers: the
reference μ), then every method through the gin entry point with the exact
judge (gin_configs/worlds/), each evaluated every `--eval_every` steps
against its exact target (`finite_world.evaluation`). Beside each deep run,
the same algorithm's exact tabular dynamics on the same game (from the
deep reference's outcome distribution μ): the softmax policy gradient with
exact expected gradients (`tabular.policy_gradient`).

Writes `<out>/results.json`, `<out>/table.md` (mean over seeds, with the
range) and `<out>/kl_to_nash_<world>.png`; runs live in
`<out>/<world>/seed<s>/<method>/`. A finished run is skipped, an
interrupted one resumes, so re-running the command continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional, Sequence

from matplotlib import figure as figure_lib
from matplotlib.backends import backend_agg
import numpy as np

from nlhf_jax import cli
from nlhf_jax import metrics
from nlhf_jax import sweep
from nlhf_jax.errors import ConfigError
from nlhf_jax.finite_world import population
from nlhf_jax.finite_world import targets
from nlhf_jax.tabular import anchored
from nlhf_jax.tabular import ipo
from nlhf_jax.tabular import policy_gradient
from nlhf_jax.tabular import simplex

WORLD_GIN = ("gin_configs/models/tiny.gin",
             "gin_configs/worlds/finite_world.gin")
TABULAR_LEARNING_RATE = 1.0


@dataclasses.dataclass(frozen=True)
class Method:
  """One online method: its run file, judge file, bindings, tabular form.

  Attributes:
    name: label in tables.
    run: file in gin_configs/runs/.
    judge: file in gin_configs/worlds/.
    bindings: extra gin bindings.
    beta: the mixture β of the tabular form: Nash-MD-PG's opponent, or
      with `regression` the IPO sampler (None: not a mixture method).
    regression: IPO's regression loss; its tabular form is
      `tabular.ipo.ipo_md_descent` at TABULAR_LEARNING_RATE·τ/4, the step
      size at which β = 0 equals Nash-MD-PG's self-play ascent.
    extragradient: with `regression`, EGPO's extragradient on that loss
      (`tabular.ipo.egpo_extragradient`, same step size).
    anchor: 'prox' (Nash Prox) or 'magnet' (MPO): the policy-gradient
      dynamics of `tabular.anchored` at TABULAR_LEARNING_RATE, with the
      Settings' η, inner steps and refresh period.
    learned: judged by the learned preference model (RLHF: reward model)
      trained on the world's comparisons, instead of the exact judge.
  """

  name: str
  run: str
  judge: str = "exact_p_star.gin"
  bindings: tuple[str, ...] = ()
  beta: Optional[float] = None
  regression: bool = False
  extragradient: bool = False
  anchor: Optional[str] = None
  learned: bool = False

  @property
  def scorer(self) -> str:
    """The learned judge's run: 'rm' for RLHF, else 'pm'."""
    return "rm" if self.judge == "exact_reward.gin" else "pm"

  def with_learned_judge(self) -> "Method":
    """The same method against the learned PM / RM ("MD1-PM", "RLHF-RM")."""
    return dataclasses.replace(self, name=f"{self.name}-{self.scorer.upper()}",
                               learned=True)


METHODS = (
    Method("RLHF", "rlhf.gin", judge="exact_reward.gin"),
    Method("SP", "nash_md.gin", bindings=("BETA=0.0",), beta=0.0),
    Method("MD1", "nash_md.gin", bindings=("BETA=0.125",), beta=0.125),
    Method("MD4", "nash_md.gin", bindings=("BETA=0.5",), beta=0.5),
    Method("BR", "nash_md.gin", bindings=("BETA=1.0",), beta=1.0),
    Method("EMA1", "nash_ema.gin"),
    Method("IPO", "online_ipo.gin", beta=0.0, regression=True),
    Method("IPO-MD", "ipo_md.gin", bindings=("BETA=0.125",), beta=0.125,
           regression=True),
    Method("EGPO", "egpo.gin", beta=0.0, regression=True, extragradient=True),
    Method("Prox", "nash_prox.gin", anchor="prox"),
    Method("MPO", "mpo.gin", anchor="magnet"),
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes and hyper-parameters of every run (the defaults are the README's).

  Attributes:
    steps: online steps per run.
    sft_steps: SFT steps.
    tau: the KL weight τ of every method.
    learning_rate: Adafactor relative step size of the online runs (no
      momentum, so last iterates are not pushed around cycles).
    batch: online batch (prompts per step).
    eval_every: steps between exact evaluations.
    ema_decay: Nash-EMA-PG's decay.
    prox_eta: Nash Prox's proximal step size η (KL weight 1/η to π_k).
    prox_inner_steps: Nash Prox's gradient steps per proximal step.
    mpo_refresh_every: MPO's steps between magnet refreshes.
    judge_steps: steps of the learned preference / reward model.
    d_model: the tiny T5's width (heads of 16, d_ff 2 d_model).
    layers: its encoder and decoder layers each.
  """

  steps: int = 400
  sft_steps: int = 200
  tau: float = 0.05
  learning_rate: float = 3e-3
  batch: int = 32
  eval_every: int = 20
  ema_decay: float = 0.95
  prox_eta: float = 20.0
  prox_inner_steps: int = 10
  mpo_refresh_every: int = 50
  judge_steps: int = 600
  d_model: int = 64
  layers: int = 2

  def __post_init__(self):
    for name in ("steps", "sft_steps", "batch", "eval_every", "judge_steps",
                 "d_model", "layers", "prox_inner_steps",
                 "mpo_refresh_every"):
      if getattr(self, name) < 1:
        raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if not (self.tau > 0 and self.learning_rate > 0 and self.prox_eta > 0):
      raise ConfigError("--tau, --learning_rate and --prox_eta must be > 0")


QUICK = Settings(steps=6, sft_steps=6, batch=8, eval_every=3, judge_steps=4,
                 d_model=16, layers=1)
# Packed scorer inputs: prompt (16) + marker + answer (4) [+ marker + answer].
SCORER_LENGTH = {"pm": 32, "rm": 24}
SCORER_RUN = {"pm": "preference_model.gin", "rm": "reward_model.gin"}


def model_bindings(settings: Settings) -> tuple[str, ...]:
  """The tiny T5 of every run (over gin_configs/models/tiny.gin)."""
  d = settings.d_model
  return tuple(f"t5_tiny/t5.T5Config.{k}={v}" for k, v in (
      ("vocab_size", 32), ("d_model", d), ("num_heads", max(d // 16, 1)),
      ("d_kv", 16), ("d_ff", 2 * d), ("num_encoder_layers", settings.layers),
      ("num_decoder_layers", settings.layers)))


def _common(world: str, seed: int, workdir: str,
            settings: Settings) -> tuple[str, ...]:
  return (*model_bindings(settings), f"WORLD={sweep.gin_string(world)}",
          f"SEED={seed}", f"WORKDIR={sweep.gin_string(workdir)}")


def sft_run(world: str, seed: int, workdir: str,
            settings: Settings) -> sweep.GinRun:
  """SFT on the world's answers (the reference μ)."""
  return sweep.GinRun(("gin_configs/runs/sft.gin", *WORLD_GIN), (
      *_common(world, seed, workdir, settings),
      f"TRAIN_STEPS={settings.sft_steps}",
      "BATCH_SIZE=16", "LEARNING_RATE=0.01", "EVAL_EVERY=0",
      f"CHECKPOINT_EVERY={settings.sft_steps}",
      f"LOG_EVERY={settings.sft_steps}"))


def scorer_run(scorer: str, world: str, seed: int, workdir: str,
               settings: Settings) -> sweep.GinRun:
  """The learned preference model ('pm') or reward model ('rm')."""
  steps = settings.judge_steps
  return sweep.GinRun((f"gin_configs/runs/{SCORER_RUN[scorer]}", *WORLD_GIN), (
      *_common(world, seed, workdir, settings), f"TRAIN_STEPS={steps}",
      "BATCH_SIZE=32", "LEARNING_RATE=0.01", f"EVAL_EVERY={steps}",
      f"PACKED_LENGTH={SCORER_LENGTH[scorer]}", "WITH_P_STAR=True",
      f"CHECKPOINT_EVERY={steps}", f"LOG_EVERY={steps}"))


def method_run(method: Method, world: str, seed: int, workdir: str,
               sft_dir: str, settings: Settings) -> sweep.GinRun:
  """One online run of `method` against the exact or the learned judge."""
  s = settings
  if method.learned:
    scorer_dir = os.path.join(os.path.dirname(sft_dir), method.scorer)
    judge = (f"JUDGE_DIR={sweep.gin_string(scorer_dir)}",
             f"PACKED_LENGTH={SCORER_LENGTH[method.scorer]}")
    files = (f"gin_configs/runs/{method.run}", *WORLD_GIN)
  else:
    judge = ()
    files = (f"gin_configs/runs/{method.run}", *WORLD_GIN,
             f"gin_configs/worlds/{method.judge}")
  return sweep.GinRun(
      files,
      (*_common(world, seed, workdir, settings),
       f"SFT_DIR={sweep.gin_string(sft_dir)}",
       *judge,
       f"TRAIN_STEPS={s.steps}", f"BATCH_SIZE={s.batch}", f"TAU={s.tau}",
       f"LEARNING_RATE={s.learning_rate}", 'OPTIMIZER="adafactor"',
       f"EVAL_EVERY={s.eval_every}", f"CHECKPOINT_EVERY={s.steps}",
       f"LOG_EVERY={max(s.steps // 4, 1)}", "STAGE_TIMING_EVERY=0",
       f"EMA_DECAY={s.ema_decay}", f"ETA={s.prox_eta}",
       f"INNER_STEPS={s.prox_inner_steps}",
       f"REFRESH_EVERY={s.mpo_refresh_every}", *method.bindings))


def _ensure(run: sweep.GinRun, workdir: str, steps: int, name: str) -> float:
  """Runs `run` unless finished; returns its wall seconds (0 if skipped)."""
  if sweep.is_finished(workdir, steps):
    return 0.0
  start = time.perf_counter()
  print(f"== {name}", flush=True)
  sweep.run_experiment(run, name=name)
  return time.perf_counter() - start


def eval_records(workdir: str) -> list[dict[str, Any]]:
  """The run's exact evaluations, in step order (the last of each step)."""
  return metrics.read_metrics(workdir, "eval")


def _distribution(record: dict[str, Any], role: str,
                  world: population.World) -> np.ndarray:
  return np.array([[record[f"{role}/{x}/{o}"] for o in world.outcomes]
                   for x in range(len(world.prompts))])


def tabular_curve(method: Method, world: population.World, mu: np.ndarray,
                  settings: Settings) -> list[float]:
  """KL(π*_τ ‖ π_t) along the method's exact tabular dynamics from μ."""
  prefs, tau, steps = world.preference(), settings.tau, settings.steps
  lr = TABULAR_LEARNING_RATE
  if method.anchor == "prox":
    logs = anchored.nash_prox_pg_ascent(prefs, mu, tau, settings.prox_eta,
                                        settings.prox_inner_steps, lr, steps)
  elif method.anchor == "magnet":
    logs = anchored.mpo_pg_ascent(prefs, mu, tau, settings.mpo_refresh_every,
                                  lr, steps)
  elif method.extragradient:
    logs = ipo.egpo_extragradient(prefs, mu, tau, lr * tau / 4, steps)
  elif method.regression:
    logs = ipo.ipo_md_descent(prefs, mu, tau, method.beta, lr * tau / 4,
                              steps)
  elif method.beta is not None:
    logs = policy_gradient.nash_md_pg_ascent(prefs, mu, tau, method.beta,
                                             lr, steps)
  elif method.run == "rlhf.gin":
    offered = world.offered_mask()  # The exact judge's reward (judge.py).
    reward = targets.bradley_terry_reward(
        prefs, targets.uniform_offered(offered), offered)
    logs = policy_gradient.rlhf_pg_ascent(reward, mu, tau, lr, steps)
  else:
    logs = policy_gradient.nash_ema_pg_ascent(prefs, mu, tau,
                                              settings.ema_decay, lr, steps)
  nash = targets.regularized_nash(prefs, mu, tau)
  kl = simplex.kl_from_logs(np.log(nash)[None], logs).mean(-1)
  return [float(v) for v in kl]


def run_result(method: Method, world: population.World, workdir: str,
               settings: Settings) -> dict[str, Any]:
  """Final metrics, the deep curve and the tabular curve of one run."""
  records = eval_records(workdir)
  if not records:
    raise RuntimeError(f"{workdir} has no exact evaluations")
  last = records[-1]
  mu = _distribution(last, "reference", world)
  keys = ("kl_to_target", "kl_to_nash", "kl_reference_to_target",
          "p_condorcet", "p_borda", "target_p_condorcet", "target_p_borda")
  return {
      "final": {k: last[k] for k in keys},
      "policy": _distribution(last, "policy", world).tolist(),
      "reference": mu.tolist(),
      "deep_curve": [[r["step"], r["kl_to_target"], r["kl_to_nash"]]
                     for r in records],
      "tabular_kl_to_nash": tabular_curve(method, world, mu, settings)}


def run_all(out: str, worlds: Sequence[str], seeds: Sequence[int],
            methods: Sequence[Method], settings: Settings) -> dict[str, Any]:
  """Trains everything missing and collects `results.json`'s contents."""
  results: dict[str, Any] = {"settings": dataclasses.asdict(settings),
                             "runs": {}}
  total = len(worlds) * len(seeds) * (len(methods) + 1)
  done, start = 0, time.perf_counter()
  for world_name in worlds:
    world = population.ready_world(world_name)
    for seed in seeds:
      root = os.path.join(out, world_name, f"seed{seed}")
      sft_dir = os.path.join(root, "sft")
      _ensure(sft_run(world_name, seed, sft_dir, settings), sft_dir,
              settings.sft_steps, f"{world_name} seed {seed} SFT")
      done += 1
      for scorer in sorted({m.scorer for m in methods if m.learned}):
        scorer_dir = os.path.join(root, scorer)
        _ensure(scorer_run(scorer, world_name, seed, scorer_dir, settings),
                scorer_dir, settings.judge_steps,
                f"{world_name} seed {seed} {scorer.upper()}")
        last = metrics.read_metrics(scorer_dir, "eval")[-1]
        results.setdefault("judges", {})[
            f"{world_name}/{seed}/{scorer}"] = {
                k: last[k] for k in ("accuracy", "bayes_agreement",
                                     "ceiling") if k in last}
      for method in methods:
        workdir = os.path.join(root, method.name)
        _ensure(method_run(method, world_name, seed, workdir, sft_dir,
                           settings), workdir, settings.steps,
                f"{world_name} seed {seed} {method.name}")
        results["runs"][f"{world_name}/{seed}/{method.name}"] = run_result(
            method, world, workdir, settings)
        done += 1
        elapsed = time.perf_counter() - start
        print(f"[{done}/{total} runs, {elapsed:.0f}s, ETA "
              f"{elapsed / done * (total - done):.0f}s]", flush=True)
  return results


def _cell(values: Sequence[float]) -> str:
  """mean [min, max] over seeds (or the one value)."""
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{np.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def table(results: dict[str, Any], worlds: Sequence[str],
          seeds: Sequence[int], methods: Sequence[Method]) -> str:
  """Markdown: per world and method, final distances and winner masses."""
  columns = (("KL(own target ‖ π)", "kl_to_target"),
             ("KL(π*_τ ‖ π)", "kl_to_nash"),
             ("KL(own target ‖ μ)", "kl_reference_to_target"),
             ("π(Condorcet)", "p_condorcet"), ("π(Borda)", "p_borda"),
             ("target(Condorcet)", "target_p_condorcet"),
             ("target(Borda)", "target_p_borda"))
  lines = ["| world | method | " + " | ".join(c for c, _ in columns) + " |",
           "|---|---|" + "---|" * len(columns)]
  for world in worlds:
    for method in methods:
      finals = [results["runs"][f"{world}/{s}/{method.name}"]["final"]
                for s in seeds]
      cells = []
      for _, key in columns:
        values = [f[key] for f in finals]
        cells.append("—" if np.isnan(values).any() else _cell(values))
      lines.append(f"| {world} | {method.name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def win_rates(results: dict[str, Any], world: str, seeds: Sequence[int],
              methods: Sequence[Method]) -> str:
  """Markdown: exact P*(column ≻ row) between final policies and SFT.

  P*(π ≻ π') = mean over prompts of π_xᵀ P*_x π'_x, from the exact outcome
  distributions; mean over seeds (the paper's Table 1, computed exactly).
  """
  prefs = population.ready_world(world).preference()
  names = ["SFT", *(m.name for m in methods)]
  cells = np.zeros((len(seeds), len(names), len(names)))
  for s, seed in enumerate(seeds):
    runs = [results["runs"][f"{world}/{seed}/{m.name}"] for m in methods]
    policies = [np.array(runs[0]["reference"])] + [np.array(r["policy"])
                                                   for r in runs]
    for r, row in enumerate(policies):
      for c, column in enumerate(policies):
        cells[s, r, c] = np.mean(np.einsum("xi,xij,xj->x", column, prefs,
                                           row))
  mean = cells.mean(0)
  lines = [f"Exact P*(column ≻ row), {world}, mean over seeds "
           f"{', '.join(map(str, seeds))}:", "",
           "| row \\ column | " + " | ".join(names) + " |",
           "|---" * (len(names) + 1) + "|"]
  for r, name in enumerate(names):
    lines.append(f"| {name} | " + " | ".join(
        "–" if r == c else f"{mean[r, c]:.3f}" for c in range(len(names)))
                 + " |")
  return "\n".join(lines) + "\n"


def plot_curves(results: dict[str, Any], world: str, seed: int,
                methods: Sequence[Method], path: str) -> str:
  """KL(π*_τ ‖ π) against steps: deep runs (left), tabular (right)."""
  fig = figure_lib.Figure(figsize=(10, 3.8))
  deep, tab = fig.subplots(1, 2, sharey=True)
  for method in methods:
    run = results["runs"][f"{world}/{seed}/{method.name}"]
    curve = np.array(run["deep_curve"])
    deep.plot(curve[:, 0], curve[:, 2], label=method.name)
    tab.plot(np.arange(len(run["tabular_kl_to_nash"])),
             run["tabular_kl_to_nash"], label=method.name)
  deep.set(title=f"{world}: tiny T5, exact judge (seed {seed})",
           xlabel="online step", ylabel="KL(π*_τ ‖ π)", yscale="log")
  tab.set(title="exact tabular dynamics from the same μ",
          xlabel="iteration (lr 1)", yscale="log")
  tab.legend(fontsize=8)
  backend_agg.FigureCanvasAgg(fig)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  return path


def run_and_write(out: str, worlds: Sequence[str], seeds: Sequence[int],
                  methods: Sequence[Method], settings: Settings) -> str:
  """`run_all`, then results.json, table.md and one plot per world.

  Returns:
    table.md's text.
  """
  results = run_all(out, worlds, seeds, methods, settings)
  with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  text = (f"τ = {settings.tau}, {settings.steps} online steps per run, "
          f"seeds {', '.join(map(str, seeds))}; cells: mean [min, max] over "
          "seeds.\n\n" + table(results, worlds, seeds, methods) + "\n" +
          "\n".join(win_rates(results, w, seeds, methods) for w in worlds))
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text)
  for world in worlds:
    plot_curves(results, world, seeds[0], methods,
                os.path.join(out, f"kl_to_nash_{world}.png"))
  return text


def _flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.finite_worlds", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="worlds_out", help="output folder")
  parser.add_argument("--worlds", default=",".join(population.READY))
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--methods", default=",".join(m.name for m in METHODS))
  parser.add_argument("--judges", default="exact",
                      help="'exact', 'learned' or 'exact,learned': each "
                      "method against the exact judge and/or against the "
                      "learned PM (RLHF: RM), named e.g. MD1-PM")
  parser.add_argument("--quick", action="store_true",
                      help="a few steps per run (tests)")
  for field in dataclasses.fields(Settings):
    parser.add_argument(f"--{field.name}", type=type(field.default),
                        default=None)
  return parser.parse_args(argv)


def _choose(names: str, known: dict[str, Any], what: str) -> list[Any]:
  chosen = [n.strip() for n in names.split(",") if n.strip()]
  unknown = [n for n in chosen if n not in known]
  if unknown or not chosen:
    raise ConfigError(f"unknown or no {what} {unknown or chosen}; known: "
                      f"{sorted(known)}")
  return [known[n] for n in chosen]


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point (exit 2 on a configuration error)."""
  flags = _flags(sys.argv[1:] if argv is None else argv)
  with cli.exit_on_config_error():
    settings = QUICK if flags.quick else Settings()
    settings = dataclasses.replace(settings, **{
        f.name: getattr(flags, f.name) for f in dataclasses.fields(Settings)
        if getattr(flags, f.name) is not None})
    worlds = [w.name for w in _choose(flags.worlds, population.READY,
                                      "worlds")]
    methods = _choose(flags.methods, {m.name: m for m in METHODS},
                      "methods")
    judges = _choose(flags.judges, {"exact": False, "learned": True},
                     "judges")
    methods = [m.with_learned_judge() if learned else m
               for learned in judges for m in methods]
    try:
      seeds = [int(s) for s in flags.seeds.split(",")]
    except ValueError:
      raise ConfigError(f"--seeds must be integers, got {flags.seeds!r}"
                        ) from None
    text = run_and_write(flags.out, worlds, seeds, methods, settings)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
