"""A workdir never loses a run: faults met as a user meets them, via the CLI.

Each case runs `python -m nlhf_jax.main` in subprocesses on the toy SFT run
(tests/conftest.py `toy_sft`): a changed model is refused before any
checkpoint is touched, a harmless change resumes and is recorded, a second
job into a busy workdir is refused naming the first, a dead holder's lease
is taken over, and a corrupt newest checkpoint is still quarantined.
"""

import json
import os
import signal
import time

from nlhf_jax import checkpointing
from nlhf_jax import run_spec
from nlhf_jax.jobs import lease


def _steps(workdir):
  folder = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR)
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _ok(proc):
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def _no_traceback(text):
  assert "Traceback" not in text, text[-3000:]
  assert "Event loop is closed" not in text, text[-3000:]


def _manifest(workdir, step):
  return os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, str(step),
                      checkpointing.MANIFEST)


WIDE = ("--gin.t5.T5Config.d_model=64",)  # The d_model 64 → 48.


def test_model_change_is_refused_and_a_harmless_change_resumes(toy_sft,
                                                                tmp_path):
  workdir = str(tmp_path / "run")
  _no_traceback(_ok(toy_sft.run(workdir, steps=20, extra=WIDE)))
  assert _steps(workdir) == [10, 20]
  spec_before = open(run_spec.path(workdir), encoding="utf-8").read()

  refused = toy_sft.run(workdir, steps=20,
                        extra=["--gin.t5.T5Config.d_model=48"])
  assert refused.returncode == 2, refused.stdout + refused.stderr
  lines = refused.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("Config error:"), lines
  assert "models.policy.d_model 64 → 48" in lines[0]
  _no_traceback(refused.stdout + refused.stderr)
  assert _steps(workdir) == [10, 20]
  assert not os.path.exists(os.path.join(workdir,
                                         checkpointing.QUARANTINE_SUBDIR))
  assert open(run_spec.path(workdir), encoding="utf-8").read() == (
      spec_before)
  assert not os.path.exists(os.path.join(workdir, lease.FILE_NAME))

  out = _ok(toy_sft.run(workdir, steps=30, extra=WIDE))
  _no_traceback(out)
  assert "train.steps 20 → 30" in out
  assert "Resumed from the checkpoint at step 20" in out
  assert _steps(workdir) == [10, 20, 30]
  with open(os.path.join(workdir, run_spec.CHANGES_FILE),
            encoding="utf-8") as f:
    changes = [json.loads(line) for line in f]
  assert {"field": "train.steps", "old": 20, "new": 30} in (
      changes[-1]["changes"])

  # A truncated newest checkpoint is quarantined; the previous one is used.
  state_dir = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, "30",
                           "state")
  victim = max((os.path.join(root, f) for root, _, files in
                os.walk(state_dir) for f in files), key=os.path.getsize)
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  out = _ok(toy_sft.run(workdir, steps=40, extra=WIDE))
  assert "Checkpoint at step 30" in out and "corrupt or incomplete" in out
  assert "Resumed from the checkpoint at step 20" in out
  assert os.listdir(os.path.join(workdir, checkpointing.QUARANTINE_SUBDIR))
  assert _steps(workdir) == [10, 20, 30, 40]


def test_second_writer_is_refused_and_a_dead_holders_lease_taken_over(
    toy_sft, tmp_path):
  workdir = str(tmp_path / "busy")
  first = toy_sft.start(workdir, steps=100000, every=10)
  try:
    deadline = time.time() + 600
    while not os.path.exists(_manifest(workdir, 10)):
      assert first.poll() is None, first.stdout.read()[-3000:]
      assert time.time() < deadline, "no checkpoint in time"
      time.sleep(0.05)
    second = toy_sft.run(workdir, steps=100000)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"in use by pid {first.pid} on host" in second.stderr
    _no_traceback(second.stdout + second.stderr)
  finally:
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
  holder = json.load(open(os.path.join(workdir, lease.FILE_NAME),
                          encoding="utf-8"))
  assert holder["pid"] == first.pid  # SIGKILL left the lease behind.
  # The newest intact checkpoint: SIGKILL may land while one is written (a
  # step folder without a valid manifest, which the resume quarantines).
  newest = max(s for s in _steps(workdir) if checkpointing.verify_manifest(
      os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR, str(s))) is None)
  out = _ok(toy_sft.run(workdir, steps=newest + 10))
  assert f"Taking over the lease of {workdir!r} from pid {first.pid}" in out
  assert "that process no longer exists" in out
  assert f"Resumed from the checkpoint at step {newest}" in out
  assert _steps(workdir)[-1] == newest + 10
  assert not os.path.exists(os.path.join(workdir, lease.FILE_NAME))
