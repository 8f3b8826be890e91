"""Tests for the `python -m nlhf_jax.tabular.compare` command."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from nlhf_jax.tabular import compare

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_cli_writes_png_and_csv(tmp_path, capsys):
  out = tmp_path / "run"
  assert compare.main(["--out", str(out), "--size", "4", "--tau", "0.2",
                       "--iters", "30", "--seed", "3", "--omd-eta", "1"]) == 0
  printed = capsys.readouterr().out
  assert "[random] Nash-MD (last)" in printed
  assert "[cyclic] OMD (average)" in printed
  assert "spectral radius" in printed
  png = (out / compare.PNG_NAME).read_bytes()
  assert png.startswith(_PNG_MAGIC) and len(png) > 10_000
  rows = _read_csv(out / compare.CSV_NAME)
  algorithms = {"Nash-MD (last)", "OMD (last)", "OMD (average)",
                "FP (average)", "Self-play PG (last)", "BR to mu"}
  assert {r["algorithm"] for r in rows} == algorithms
  assert {r["game"] for r in rows} == {"random", "cyclic"}
  assert len(rows) == 2 * len(algorithms) * 31
  kl = np.array([float(r["kl_to_nash"]) for r in rows])
  assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
  for game in ("random", "cyclic"):
    nash_md = [r for r in rows
               if r["game"] == game and r["algorithm"] == "Nash-MD (last)"]
    t = np.array([int(r["iteration"]) for r in nash_md])
    np.testing.assert_array_equal(t, np.arange(31))
    values = np.array([float(r["kl_to_nash"]) for r in nash_md])
    assert np.all(values[1:] <= 8 / (0.2**2 * (t[1:] + 1)))  # Theorem 1.


@pytest.mark.parametrize("argv, message", [
    (["--size", "2"], "--size must be finite and >= 3"),
    (["--size", "3.5"], "--size must be an integer; got '3.5'"),
    (["--tau", "abc"], "--tau must be a number; got 'abc'"),
    (["--tau", "0"], "--tau must be finite and > 0"),
    (["--tau", "nan"], "--tau must be finite and > 0"),
    (["--iters", "0"], "--iters must be finite and >= 1"),
    (["--tau", "0.1", "--omd-eta", "20"], "--omd-eta * --tau must be <= 1"),
    (["--sp-lr", "-1"], "--sp-lr must be finite and > 0"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    compare.main(["--out", str(tmp_path)] + argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err, err


def test_cli_rejects_an_out_path_that_is_a_file(tmp_path, capsys):
  target = tmp_path / "file.txt"
  target.write_text("x")
  with pytest.raises(SystemExit):
    compare.main(["--out", str(target), "--iters", "2"])
  assert "exists and is not a directory" in capsys.readouterr().err


def test_module_entry_point_runs_and_reports_bad_arguments(tmp_path):
  # `python -m` reaches main(); a bad argument exits before any plotting.
  result = subprocess.run(
      [sys.executable, "-m", "nlhf_jax.tabular.compare", "--out",
       str(tmp_path), "--size", "1"],
      cwd=_REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2, result.stderr
  assert "--size must be finite and >= 3; got 1" in result.stderr
