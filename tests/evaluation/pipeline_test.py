"""The evaluation pipeline on tiny real runs: an SFT run and a preference
model trained for two steps through the entry point (`main.run_config`),
and a policy that stands in for an online run (the SFT checkpoint with an
online job's run spec). Everything the pipeline needs comes from the
workdirs' run_spec.json files."""

import csv
import dataclasses
import json
import os
import shutil

import pytest

from nlhf_jax import main as main_lib
from nlhf_jax import run_spec
from nlhf_jax.algorithms import online
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import pipeline
from nlhf_jax.models import preference

RESPONSE_LENGTH = 8


def _train(gin_file, workdir, world, model, extra=()):
  data_dir, vocabulary = world
  sizes = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
           "num_encoder_layers", "num_decoder_layers")
  main_lib.run_config(
      [f"gin_configs/runs/{gin_file}", "gin_configs/models/tiny.gin"],
      [*(f"t5_tiny/t5.T5Config.{k}={getattr(model, k)}" for k in sizes),
       f"DATA_DIR='{data_dir}'", f"VOCABULARY='{vocabulary}'",
       f"WORKDIR='{workdir}'", "TRAIN_STEPS=2", "BATCH_SIZE=8",
       "INPUT_LENGTH=64", "TARGET_LENGTH=16", "EVAL_EVERY=0",
       "LOG_EVERY=1", *extra])


@pytest.fixture(scope="module")
def model(small_model):
  """The small model at the small world's 400 pieces (samples decode)."""
  return dataclasses.replace(small_model, vocab_size=400)


@pytest.fixture(scope="module")
def runs(small_world, model, tmp_path_factory):
  """(sft_dir, pm_dir, policy_dir) of tiny runs with their run specs."""
  root = tmp_path_factory.mktemp("pipeline")
  sft_dir, pm_dir = str(root / "sft"), str(root / "pm")
  _train("sft.gin", sft_dir, small_world, model)
  _train("preference_model.gin", pm_dir, small_world, model,
         ["PACKED_LENGTH=112"])
  policy_dir = str(root / "policy")
  shutil.copytree(sft_dir, policy_dir)
  sft = run_spec.read(sft_dir)
  run_spec.write(policy_dir, run_spec.make(
      "online", models={"policy": sft.model("policy"),
                        "judge": run_spec.read(pm_dir).model("judge")},
      data=sft.value("data"),
      responses=online.ResponseConfig(max_decode_length=RESPONSE_LENGTH),
      layout=preference.LayoutConfig(length=112)))
  return sft_dir, pm_dir, policy_dir


def test_runs_are_read_from_their_specs(runs, small_world, model):
  sft_dir, pm_dir, policy_dir = runs
  policy = pipeline.policy_run(policy_dir)
  assert policy.model == model
  assert (policy.data.data_dir, policy.data.vocabulary) == small_world
  assert (policy.data.input_length, policy.response_length) == (
      64, RESPONSE_LENGTH)
  everyone = pipeline.policy_runs({"MD": policy_dir}, sft_dir)
  assert list(everyone) == ["SFT", "MD"]
  # SFT is sampled at the policies' response length, not its target length.
  assert everyone["SFT"].response_length == RESPONSE_LENGTH
  assert pipeline.policy_run(sft_dir).response_length == 16
  judge = pipeline.judge_run(pm_dir)
  assert judge.model == model
  assert judge.layout == preference.LayoutConfig(length=112)
  assert (judge.data.input_length, judge.data.target_length) == (64, 16)


def _cells(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_report_judges_every_pair_then_reuses_generations(runs, tmp_path):
  sft_dir, pm_dir, policy_dir = runs
  out, lines = str(tmp_path / "report"), []
  path = pipeline.report(
      {"MD": policy_dir}, sft_dir=sft_dir, pm_dir=pm_dir, out_dir=out,
      title="Tiny", num_prompts=4, p_star=True, log=lines.append,
      notes=lambda results: f"judges: {sorted(results)}",
      curve_runs={"SFT": sft_dir}, curve_metrics=("loss",))
  text = open(path, encoding="utf-8").read()
  assert "Judged by the learned preference model" in text
  assert "judges: ['p_star', 'preference_model']" in text
  assert os.path.exists(os.path.join(out, "curves", "curve_loss.png"))
  for judge in ("p_star", "preference_model"):
    rows = _cells(os.path.join(out, judge, "win_rate_cells.csv"))
    assert {(r["row"], r["column"]) for r in rows} == {("SFT", "MD"),
                                                        ("MD", "SFT")}
    assert {r["num_samples"] for r in rows} == {"4"}
  for name in ("SFT", "MD"):
    with open(os.path.join(out, "generations", f"{name}.jsonl"),
              encoding="utf-8") as f:
      records = [json.loads(line) for line in f]
    assert len(records) == 4
  again = []
  pipeline.evaluate({"MD": policy_dir}, sft_dir=sft_dir, pm_dir=pm_dir,
                    out_dir=out, num_prompts=4, log=again.append)
  assert sum("exists, reused" in line for line in again) == 2


def test_a_policy_dir_without_run_spec_is_a_config_error(runs, tmp_path):
  sft_dir, pm_dir, _ = runs
  bare = tmp_path / "old_run"
  bare.mkdir()
  with pytest.raises(ConfigError, match=r"Policy 'MD'.*run_spec\.json "
                     "not found"):
    pipeline.evaluate({"MD": str(bare)}, sft_dir=sft_dir, pm_dir=pm_dir,
                      out_dir=str(tmp_path / "out"), num_prompts=2)
  with pytest.raises(ConfigError, match="Preference model.*'sft' run"):
    pipeline.judge_run(sft_dir)
  with pytest.raises(ConfigError, match="Policy 'SFT'.*'preference_model'"):
    pipeline.policy_runs({}, pm_dir)
  assert not os.path.exists(tmp_path / "out")  # Nothing was generated.


def test_a_policy_of_another_architecture_is_refused(runs, tmp_path):
  sft_dir, _, policy_dir = runs
  other = str(tmp_path / "other")
  spec = run_spec.read(policy_dir)
  wider = dataclasses.replace(spec.model("policy"), d_ff=128)
  run_spec.write(other, run_spec.RunSpec(spec.job, {
      **spec.sections, "models": {**spec.sections["models"],
                                  "policy": run_spec.encode(wider)}}))
  with pytest.raises(ConfigError, match="another model than the SFT run"):
    pipeline.policy_runs({"X": other}, sft_dir)
