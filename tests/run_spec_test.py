"""Tests for the run spec: encoding, decoding, reading errors."""

import json
import os

import pytest

from nlhf_jax import run_spec
from nlhf_jax import trainer
from nlhf_jax.errors import ConfigError
from nlhf_jax.models import preference
from nlhf_jax.models import t5


def test_configs_round_trip_exactly(tmp_path):
  model = t5.T5Config(vocab_size=64, d_model=16, num_heads=2, d_kv=8,
                      d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
  spec = run_spec.make("sft", models={"policy": model},
                       train=trainer.TrainConfig(steps=7, batch_size=4),
                       layout=preference.LayoutConfig(length=100),
                       with_ema=True, make_step=trainer.build_program)
  run_spec.write(str(tmp_path), spec)
  again = run_spec.read(str(tmp_path))
  assert again.model("policy") == model
  assert again.value("train") == trainer.TrainConfig(steps=7, batch_size=4)
  assert again.field("train", "steps") == 7
  assert again.value("layout") == preference.LayoutConfig(length=100)
  assert again.value("with_ema") is True
  assert again.section("make_step") == "nlhf_jax.trainer.build_program"
  assert not os.path.exists(run_spec.path(str(tmp_path)) + ".tmp")


def test_missing_and_broken_specs_are_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="not the workdir of"):
    run_spec.read(str(tmp_path))
  assert run_spec.maybe_read(str(tmp_path)) is None
  with open(run_spec.path(str(tmp_path)), "w", encoding="utf-8") as f:
    f.write("{not json")
  with pytest.raises(ConfigError, match="not valid JSON"):
    run_spec.read(str(tmp_path))


def test_unknown_section_field_and_foreign_class_are_refused(tmp_path):
  spec = run_spec.make("sft", models={"policy": t5.T5Config()})
  with pytest.raises(ConfigError, match="no 'data' section"):
    spec.section("data")
  with pytest.raises(ConfigError, match="no model 'judge'"):
    spec.model("judge")
  with open(run_spec.path(str(tmp_path)), "w", encoding="utf-8") as f:
    json.dump({"version": run_spec.VERSION, "job": "sft",
               "models": {"policy": {"type": "os.system",
                                     "fields": {"command": "true"}}}}, f)
  with pytest.raises(ConfigError, match="not an nlhf_jax class"):
    run_spec.read(str(tmp_path)).model("policy")
