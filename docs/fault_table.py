r"""The README's fault table: faults tried on the toy SFT run, via the CLI.

  python docs/fault_table.py [--trials 10] [--seed 0] [--out docs/fault_table.json]

Every case runs `python -m nlhf_jax.main` (gin_configs/runs/sft.gin on the
toy copy task of `nlhf_jax.testing.toy_data`, 8 fake CPU devices) in
subprocesses and compares what is left with an uninterrupted run:

* SIGKILL at random moments, `--trials` times: a random delay after the
  first step, or the instant a checkpoint's temporary directory appears
  (mid-write). Each killed run is resumed to the end; the final state must
  be bitwise equal to the uninterrupted run's.
* The newest checkpoint truncated, and one of its files deleted.
* A model change into the workdir, and a second writer while one runs.
* A full disk: the workdir on a 2 MiB tmpfs (needs root to mount; else the
  row says so), then moved to a disk with room and resumed.

Writes one JSON record per case to --out and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# The runs' 8 fake CPU devices, here too: the checkpoints are restored with
# the device layout they were saved with.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from nlhf_jax import checkpointing  # pylint: disable=g-import-not-at-top,wrong-import-position
from nlhf_jax.testing import toy_data  # pylint: disable=g-import-not-at-top,wrong-import-position

STEPS, EVERY = 40, 10


class Runner:
  """Starts toy SFT runs sharing one compilation cache."""

  def __init__(self, root: str):
    self.root = root
    self.gin_file = os.path.join(root, "toy.gin")
    with open(self.gin_file, "w", encoding="utf-8") as f:
      f.write(toy_data.TOY_SFT_GIN)
    self.env = dict(os.environ, JAX_PLATFORMS="cpu",
                    XLA_FLAGS="--xla_force_host_platform_device_count=8",
                    JAX_COMPILATION_CACHE_DIR=os.path.join(root, "cache"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                    TF_CPP_MIN_LOG_LEVEL="3")

  def command(self, workdir: str, steps: int = STEPS, extra=()):
    return toy_data.toy_sft_command(sys.executable, self.gin_file, workdir,
                                    steps=steps, every=EVERY,
                                    extra=tuple(extra))

  def run(self, workdir: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(self.command(workdir, **kw), cwd=REPO,
                          env=self.env, capture_output=True, text=True,
                          timeout=900)

  def start(self, workdir: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(self.command(workdir, **kw), cwd=REPO,
                            env=self.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def checkpoint_steps(workdir: str) -> list[int]:
  folder = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR)
  if not os.path.isdir(folder):
    return []
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def writing_checkpoint(workdir: str) -> bool:
  folder = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR)
  return os.path.isdir(folder) and any(
      "tmp" in n for n in os.listdir(folder))


def final_state(workdir: str) -> dict:
  path = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, str(STEPS),
                      "state")
  return ocp.tree.to_flat_dict(ocp.PyTreeCheckpointer().restore(path))


def bitwise_equal(a: dict, b: dict) -> bool:
  return sorted(a) == sorted(b) and all(
      np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def finish(runner: Runner, workdir: str) -> tuple[str, int]:
  proc = runner.run(workdir)
  return proc.stdout + proc.stderr, proc.returncode


def last_logged_step(workdir: str) -> int:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as f:
    steps = [json.loads(line).get("step", 0) for line in f if line.strip()]
  return max(steps, default=0)


def reference_run(runner: Runner, workdir: str) -> float:
  """Runs to the end; returns seconds from the first log line to exit."""
  proc = runner.start(workdir)
  first = None
  while proc.poll() is None:
    if first is None and os.path.exists(os.path.join(workdir,
                                                     "metrics.jsonl")):
      first = time.time()
    time.sleep(0.005)
  out = proc.stdout.read()
  if proc.returncode:
    sys.exit(f"The uninterrupted run failed:\n{out[-3000:]}")
  return time.time() - (first or time.time())


def sigkill_trial(runner: Runner, workdir: str, rng: random.Random,
                  span: float, reference: dict) -> dict:
  """One SIGKILL at a random moment, then a resume to the end."""
  mid_write = rng.random() < 0.4
  delay = rng.uniform(0.0, span)
  proc = runner.start(workdir)
  deadline = time.time() + 600
  started = None
  while proc.poll() is None and time.time() < deadline:
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
      started = started or time.time()
      if (mid_write and writing_checkpoint(workdir)) or (
          not mid_write and time.time() - started >= delay):
        break
    time.sleep(0.005)
  during_write = writing_checkpoint(workdir)
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  kept = checkpoint_steps(workdir)
  logged = last_logged_step(workdir)
  out, code = finish(runner, workdir)
  equal = code == 0 and bitwise_equal(final_state(workdir), reference)
  return {"fault": "SIGKILL " + ("mid checkpoint write" if during_write
                                 else f"{delay:.1f} s after the first log"),
          "last_logged_step": logged, "checkpoints_at_kill": kept,
          "resume_exit": code,
          "bitwise_equal": equal, "lost": "nothing" if equal else "see log",
          "log_has_traceback": "Traceback" in out}


def damaged_checkpoint(runner: Runner, workdir: str, how: str,
                       reference: dict) -> dict:
  """Kill after checkpoint 30, damage it, resume to the end."""
  proc = runner.start(workdir)
  manifest = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, "30",
                          checkpointing.MANIFEST)
  while not os.path.exists(manifest) and proc.poll() is None:
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  state_dir = os.path.dirname(manifest)
  victim = max((os.path.join(r, f) for r, _, fs in os.walk(state_dir)
                for f in fs if f != checkpointing.MANIFEST),
               key=os.path.getsize)
  if how == "truncated":
    with open(victim, "r+b") as f:
      f.truncate(os.path.getsize(victim) // 2)
  else:
    os.remove(victim)
  out, code = finish(runner, workdir)
  equal = code == 0 and bitwise_equal(final_state(workdir), reference)
  return {"fault": f"newest checkpoint (30) {how} file",
          "outcome": ("quarantined, resumed from 20" if "Resumed from the "
                      "checkpoint at step 20" in out else "see log"),
          "resume_exit": code, "bitwise_equal": equal,
          "lost": "10 steps recomputed" if equal else "see log"}


def config_change(runner: Runner, workdir: str) -> dict:
  before = checkpoint_steps(workdir)
  proc = runner.run(workdir, extra=("--gin.t5.T5Config.d_model=24",))
  return {"fault": "model change (d_model 16 → 24) into a finished workdir",
          "exit": proc.returncode, "message": proc.stderr.strip()[:160],
          "checkpoints_untouched": checkpoint_steps(workdir) == before,
          "lost": "nothing" if checkpoint_steps(workdir) == before else "?"}


def concurrent_writer(runner: Runner, workdir: str) -> dict:
  first = runner.start(workdir, steps=100000)
  while not checkpoint_steps(workdir) and first.poll() is None:
    time.sleep(0.01)
  second = runner.run(workdir, steps=100000)
  first.send_signal(signal.SIGKILL)
  first.communicate(timeout=60)
  return {"fault": "second job into a running job's workdir",
          "exit": second.returncode, "message": second.stderr.strip()[:160],
          "lost": "nothing"}


def full_disk(runner: Runner, root: str, reference: dict) -> dict:
  mount = os.path.join(root, "small_fs")
  os.makedirs(mount)
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs",
                     mount], capture_output=True).returncode != 0:
    return {"fault": "full disk during a checkpoint write",
            "outcome": "not tried: mounting a small tmpfs needs root"}
  try:
    workdir = os.path.join(mount, "run")
    proc = runner.run(workdir)
    kept = checkpoint_steps(workdir)
    moved = os.path.join(root, "moved")
    shutil.copytree(workdir, moved)
  finally:
    subprocess.run(["umount", mount], check=False)
  out, code = finish(runner, moved)
  equal = code == 0 and bitwise_equal(final_state(moved), reference)
  tail = [l for l in (proc.stdout + proc.stderr).strip().splitlines()
          if "rror" in l][-1:]
  return {"fault": "full disk (2 MiB tmpfs) during a checkpoint write",
          "exit": proc.returncode, "message": " ".join(tail)[:160],
          "checkpoints_kept": kept, "resume_after_moving_exit": code,
          "bitwise_equal": equal,
          "lost": "nothing" if equal else "see log"}


def markdown(rows: list[dict]) -> str:
  lines = ["| fault | outcome | lost |", "|---|---|---|"]
  for r in rows:
    outcome = {k: v for k, v in r.items() if k not in ("fault", "lost")}
    lines.append(f"| {r['fault']} | {json.dumps(outcome, ensure_ascii=False)}"
                 f" | {r.get('lost', '')} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(REPO, "docs",
                                                    "fault_table.json"))
  flags = parser.parse_args()
  rng = random.Random(flags.seed)
  root = tempfile.mkdtemp(prefix="nlhf_faults_")
  runner = Runner(root)
  reference_dir = os.path.join(root, "reference")
  span = reference_run(runner, reference_dir)
  reference = final_state(reference_dir)
  rows = []
  for i in range(flags.trials):
    rows.append(sigkill_trial(runner, os.path.join(root, f"kill{i}"), rng,
                              span, reference))
    print(rows[-1], flush=True)
  for how in ("truncated", "deleted"):
    rows.append(damaged_checkpoint(runner, os.path.join(root, how), how,
                                   reference))
    print(rows[-1], flush=True)
  rows.append(config_change(runner, reference_dir))
  rows.append(concurrent_writer(runner, os.path.join(root, "busy")))
  rows.append(full_disk(runner, root, reference))
  with open(flags.out, "w", encoding="utf-8") as f:
    json.dump({"date": time.strftime("%Y-%m-%d"), "rows": rows}, f,
              indent=1, ensure_ascii=False)
  print(markdown(rows))


if __name__ == "__main__":
  main()
