"""`python -m nlhf_jax.finite_worlds --quick`: methods on a world through the
gin entry point, the table, the plot, resuming, a learned judge, bad flags."""

import json
import os

import numpy as np
import pytest

from nlhf_jax import finite_worlds


def test_quick_runs_table_plot_resume_and_a_learned_judge(tmp_path, capsys):
  out = str(tmp_path / "worlds")
  common = ["--out", out, "--quick", "--worlds", "majority", "--seeds", "0"]
  # The run files tests/finite_world/online_test.py does not run (it runs
  # nash_md.gin and rlhf.gin).
  names = ["EMA1", "IPO"]
  argv = common + ["--methods", ",".join(names)]
  assert finite_worlds.main(argv) == 0
  results = json.load(open(os.path.join(out, "results.json")))
  assert sorted(results["runs"]) == sorted(f"majority/0/{n}" for n in names)
  for run in results["runs"].values():
    assert [s for s, _, _ in run["deep_curve"]] == [3, 6]
    assert len(run["tabular_kl_to_nash"]) == 7  # Iterates 0..6.
    # Their target is π*_τ: the tabular curve starts at the deep run's μ.
    assert run["tabular_kl_to_nash"][0] == pytest.approx(
        run["final"]["kl_reference_to_target"], rel=1e-6)
  table = open(os.path.join(out, "table.md")).read()
  assert table.count("| majority |") == len(names)
  # The exact win rates between final policies: P*(a ≻ b) + P*(b ≻ a) = 1.
  rows = [line.split("|")[2:-1] for line in table.splitlines()
          if line.startswith("| ") and line.split("|")[1].strip() in
          ("SFT", *names)]
  values = np.array([[0.5 if c.strip() == "–" else float(c) for c in row]
                     for row in rows])
  assert values.shape == (3, 3)
  np.testing.assert_allclose(values + values.T, 1.0, atol=2e-3)
  assert os.path.getsize(os.path.join(out, "kl_to_nash_majority.png")) > 0
  capsys.readouterr()
  assert finite_worlds.main(argv) == 0  # Everything finished: no training.
  assert "== " not in capsys.readouterr().out

  # Against a learned PM, reusing the SFT run.
  assert finite_worlds.main(common + ["--methods", "SP",
                                      "--judges", "learned"]) == 0
  trained = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("== ")]
  assert trained == ["== majority seed 0 PM", "== majority seed 0 SP-PM"]
  results = json.load(open(os.path.join(out, "results.json")))
  assert sorted(results["runs"]) == ["majority/0/SP-PM"]
  judge = results["judges"]["majority/0/pm"]
  assert 0 <= judge["accuracy"] <= 1 and judge["ceiling"] >= 0.5
  # Measured against P*'s targets, whatever the judge it trained on.
  final = results["runs"]["majority/0/SP-PM"]["final"]
  assert final["kl_to_target"] == final["kl_to_nash"] > 0


@pytest.mark.parametrize("flag, value", [("--worlds", "nope"),
                                         ("--methods", "PPO"),
                                         ("--seeds", "a"),
                                         ("--tau", "0")])
def test_bad_flags_exit_2(tmp_path, flag, value, capsys):
  with pytest.raises(SystemExit) as e:
    finite_worlds.main(["--out", str(tmp_path), "--quick", flag, value])
  assert e.value.code == 2
  assert "Config error" in capsys.readouterr().err
