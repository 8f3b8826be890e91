"""Tests of the JSON-lines training-metric format."""

import math

import numpy as np
import pytest

from nlhf_jax.evaluation import metric_logs


def test_round_trip_and_append(tmp_path):
  path = tmp_path / "run.jsonl"
  records = [(0, {"loss": 1.5}),
             (np.int64(10), {"loss": np.float32(0.5), "kl": 2})]
  metric_logs.write_metrics_jsonl(path, records)
  metric_logs.write_metrics_jsonl(path, [(20, {"loss": math.nan})],
                                  append=True)
  records = metric_logs.read_metrics_jsonl(path)
  assert records[:2] == [(0, {"loss": 1.5}), (10, {"loss": 0.5, "kl": 2.0})]
  assert records[2][0] == 20 and math.isnan(records[2][1]["loss"])


def test_reader_skips_blank_lines_and_non_numeric_values(tmp_path):
  path = tmp_path / "run.jsonl"
  path.write_text('{"step": 3, "loss": 0.25, "note": "lr decayed", '
                  '"ok": true, "hist": [1, 2], "t": null}\n\n'
                  '{"step": 1.0, "acc": 1}\n', encoding="utf-8")
  assert metric_logs.read_metrics_jsonl(path) == [(3, {"loss": 0.25}),
                                                  (1, {"acc": 1.0})]
  runs = metric_logs.read_runs({"a": path, "b": path})
  assert list(runs) == ["a", "b"]
  assert metric_logs.metric_names(runs) == ["loss", "acc"]


@pytest.mark.parametrize("line,match", [
    ('{"loss": 1}', r"run.jsonl:2: no 'step' key \(keys: \['loss'\]\)"),
    ('{"step": -1}', "run.jsonl:2: 'step' must be a non-negative integer"),
    ('{"step": 1.5}', "must be a non-negative integer, got 1.5"),
    ('{"step": "3"}', "must be a non-negative integer"),
    ('[1, 2]', "run.jsonl:2: expected a JSON object, got list"),
    ('{"step": 1,', "run.jsonl:2: invalid JSON"),
])
def test_reader_errors_name_file_and_line(tmp_path, line, match):
  path = tmp_path / "run.jsonl"
  path.write_text('{"step": 0, "loss": 1}\n' + line + "\n", encoding="utf-8")
  with pytest.raises(ValueError, match=match):
    metric_logs.read_metrics_jsonl(path)


def test_writer_errors(tmp_path):
  with pytest.raises(ValueError, match=r"records\[1\].*'step'"):
    metric_logs.write_metrics_jsonl(tmp_path / "x", [(0, {}), (1, {"step": 2})])
  with pytest.raises(ValueError, match=r"records\[0\] \(step 0\): metric 'a'"):
    metric_logs.write_metrics_jsonl(tmp_path / "x", [(0, {"a": "high"})])
  with pytest.raises(ValueError, match="non-negative integer"):
    metric_logs.write_metrics_jsonl(tmp_path / "x", [(-5, {"a": 1.0})])
