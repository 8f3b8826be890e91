"""Tests for console progress lines, metrics.jsonl and TensorBoard."""

import os
import subprocess
import sys

from nlhf_jax import metrics


def test_progress_line_has_rate_eta_and_metrics():
  progress = metrics.ProgressReporter(total_steps=100, start_step=0,
                                      keys=("loss",))
  line = progress.line(10, {"loss": 1.23456, "other": 2.0})
  assert line.startswith("step 10/100 (10.0%) | ")
  assert "steps/s | ETA " in line
  assert line.endswith("loss 1.2346")
  assert "other" not in line


def test_format_helpers():
  assert metrics._format_duration(3725) == "1h02m"
  assert metrics._format_duration(65) == "1m05s"
  assert metrics._format_duration(float("inf")) == "?"
  assert metrics._format_value(1e-6) == "1.000e-06"


def test_jsonl_writer_appends_and_reader_keeps_last_per_step(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(5, "train", {"loss": 2.0})
  writer.write(5, "eval", {"accuracy": 0.5})
  writer.close()
  # A resumed run redoes step 5 and appends.
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(5, "train", {"loss": 1.5})
  writer.write(10, "train", {"loss": 1.0})
  writer.close()
  train = metrics.read_metrics(str(tmp_path), "train")
  assert [(r["step"], r["loss"]) for r in train] == [(5, 1.5), (10, 1.0)]
  assert metrics.read_metrics(str(tmp_path), "eval")[0]["accuracy"] == 0.5


def test_tensorboard_summaries_read_back(tmp_path):
  """TensorBoard's own reader sees the scalars as tf.summary.scalar writes
  them (float32 tensors of the scalars plugin), across a resumed run."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  writer = metrics.MetricWriter(str(tmp_path), tensorboard=True)
  writer.write(3, "train", {"loss": 2.5})
  writer.write(6, "train", {"loss": 1.25})
  writer.write(6, "eval", {"accuracy": 0.75})
  writer.close()
  resumed = metrics.MetricWriter(str(tmp_path), tensorboard=True)
  resumed.write(9, "train", {"loss": 0.5})
  resumed.close()
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  got = {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
               for e in events.Tensors(tag)]
         for tag in events.Tags()["tensors"]}
  assert got == {"train/loss": [(3, 2.5), (6, 1.25), (9, 0.5)],
                 "eval/accuracy": [(6, 0.75)]}
  metadata = events.SummaryMetadata("train/loss")
  assert metadata.plugin_data.plugin_name == "scalars"


def test_tensorboard_summaries_import_no_tensorflow(tmp_path):
  """Checked in a fresh interpreter (this one may hold TensorFlow)."""
  code = ("import sys\n"
          "from nlhf_jax import metrics\n"
          f"w = metrics.MetricWriter({str(tmp_path)!r})\n"
          "w.write(1, 'train', {'loss': 1.0}); w.close()\n"
          "print('tensorflow' in sys.modules)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, env=dict(os.environ))
  assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
  assert os.listdir(tmp_path / "tensorboard")
