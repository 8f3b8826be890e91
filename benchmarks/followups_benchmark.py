"""Step time of the follow-up methods against Nash-MD-PG, in one run.

  python -m benchmarks.followups_benchmark [--size demo|matched|tiny]
      [--algorithms nash_md,online_ipo,ipo_md,egpo]

Times each algorithm's library step as the trainer runs it (its
`program.Program`, built by `nash_md_benchmark.build` with the same random
policy, reference, preference model, prompts, optimizer and shapes) and
reports each median step time and its ratio to Nash-MD-PG's, measured in
the same process one after another (so the ratios share the machine's
state). Nash-MD-PG and IPO-MD use β = 0.125; Online IPO and EGPO sample
from the policy. Samples/s counts prompts (each yields one pair; EGPO's
step samples two pairs per prompt).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Optional, Sequence

from benchmarks import common
from benchmarks import nash_md_benchmark
from nlhf_jax.algorithms import egpo
from nlhf_jax.algorithms import ipo_md
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online_ipo

IPO_TAU = 1.0


def step_factories(settings: nash_md_benchmark.Settings
                   ) -> dict[str, Callable[..., Any]]:
  """{name: (policy, reference, judge, responses) -> step}."""

  def make(module, config):
    return lambda policy, reference, judge, responses: module.make_train_step(
        policy, reference, judge, config, responses)

  return {
      "nash_md": make(nash_md, nash_md.NashMDConfig(beta=settings.beta,
                                                    tau=settings.tau)),
      "online_ipo": make(online_ipo, online_ipo.OnlineIPOConfig(tau=IPO_TAU)),
      "ipo_md": make(ipo_md, ipo_md.IPOMDConfig(beta=settings.beta,
                                                tau=IPO_TAU)),
      "egpo": make(egpo, egpo.EGPOConfig(tau=IPO_TAU)),
  }


def measure(config: Any, settings: nash_md_benchmark.Settings,
            algorithms: Sequence[str], warmup: int,
            repeats: int) -> dict[str, Any]:
  """{algorithm: timing and samples/s}, and each ratio to nash_md."""
  factories = step_factories(settings)
  out = {}
  for name in algorithms:
    pieces = nash_md_benchmark.build(config, settings,
                                     make_step=factories[name])
    fused, _ = nash_md_benchmark.time_fused(pieces, warmup, repeats)
    out[name] = {"fused": fused, "median_step_s": fused["median_s"],
                 "samples_per_s": settings.batch / fused["median_s"]}
  base = out["nash_md"]["median_step_s"]
  ratios = {name: r["median_step_s"] / base for name, r in out.items()}
  return {"algorithms": out, "step_time_ratio_to_nash_md": ratios}


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the benchmark, prints and returns its JSON record."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=5)
  nash_md_benchmark.add_size_flags(parser)
  parser.add_argument("--algorithms", default=",".join(
      step_factories(nash_md_benchmark.Settings())))
  args = parser.parse_args(argv)
  if args.smoke:
    args.size, args.warmup, args.repeats = "tiny", 1, 1
  common.configure_platform(args.platform, fast_compile=args.smoke)
  config, settings = nash_md_benchmark.config_from_args(args)
  algorithms = [a for a in args.algorithms.split(",") if a]
  known = step_factories(settings)
  unknown = sorted(set(algorithms) - set(known))
  if unknown or "nash_md" not in algorithms:
    parser.error(f"--algorithms must include nash_md and name only "
                 f"{sorted(known)}; got {args.algorithms!r}")
  record = common.base_record("followups_step_time", {
      "model": dataclasses.asdict(config),
      "settings": dataclasses.asdict(settings), "optimizer": "adamw",
      "online_ipo_tau": IPO_TAU, "warmup": args.warmup,
      "repeats": args.repeats, "smoke": args.smoke})
  record.update(measure(config, settings, algorithms, args.warmup,
                        args.repeats))
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
