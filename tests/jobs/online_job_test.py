"""End to end on the synthetic world through the gin entry point:
SFT -> preference model -> 20 Nash-MD-PG steps on 8 fake devices (compiled
once, finite metrics, seconds per stage at steps 10 and 20, the run spec of
every stage), Nash-MD-PG against the
exact P* (gin_configs/judges/p_star.gin, no preference model), a NaN
judge stopping the run by its name, and
Nash-EMA-PG resuming with its EMA state."""

import json
import os
import sys
import types

import jax
import numpy as np
import pytest

from nlhf_jax import checkpointing
from nlhf_jax import main as main_lib
from nlhf_jax import run_spec
from nlhf_jax.data import jsonl_sources
from nlhf_jax.jobs import judges
from nlhf_jax.judges import checks
from nlhf_jax.models import preference

TINY = [f"--gin.t5_tiny/t5.T5Config.{k}={v}" for k, v in (
    ("d_model", 32), ("num_heads", 2), ("d_kv", 16), ("d_ff", 64),
    ("num_encoder_layers", 1), ("num_decoder_layers", 1))]
SHAPES = ["--gin.INPUT_LENGTH=96", "--gin.TARGET_LENGTH=24",
          "--gin.BATCH_SIZE=8", "--gin.LOG_EVERY=5"]


def _run(gin_file, workdir, data, extra=()):
  data_dir, vocab = data
  argv = [f"--gin_file=gin_configs/runs/{gin_file}",
          "--gin_file=gin_configs/models/tiny.gin",
          "--gin_file=gin_configs/mesh/cpu8.gin", *TINY, *SHAPES,
          f"--gin.DATA_DIR='{data_dir}'", f"--gin.VOCABULARY='{vocab}'",
          f"--gin.WORKDIR='{workdir}'", *extra]
  return main_lib.main(argv)


@pytest.fixture(scope="module")
def stages(world, tmp_path_factory):
  root = tmp_path_factory.mktemp("online")
  sft_dir, pm_dir = str(root / "sft"), str(root / "pm")
  _run("sft.gin", sft_dir, world, ["--gin.TRAIN_STEPS=10",
                                   "--gin.EVAL_EVERY=0"])
  _run("preference_model.gin", pm_dir, world,
       ["--gin.TRAIN_STEPS=10", "--gin.EVAL_EVERY=0",
        "--gin.PACKED_LENGTH=160"])
  return root, sft_dir, pm_dir


def _online(gin_file, workdir, world, stages, steps, extra=()):
  _, sft_dir, pm_dir = stages
  return _run(gin_file, workdir, world, [
      f"--gin.SFT_DIR='{sft_dir}'", f"--gin.JUDGE_DIR='{pm_dir}'",
      f"--gin.TRAIN_STEPS={steps}", "--gin.RESPONSE_LENGTH=12",
      "--gin.PACKED_LENGTH=160", "--gin.CHECKPOINT_EVERY=10",
      "--gin.LEARNING_RATE=1e-3", *extra])


def test_twenty_nash_md_steps(world, stages):
  workdir = str(stages[0] / "nash_md")
  result = _online("nash_md.gin", workdir, world, stages, 20,
                   ["--gin.STAGE_TIMING_EVERY=10"])
  assert result.step == 20
  assert result.num_compiles == 1  # The timing prefixes are not the step.
  records = [json.loads(line) for line in
             open(os.path.join(workdir, "metrics.jsonl"))]
  timing = [r for r in records if r["split"] == "timing"]
  assert [r["step"] for r in timing] == [10, 20], timing
  for record in timing:
    assert record["step_s"] > 0 and record["sampling_s"] > 0, record
    assert all(np.isfinite(record[k]) for k in ("judging_s", "update_s"))
  train = [r for r in records if "preference_vs_opponent" in r]
  assert train, records[:3]
  for record in train:
    for key in ("loss", "preference_vs_opponent", "kl_to_reference",
                "response_length", "policy_entropy", "grad_norm"):
      assert np.isfinite(record[key]), (key, record)
  # The policy started from the SFT checkpoint and moved.
  final = checkpointing.restore_params(workdir, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), result.state.params))
  start = checkpointing.restore_params(stages[1], jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), result.state.params))
  moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
              for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(start)))
  assert moved > 0


