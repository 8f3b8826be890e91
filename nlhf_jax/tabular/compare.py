r"""Compares exact tabular NLHF dynamics against the regularised equilibrium.

  python -m nlhf_jax.tabular.compare --out DIR [--size N --tau T --iters K
      --seed S --omd-eta ETA --sp-lr LR]

On one random and one cyclic preference matrix (shared reference policy
mu ~ Dirichlet(1)), it solves pi*_tau exactly, runs Nash-MD (Theorem-1
schedule), online mirror descent (constant step; last iterate and average),
fictitious play (average), and self-play (exact Nash-MD-PG gradient ascent on
logits with beta = 0), and writes

  DIR/tabular_compare.csv  game, algorithm, iteration, kl_to_nash,
                           exploitability (every iteration 0..K)
  DIR/tabular_compare.png  log-log KL(pi*_tau, pi_t) per algorithm, one panel
                           per game, with Theorem 1's bound 8/(tau^2 (t+1)).
"""

import argparse
import csv
import math
import os
import sys
import time
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from nlhf_jax.tabular import dynamics
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games
from nlhf_jax.tabular import simplex

CSV_NAME = "tabular_compare.csv"
PNG_NAME = "tabular_compare.png"
PLOT_FLOOR = 1e-16  # KL values below this (rounding noise) are drawn here.


def _bounded_number(kind: Callable, low: float, name: str,
                    strict: bool) -> Callable[[str], float]:
  """argparse type: a finite number of `kind` that is > low (or >= low)."""
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      noun = "an integer" if kind is int else "a number"
      raise argparse.ArgumentTypeError(
          f"{name} must be {noun}; got {text!r}") from None
    if not math.isfinite(value) or (value <= low if strict else value < low):
      sign = ">" if strict else ">="
      raise argparse.ArgumentTypeError(
          f"{name} must be finite and {sign} {low:g}; got {text}")
    return value
  return parse


def build_parser() -> argparse.ArgumentParser:
  """The command-line interface."""
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.tabular.compare",
      description="Exact tabular Nash-MD vs OMD, fictitious play and "
      "self-play on a random and a cyclic preference matrix.")
  parser.add_argument("--out", required=True,
                      help="output directory (created if missing)")
  parser.add_argument("--size", type=_bounded_number(int, 3, "--size", False),
                      default=9, help="number of responses n >= 3")
  parser.add_argument("--tau", type=_bounded_number(float, 0, "--tau", True),
                      default=0.05, help="KL regularisation tau > 0")
  parser.add_argument("--iters", type=_bounded_number(int, 1, "--iters",
                                                      False),
                      default=2000, help="iterations K >= 1")
  parser.add_argument("--seed", type=_bounded_number(int, 0, "--seed", False),
                      default=0, help="seed of the random matrix and mu")
  parser.add_argument("--omd-eta", type=_bounded_number(float, 0, "--omd-eta",
                                                        True),
                      default=3.0, help="OMD constant step (eta * tau <= 1)")
  parser.add_argument("--sp-lr", type=_bounded_number(float, 0, "--sp-lr",
                                                      True),
                      default=1.0, help="self-play gradient-ascent step")
  return parser


def run_algorithms(prefs: np.ndarray, mu: np.ndarray, tau: float, iters: int,
                   omd_eta: float,
                   sp_lr: float) -> Iterator[Tuple[str, np.ndarray]]:
  """Runs the algorithms one by one, yielding (name, log-policies (K+1, n))."""
  yield "Nash-MD (last)", dynamics.nash_md(prefs, mu, tau, iters)
  omd = dynamics.online_mirror_descent(prefs, iters, omd_eta, mu=mu, tau=tau)
  yield "OMD (last)", omd
  yield "OMD (average)", dynamics.running_average_logs(omd)
  yield "FP (average)", dynamics.fictitious_play(prefs, iters, mu=mu,
                                                 tau=tau)[1]
  yield "Self-play PG (last)", dynamics.self_play(prefs, mu, tau, sp_lr, iters)


Curves = Dict[str, Dict[str, np.ndarray]]  # algorithm -> kl/exploitability.


