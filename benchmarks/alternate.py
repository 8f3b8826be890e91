"""A benchmark run alternately on another commit and on this tree, in one command.

  python -m benchmarks.alternate --base HEAD~1 --rounds 3 \
      --field median_step_s -- benchmarks.nash_md_benchmark --no_split

The base commit is checked out into a temporary git worktree (removed at
the end); each round runs `python -m <module> <args>` once from the base
tree and once from this one (order alternating between rounds, so a drift
of the machine's speed hits both), each in a fresh process with the base or
this tree first on PYTHONPATH. With `--same_benchmark` the base side runs
this tree's `benchmarks/` against the base commit's `nlhf_jax` and
`gin_configs` (so a benchmark added since can time the old library, as
long as it only calls what the old library has). Every run prints one
JSON line (the
benchmarks' `common.emit`); the record here holds each side's `--field`
values, their medians, and `ratio` = base median / this tree's median (for a
time: > 1 means this tree is faster). The child records are kept under
`runs`. `--this_args` adds flags on this tree's side only: options the base
commit does not have, e.g. a backend's settings that the runs of this tree
use (`--this_args="--judge_row_chunk 16"`, as gin_configs/backends/cpu.gin).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Optional, Sequence

from benchmarks import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tree: str, module: str, args: Sequence[str]) -> dict[str, Any]:
  env = dict(os.environ, PYTHONPATH=tree + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tree,
                        env=env, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    raise SystemExit(f"{module} failed in {tree} (exit {proc.returncode}):\n"
                     f"{proc.stderr[-3000:]}")
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if not lines:
    raise SystemExit(f"{module} printed no JSON record in {tree}.")
  return json.loads(lines[-1])


def _field(record: dict[str, Any], path: str) -> float:
  value: Any = record
  for key in path.split("."):
    value = value[key]
  return float(value)


def _mixed_root(base_tree: str) -> str:
  """A folder whose `benchmarks` is this tree's and the rest the base's."""
  root = tempfile.mkdtemp(prefix="nlhf_jax_mixed_")
  for name in ("nlhf_jax", "gin_configs"):
    os.symlink(os.path.join(base_tree, name), os.path.join(root, name))
  os.symlink(os.path.join(REPO, "benchmarks"), os.path.join(root, "benchmarks"))
  return root


def _worktree(base: str) -> str:
  folder = tempfile.mkdtemp(prefix="nlhf_jax_base_")
  subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", folder,
                  base], check=True, capture_output=True, text=True)
  return folder


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--base", required=True, help="git revision to compare")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--same_benchmark", action="store_true",
                      help="run this tree's benchmark module on both sides")
  parser.add_argument("--this_args", default="",
                      help="extra flags for this tree's side only")
  parser.add_argument("--field", default="median_step_s",
                      help="dotted path of the compared number in a record")
  parser.add_argument("module", help="the benchmark module, e.g. "
                      "benchmarks.nash_md_benchmark")
  parser.add_argument("args", nargs=argparse.REMAINDER,
                      help="its flags (after --)")
  flags = parser.parse_args(argv)
  args = [a for a in flags.args if a != "--"]
  this_args = args + shlex.split(flags.this_args)
  base_tree = _worktree(flags.base)
  base_root = _mixed_root(base_tree) if flags.same_benchmark else base_tree
  runs: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
  try:
    for i in range(flags.rounds):
      order = ("base", "this") if i % 2 == 0 else ("this", "base")
      for side in order:
        tree = base_root if side == "base" else REPO
        runs[side].append(_run(tree, flags.module,
                               args if side == "base" else this_args))
        print(f"round {i + 1}/{flags.rounds} {side}: {flags.field} = "
              f"{_field(runs[side][-1], flags.field):.4g}", file=sys.stderr,
              flush=True)
  finally:
    subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force",
                    base_tree], check=False, capture_output=True)
    shutil.rmtree(base_tree, ignore_errors=True)
    if base_root != base_tree:
      shutil.rmtree(base_root, ignore_errors=True)
  values = {side: [_field(r, flags.field) for r in recs]
            for side, recs in runs.items()}
  medians = {side: statistics.median(v) for side, v in values.items()}
  record = common.base_record("alternate", {
      "base": flags.base, "same_benchmark": flags.same_benchmark,
      "module": flags.module, "args": args, "this_args": this_args,
      "rounds": flags.rounds, "field": flags.field})
  record.update(values=values, medians=medians,
                ratio=medians["base"] / medians["this"], runs=runs)
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