def test_every_stage_writes_its_run_spec(world, stages):
  """The online run's spec says what the workdir holds, without gin."""
  root, sft_dir, pm_dir = stages
  workdir = str(root / "nash_md")
  if not os.path.exists(workdir):
    _online("nash_md.gin", workdir, world, stages, 10)
  spec = run_spec.read(workdir)
  assert spec.job == "online"
  policy = spec.model("policy")
  assert (policy.d_model, policy.num_encoder_layers) == (32, 1)
  judge = spec.value("judge")
  assert isinstance(judge, judges.LearnedJudge)
  assert judge.model == run_spec.read(pm_dir).model("judge")
  assert judge.layout == preference.LayoutConfig(length=160)
  assert judge.checkpoint == pm_dir
  assert spec.value("sft_dir") == sft_dir
  assert run_spec.read(sft_dir).model("policy") == policy
  assert run_spec.read(pm_dir).job == "preference_model"
  data = spec.value("data")
  assert isinstance(data, jsonl_sources.SftJsonlSource)
  assert (data.data_dir, data.vocabulary, data.input_length) == (
      world[0], world[1], 96)
  assert spec.field("responses", "max_decode_length") == 12
  assert spec.section("make_step").endswith("nash_md.make_train_step")
  assert spec.field("train", "steps") in (10, 20)
  assert spec.value("with_ema") is False


def test_nash_ema_resumes_with_its_ema_state(world, stages):
  straight = str(stages[0] / "ema_straight")
  resumed = str(stages[0] / "ema_resumed")
  every_four = ["--gin.EMA_DECAY=0.5", "--gin.CHECKPOINT_EVERY=4"]
  full = _online("nash_ema.gin", straight, world, stages, 8, every_four)
  _online("nash_ema.gin", resumed, world, stages, 4, every_four)
  again = _online("nash_ema.gin", resumed, world, stages, 8, every_four)
  assert again.step == 8
  for a, b in zip(jax.tree.leaves(full.state.ema_params),
                  jax.tree.leaves(again.state.ema_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  # The EMA differs from the current parameters (it lags behind them).
  assert any(float(np.abs(np.asarray(e) - np.asarray(p)).max()) > 0
             for e, p in zip(jax.tree.leaves(again.state.ema_params),
                             jax.tree.leaves(again.state.params)))


def test_nash_md_against_the_exact_p_star_needs_no_preference_model(
    world, stages):
  root, sft_dir, _ = stages
  workdir = str(root / "nash_md_p_star")
  result = _run("nash_md.gin", workdir, world, [
      "--gin_file=gin_configs/judges/p_star.gin", f"--gin.SFT_DIR='{sft_dir}'",
      "--gin.TRAIN_STEPS=4", "--gin.RESPONSE_LENGTH=12",
      "--gin.CHECKPOINT_EVERY=0", "--gin.LEARNING_RATE=1e-3",
      "--gin.LOG_EVERY=2"])
  assert (result.step, result.num_compiles) == (4, 1)
  assert isinstance(run_spec.read(workdir).value("judge"),
                    judges.SyntheticPStar)
  records = [json.loads(line) for line in
             open(os.path.join(workdir, "metrics.jsonl"))]
  train = [r["preference_vs_opponent"] for r in records
           if "preference_vs_opponent" in r]
  assert train and all(0.0 <= p <= 1.0 for p in train), records


def test_a_nan_judge_stops_the_run_naming_it(world, stages, tmp_path,
                                             monkeypatch):
  """Through the gin entry point: a host judge returning NaN stops the run
  at its first step with an error naming it, and writes no checkpoint."""

  def rater_gone_wrong(prompts, first, second):
    del first, second
    return [float("nan")] * len(prompts)

  module = types.ModuleType("judge_under_test")
  module.rater_gone_wrong = rater_gone_wrong
  monkeypatch.setitem(sys.modules, module.__name__, module)
  gin_file = tmp_path / "nan_judge.gin"
  gin_file.write_text("from __gin__ import dynamic_registration\n"
                      "from nlhf_jax.jobs import judges\n"
                      "import judge_under_test\n"
                      "JUDGE = @judges.HostJudge()\n"
                      "judges.HostJudge.fn = "
                      "@judge_under_test.rater_gone_wrong\n")
  workdir = str(stages[0] / "nash_md_nan_judge")
  with pytest.raises(checks.JudgeOutputError,
                     match=r"Judge 'rater_gone_wrong' returned 16 values .* "
                     "at step 1"):
    _run("nash_md.gin", workdir, world, [
        f"--gin_file={gin_file}", f"--gin.SFT_DIR='{stages[1]}'",
        "--gin.TRAIN_STEPS=4", "--gin.RESPONSE_LENGTH=12",
        "--gin.CHECKPOINT_EVERY=1", "--gin.LOG_EVERY=1"])
  saved = os.path.join(workdir, checkpointing.CHECKPOINTS_SUBDIR)
  steps = [int(d) for d in os.listdir(saved) if d.isdigit()] if (
      os.path.isdir(saved)) else []
  assert all(s < 1 for s in steps), steps
