"""Side by side: TRL 1.12.0 NashMDTrainer vs our Nash-MD-PG step, one run.

  python -m benchmarks.peer_nash_md --peer_python PATH [--rounds 1]
  NLHF_PEER_PYTHON=PATH python -m benchmarks.peer_nash_md [--rounds 1]

Runs (a) the peer script (`benchmarks/trl_peer_runner.py`: TRL's
NashMDTrainer on a random-weight GPT-2 policy,
reference and reward model, d_model 256, 4 layers, 4 heads, vocab 32128,
11.65 M policy parameters) in its own Python environment, and (b) the
library's fused Nash-MD-PG step (`nlhf_jax.algorithms.nash_md.
make_train_step`) at the matched size of `benchmarks/nash_md_benchmark.py`
(T5 with 12.13 M policy parameters), both with batch 8, prompts of 64
tokens, 32 new tokens, β = 0.125 and τ = 0.008, on the same machine, one
after the other. With `--rounds R > 1` the two alternate R times and the
medians over rounds are compared, which evens out a machine whose load
changes (it may be shared); our model is compiled once.

Prints one JSON line with both results, the policy parameter counts and
their ratio (ours / peer, must be within 15 %), and the throughput ratio
ours / peer in samples/s (target ≥ 3).

The peer times its training steps with a TrainerCallback (each step:
generation from the policy and from the mixture, two reward-model passes,
log-probs under policy and reference, backward, AdamW), the first step
being an untimed warm-up, and reports the median. Ours is the median of
`--repeats` fused, jitted steps after `--warmup` untimed ones (the first
compiles). Compilation is not in either median.

The peer needs its own Python environment (torch 2.13.0 CPU + trl 1.12.0),
named by `--peer_python` or the environment variable `NLHF_PEER_PYTHON`;
without either, or when that interpreter does not exist, the command exits
with status 2 (unless `--skip_peer`). Create it once from the repository
root:

  python3 -m venv .venv-peer
  .venv-peer/bin/pip install -r benchmarks/peer_requirements.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

from benchmarks import common
from benchmarks import flops as flops_lib
from benchmarks import nash_md_benchmark
from nlhf_jax.models import t5

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON_ENV = "NLHF_PEER_PYTHON"
DEFAULT_PEER_SCRIPT = os.path.join("benchmarks", "trl_peer_runner.py")
PEER_SETUP_HINT = (
    "create it with `python3 -m venv .venv-peer && .venv-peer/bin/pip "
    "install -r benchmarks/peer_requirements.txt`, then pass "
    f"--peer_python .venv-peer/bin/python or set {PEER_PYTHON_ENV} "
    "(or use --skip_peer)")
PEER_MODEL = {"d_model": 256, "layers": 4, "heads": 4, "vocab": 32128}
# Peer size for --smoke (matches nash_md_benchmark.TINY's vocabulary).
PEER_TINY = {"d_model": 32, "layers": 2, "heads": 2, "vocab": 256}
PARAMS_TOLERANCE = 0.15


def _peer_model(size: str) -> dict[str, int]:
  return PEER_TINY if size == "tiny" else PEER_MODEL


def peer_command(args: argparse.Namespace, batch: int, prompt_len: int,
                 new_tokens: int) -> list[str]:
  """The command line of the peer script at the matched shapes."""
  script = args.peer_script
  if not os.path.isabs(script):
    script = os.path.join(REPO_ROOT, script)
  cmd = [args.peer_python or "", script, "--batch", str(batch),
         "--prompt_len", str(prompt_len), "--new_tokens", str(new_tokens),
         "--steps", str(args.trl_steps), "--beta_mixture", str(args.beta)]
  for name, value in _peer_model(args.size).items():
    cmd += [f"--{name}", str(value)]
  return cmd


def run_peer(cmd: list[str], timeout_s: float) -> dict[str, Any]:
  """Runs the peer script; returns its JSON line plus its wall time.

  Raises:
    FileNotFoundError: the interpreter or the script does not exist.
    RuntimeError: the script failed or printed no JSON line.
  """
  for path in cmd[:2]:
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"Peer baseline: {path!r} not found; {PEER_SETUP_HINT}.")
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True,
                        timeout=timeout_s, check=False)
  wall = time.perf_counter() - start
  result = _last_json(proc.stdout)
  if proc.returncode != 0 or result is None:
    raise RuntimeError(f"Peer script failed (exit {proc.returncode}) or "
                       f"printed no JSON line: {' '.join(cmd)}\n"
                       f"{proc.stderr[-3000:]}")
  result["wall_s"] = wall
  # Largest peak RSS among finished children: the peer run(s) so far.
  result["host_peak_rss_mib"] = round(
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 10, 1)
  return result


def _last_json(stdout: str) -> Optional[dict[str, Any]]:
  """The last stdout line that is a JSON object with the peer's fields.

  (The HF Trainer also prints a Python dict of its own summary.)
  """
  for line in reversed(stdout.splitlines()):
    try:
      value = json.loads(line)
    except ValueError:
      continue
    if isinstance(value, dict) and "samples_per_s" in value:
      return value
  return None


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=6)
  nash_md_benchmark.add_size_flags(parser)
  parser.add_argument("--peer_python",
                      default=os.environ.get(PEER_PYTHON_ENV) or None,
                      help="the peer environment's Python (torch + trl); "
                      f"default: ${PEER_PYTHON_ENV}")
  parser.add_argument("--peer_script", default=DEFAULT_PEER_SCRIPT,
                      help="the peer runner (relative: to the repo root)")
  parser.add_argument("--trl_steps", type=int, default=6,
                      help="timed peer steps (plus one warm-up step)")
  parser.add_argument("--trl_timeout_s", type=float, default=3600.0)
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--skip_peer", action="store_true",
                      help="only our half (e.g. without the TRL env)")
  parser.add_argument("--no_split", action="store_true",
                      help="time only our fused step")
  args = parser.parse_args(argv)
  if args.smoke:
    args.size, args.warmup, args.repeats = "tiny", 1, 1
    args.trl_steps = 1
  if args.trl_steps < 1:
    raise ValueError(f"--trl_steps must be >= 1, got {args.trl_steps}.")
  if args.rounds < 1:
    raise ValueError(f"--rounds must be >= 1, got {args.rounds}.")
  if not args.skip_peer:
    _check_peer_python(args.peer_python)
  return args


def _check_peer_python(peer_python: Optional[str]) -> None:
  """Exits with status 2 and a one-line hint when the peer's Python is absent.

  Args:
    peer_python: the interpreter from --peer_python or $NLHF_PEER_PYTHON.
  """
  if not peer_python:
    problem = f"no peer Python given (--peer_python or ${PEER_PYTHON_ENV})"
  elif not os.path.isfile(peer_python):
    problem = f"peer Python {peer_python!r} not found"
  else:
    return
  print(f"peer_nash_md: {problem}; {PEER_SETUP_HINT}.", file=sys.stderr)
  sys.exit(2)


def _median_of(results: list[dict[str, Any]], key: str) -> float:
  return statistics.median(r[key] for r in results)


def _comparison(ours: list[dict[str, Any]], peer: list[dict[str, Any]],
                config: t5.T5Config, size: str) -> dict[str, Any]:
  """Throughputs, parameter counts and their ratios (ours / peer).

  Also the decode matmul FLOPs per generated token of both policies: the
  comparison matches parameter counts, not compute per token.
  """
  ours_sps = _median_of(ours, "samples_per_s")
  out: dict[str, Any] = {"ours_samples_per_s": ours_sps,
                         "params_policy_ours": ours[0]["params_policy"]}
  if peer:
    peer_sps = _median_of(peer, "samples_per_s")
    params_ratio = ours[0]["params_policy"] / peer[0]["params_policy"]
    out.update({
        "peer_samples_per_s": peer_sps,
        "params_policy_peer": peer[0]["params_policy"],
        "params_ratio": params_ratio,
        "params_matched": abs(params_ratio - 1.0) <= PARAMS_TOLERANCE,
        "speedup_samples_per_s": ours_sps / peer_sps,
    })
  else:
    out.update({"peer_samples_per_s": None, "params_policy_peer": None,
                "params_ratio": None, "params_matched": None,
                "speedup_samples_per_s": None, "peer_skipped": "--skip_peer"})
  peer_model = _peer_model(size)
  ours_fpt = flops_lib.decode_flops_per_token(config)
  peer_fpt = flops_lib.gpt2_decode_flops_per_token(
      peer_model["d_model"], peer_model["layers"], peer_model["vocab"])
  out["decode_flops_per_token"] = {"ours": ours_fpt, "peer": peer_fpt,
                                   "ratio": ours_fpt / peer_fpt}
  return out


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs both halves, prints and returns the combined JSON record."""
  args = _parse(argv)
  common.configure_platform(args.platform, fast_compile=args.smoke)
  config, settings = nash_md_benchmark.config_from_args(args)
  cmd = peer_command(args, settings.batch, settings.prompt_len,
                     settings.new_tokens)
  run_config = {"model": dataclasses.asdict(config),
                "settings": dataclasses.asdict(settings),
                "peer_command": cmd,
                "warmup": args.warmup, "repeats": args.repeats,
                "rounds": args.rounds, "smoke": args.smoke,
                "train_step": "nlhf_jax.algorithms.nash_md.make_train_step"}
  record = common.base_record("peer_nash_md", run_config)
  pieces = nash_md_benchmark.build(config, settings)
  ours, peer = [], []
  for _ in range(args.rounds):
    if not args.skip_peer:
      peer.append(run_peer(cmd, args.trl_timeout_s))
    ours.append(nash_md_benchmark.summarize(
        config, settings,
        *nash_md_benchmark.time_fused(pieces, args.warmup, args.repeats)))
  ours[0]["split"] = (None if args.no_split else nash_md_benchmark.time_split(
      pieces, args.warmup, args.repeats))
  record["ours"] = ours[0] if args.rounds == 1 else ours
  record["peer"] = (None if not peer else
                    peer[0] if args.rounds == 1 else peer)
  record.update(_comparison(ours, peer, config, args.size))
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
