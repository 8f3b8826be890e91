"""Step time of the follow-up methods against Nash-MD-PG, in one run.

  python -m benchmarks.followups_benchmark [--size demo|matched|tiny]
      [--algorithms nash_md,online_ipo,ipo_md,egpo,nash_prox,mpo]

Times each algorithm's library step as the trainer runs it (its
`program.Program`, built by `nash_md_benchmark.build` with the same random
policy, reference, preference model, prompts, optimizer and shapes) and
reports each median step time and its ratio to Nash-MD-PG's, measured in
the same process in alternating rounds (`--rounds`, so the ratios share
the machine's state and its drift). Nash-MD-PG and IPO-MD use β = 0.125; Online IPO and EGPO sample
from the policy; Nash Prox and MPO keep their anchor copy in the state
(Nash Prox's opponent is that copy, MPO's is the policy). Samples/s counts
prompts (each yields one pair; EGPO's step samples two pairs per prompt).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Optional, Sequence

import numpy as np

from benchmarks import common
from benchmarks import nash_md_benchmark
from nlhf_jax.algorithms import egpo
from nlhf_jax.algorithms import ipo_md
from nlhf_jax.algorithms import mpo
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import nash_prox
from nlhf_jax.algorithms import online_ipo

IPO_TAU = 1.0


def timed_algorithms(settings: nash_md_benchmark.Settings
               ) -> dict[str, tuple[Any, Any]]:
  """{name: (algorithm module, its config)} of the timed steps."""
  return {
      "nash_md": (nash_md, nash_md.NashMDConfig(beta=settings.beta,
                                                tau=settings.tau)),
      "online_ipo": (online_ipo, online_ipo.OnlineIPOConfig(tau=IPO_TAU)),
      "ipo_md": (ipo_md, ipo_md.IPOMDConfig(beta=settings.beta,
                                            tau=IPO_TAU)),
      "egpo": (egpo, egpo.EGPOConfig(tau=IPO_TAU)),
      "nash_prox": (nash_prox, nash_prox.NashProxConfig(tau=settings.tau)),
      "mpo": (mpo, mpo.MPOConfig(tau=settings.tau)),
  }


def _step_factory(module: Any, config: Any) -> Callable[..., Any]:
  return lambda policy, reference, judge, responses: module.make_train_step(
      policy, reference, judge, config, responses)


def measure(config: Any, settings: nash_md_benchmark.Settings,
            algorithms: Sequence[str], warmup: int, repeats: int,
            rounds: int = 3) -> dict[str, Any]:
  """{algorithm: timing and samples/s}, and each ratio to nash_md.

  Every algorithm's Program is built (and compiled by its first warm-up)
  first; then `rounds` rounds each time every algorithm in turn (`warmup`
  untimed and `repeats` timed steps from the same initial state). A round's
  ratio is an algorithm's median over Nash-MD-PG's in that round; the
  record gives the median over rounds of the step times and of the ratios,
  and every round's ratio, so a drift of the machine during the run shows
  up as spread instead of as a bias against whoever runs last.
  """
  known = timed_algorithms(settings)
  pieces = {}
  for name in algorithms:
    module, algorithm = known[name]
    pieces[name] = nash_md_benchmark.build(
        config, settings, make_step=_step_factory(module, algorithm),
        with_anchor=bool(getattr(algorithm, "keeps_anchor", False)))
  timings = {name: [] for name in algorithms}
  for _ in range(rounds):
    for name in algorithms:
      timings[name].append(nash_md_benchmark.time_fused(
          pieces[name], warmup, repeats)[0])
  per_round = {name: [t["median_s"] for t in ts]
               for name, ts in timings.items()}
  ratios = {name: [t / b for t, b in zip(times, per_round["nash_md"])]
            for name, times in per_round.items()}
  out = {name: {"rounds": timings[name],
                "median_step_s": float(np.median(times)),
                "samples_per_s": settings.batch / float(np.median(times))}
         for name, times in per_round.items()}
  return {"algorithms": out, "rounds": rounds,
          "step_time_ratio_to_nash_md": {
              name: float(np.median(r)) for name, r in ratios.items()},
          "round_ratios_to_nash_md": ratios}


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the benchmark, prints and returns its JSON record."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=5)
  nash_md_benchmark.add_size_flags(parser)
  parser.add_argument("--rounds", type=int, default=3,
                      help="alternating rounds over the algorithms")
  parser.add_argument("--algorithms", default=",".join(
      timed_algorithms(nash_md_benchmark.Settings())))
  args = parser.parse_args(argv)
  if args.smoke:
    args.size, args.warmup, args.repeats, args.rounds = "tiny", 1, 1, 1
  common.configure_platform(args.platform, fast_compile=args.smoke)
  config, settings = nash_md_benchmark.config_from_args(args)
  chosen = [a for a in args.algorithms.split(",") if a]
  known = timed_algorithms(settings)
  unknown = sorted(set(chosen) - set(known))
  if unknown or "nash_md" not in chosen:
    parser.error(f"--algorithms must include nash_md and name only "
                 f"{sorted(known)}; got {args.algorithms!r}")
  record = common.base_record("followups_step_time", {
      "model": dataclasses.asdict(config),
      "settings": dataclasses.asdict(settings), "optimizer": "adamw",
      "online_ipo_tau": IPO_TAU, "warmup": args.warmup,
      "repeats": args.repeats, "smoke": args.smoke})
  record.update(measure(config, settings, chosen, args.warmup,
                        args.repeats, args.rounds))
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