def evaluate_game(name: str, prefs: np.ndarray, mu: np.ndarray, tau: float,
                  iters: int, omd_eta: float, sp_lr: float,
                  log: Callable[[str], None]) -> Curves:
  """Solves pi*_tau, runs the algorithms and prints a summary.

  Returns:
    algorithm -> {"kl": shape (K+1,), "exploitability": shape (K+1,)}, plus
    the constant "BR to mu" curve.
  """
  start = time.perf_counter()
  nash = equilibrium.solve_regularized_nash(prefs, mu, tau)
  log(f"[{name}] pi*_tau solved in {time.perf_counter() - start:.3f}s: "
      f"fixed-point residual {float(nash.residual):.1e}, exploitability "
      f"{float(nash.exploitability):.1e}, KL(pi*_tau, mu) "
      f"{float(simplex.kl_divergence(nash.policy, mu)):.4f}")
  rate = dynamics.omd_linear_rate(prefs, nash.policy, tau, omd_eta)
  verdict = ("< 1: converges locally" if rate < 1 else
             ">= 1: pi*_tau is unstable for OMD")
  log(f"[{name}] OMD (eta={omd_eta:g}) linearised spectral radius at "
      f"pi*_tau: {rate:.5f} ({verdict})")
  curves = {}
  start = time.perf_counter()
  for algo, logs in run_algorithms(prefs, mu, tau, iters, omd_eta, sp_lr):
    curves[algo] = {
        "kl": dynamics.kl_to_target(nash.policy, logs),
        "exploitability": equilibrium.exploitability(prefs, np.exp(logs), mu,
                                                     tau),
    }
    log(f"[{name}] {algo:20s} KL(pi*_tau, pi_K) = {curves[algo]['kl'][-1]:.3e}"
        f"   exploitability = {curves[algo]['exploitability'][-1]:.3e}"
        f"   ({time.perf_counter() - start:.2f}s)")
    start = time.perf_counter()
  br = dynamics.best_response_to_mu(prefs, mu, tau)
  curves["BR to mu"] = {
      "kl": np.full(iters + 1, float(simplex.kl_divergence(nash.policy, br))),
      "exploitability": np.full(
          iters + 1, float(equilibrium.exploitability(prefs, br, mu, tau))),
  }
  log(f"[{name}] {'BR to mu':20s} KL(pi*_tau, BR) = "
      f"{curves['BR to mu']['kl'][0]:.3e} (closed form, no iterations)")
  return curves


def write_csv(path: str, results: Dict[str, Curves]):
  """One row per (game, algorithm, iteration)."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["game", "algorithm", "iteration", "kl_to_nash",
                     "exploitability"])
    for game, curves in results.items():
      for algo, curve in curves.items():
        for t, (kl, expl) in enumerate(zip(curve["kl"],
                                           curve["exploitability"])):
          writer.writerow([game, algo, t, f"{kl:.6e}", f"{expl:.6e}"])


def plot(path: str, results: Dict[str, Curves],
         tau: float, title: str):
  """Log-log KL(pi*_tau, pi_t) vs t per game, with Theorem 1's bound."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(results), figsize=(6.0 * len(results), 4.6),
                           squeeze=False)
  for ax, (game, curves) in zip(axes[0], results.items()):
    steps = np.arange(1, len(next(iter(curves.values()))["kl"]))
    ax.loglog(steps, dynamics.nash_md_bound(tau, steps), "k--", lw=1.2,
              label=r"bound $8/(\tau^2(t+1))$")
    for algo, curve in curves.items():
      style = ":" if algo == "BR to mu" else "-"
      ax.loglog(steps, np.maximum(curve["kl"][1:], PLOT_FLOOR), style, lw=1.4,
                label=algo)
    ax.set_title(f"{game} preference matrix")
    ax.set_xlabel("iteration t")
    ax.set_ylabel(r"KL($\pi^*_\tau$, $\pi_t$) [nats]")
    ax.grid(True, which="major", alpha=0.3)
  axes[0][0].legend(fontsize=8, loc="lower left")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the comparison; returns the process exit status."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.omd_eta * args.tau > 1.0:
    parser.error(f"--omd-eta * --tau must be <= 1 (OMD's mixture weight); got "
                 f"{args.omd_eta} * {args.tau} = {args.omd_eta * args.tau:g}")
  if os.path.exists(args.out) and not os.path.isdir(args.out):
    parser.error(f"--out {args.out!r} exists and is not a directory")
  os.makedirs(args.out, exist_ok=True)

  rng = np.random.default_rng(args.seed)
  mu = rng.dirichlet(np.ones(args.size))
  matrices = {
      "random": games.random_preference_matrix(args.size, rng),
      "cyclic": games.cyclic_preference_matrix(args.size),
  }
  print(f"n={args.size} tau={args.tau:g} K={args.iters} seed={args.seed} "
        f"OMD eta={args.omd_eta:g} self-play lr={args.sp_lr:g}; Theorem 1 "
        f"bound at K: {dynamics.nash_md_bound(args.tau, args.iters):.3g}")
  results: Dict[str, Curves] = {}
  for name, prefs in matrices.items():
    results[name] = evaluate_game(name, prefs, mu, args.tau, args.iters,
                                  args.omd_eta, args.sp_lr,
                                  lambda line: print(line, flush=True))
  csv_path = os.path.join(args.out, CSV_NAME)
  png_path = os.path.join(args.out, PNG_NAME)
  write_csv(csv_path, results)
  plot(png_path, results, args.tau,
       f"n={args.size}, tau={args.tau:g}, OMD eta={args.omd_eta:g}, "
       f"self-play lr={args.sp_lr:g}, seed={args.seed}")
  print(f"wrote {csv_path}\nwrote {png_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
