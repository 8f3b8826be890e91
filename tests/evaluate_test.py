"""`python -m nlhf_jax.evaluate` on tiny real runs, judged through the
loopback chat server: the report, a SIGKILL mid-judging and a re-run that
asks nothing twice, and configuration errors with exit status 2."""

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nlhf_jax import evaluate
from nlhf_jax import main as main_lib
from nlhf_jax import run_spec
from nlhf_jax.algorithms import online
from nlhf_jax.judges import answer_cache
from nlhf_jax.judges import chat
from nlhf_jax.testing import chat_server

NUM_PROMPTS = 12


@pytest.fixture(scope="module")
def runs(small_world, small_model, tmp_path_factory):
  """(sft_dir, MD1 dir, SHORT dir): SFT after 2 steps, and two copies as
  online runs, one with shorter responses (so that its summaries differ)."""
  root = tmp_path_factory.mktemp("evaluate")
  sft_dir = str(root / "sft")
  model = dataclasses.replace(small_model, vocab_size=400)
  data_dir, vocabulary = small_world
  sizes = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
           "num_encoder_layers", "num_decoder_layers")
  main_lib.run_config(
      ["gin_configs/runs/sft.gin", "gin_configs/models/tiny.gin"],
      [*(f"t5_tiny/t5.T5Config.{k}={getattr(model, k)}" for k in sizes),
       f"DATA_DIR='{data_dir}'", f"VOCABULARY='{vocabulary}'",
       f"WORKDIR='{sft_dir}'", "TRAIN_STEPS=2", "BATCH_SIZE=8",
       "INPUT_LENGTH=64", "TARGET_LENGTH=8", "EVAL_EVERY=0", "LOG_EVERY=1"])
  sft = run_spec.read(sft_dir)
  out = [sft_dir]
  for name, length in (("md1", 8), ("short", 4)):
    out.append(str(root / name))
    shutil.copytree(sft_dir, out[-1])
    run_spec.write(out[-1], run_spec.make(
        "online", models={"policy": sft.model("policy")},
        data=sft.value("data"),
        responses=online.ResponseConfig(max_decode_length=length)))
  return tuple(out)


def _argv(runs, out, url):
  sft_dir, md1_dir, short_dir = runs
  return ["--out", out, "--sft", sft_dir, "--policy", f"MD1={md1_dir}",
          "--policy", f"SHORT={short_dir}",
          "--judge", "llm", "--llm_base_url", url, "--llm_model", "rule",
          "--llm_concurrency", "2", "--num_prompts", str(NUM_PROMPTS),
          "--agreement_with_p_star"]


def _win_rates(out):
  with open(os.path.join(out, "llm", "win_rates.csv"), encoding="utf-8") as f:
    return list(csv.reader(f))


def _cache_keys(path):
  """The question keys in a cache file (a torn last line ignored)."""
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  keys = set()
  for line in lines:
    try:
      keys.add(json.loads(line)["key"])
    except (ValueError, KeyError):
      pass  # Empty, or cut short by the kill.
  return keys


def test_killed_midway_then_resumed_asks_nothing_twice(runs, tmp_path):
  fast = chat_server.ChatServer().start()
  slow = chat_server.ChatServer(delay_s=0.15).start()
  try:
    whole = str(tmp_path / "whole")
    evaluate.main(_argv(runs, whole, fast.url))
    report = open(os.path.join(whole, "report.md"), encoding="utf-8").read()
    assert "Agreement with P*" in report and "first slot won" in report
    questions = fast.stats.as_dict()["answers"]
    assert questions > 8

    out = str(tmp_path / "killed")
    shutil.copytree(os.path.join(whole, "generations"),
                    os.path.join(out, "generations"))
    cache = os.path.join(out, "llm", "answers.jsonl")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [sys.executable, "-m", "nlhf_jax.evaluate",
         *_argv(runs, out, slow.url)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (not os.path.exists(cache) or len(_cache_keys(cache)) < 4):
      assert process.poll() is None, process.stderr.read().decode()
      assert time.monotonic() < deadline
      time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _cache_keys(cache)
    assert 4 <= len(before) < questions

    evaluate.main(_argv(runs, out, slow.url))
    assert _win_rates(out) == _win_rates(whole)
    template = chat.TEMPLATES["tldr"]
    served = {}
    for question, count in slow.stats.answers.items():
      key = answer_cache.question_key(
          "rule", template.text,
          *template.fields(slow.stats.texts[question]))
      served[key] = count
    assert set(served) == _cache_keys(cache)
    assert all(served[key] == 1 for key in before)  # None asked again.
    # Only the requests in flight at the kill (≤ the concurrency of 2) can
    # have been answered without reaching the cache.
    assert sum(count - 1 for count in served.values()) <= 2
  finally:
    fast.stop()
    slow.stop()


def test_configuration_errors_exit_with_2(runs, tmp_path, capsys):
  sft_dir = runs[0]
  cases = [
      (["--policy", "MD1"], "NAME=DIR"),
      (["--policy", f"MD1={tmp_path}/missing"], "not a directory"),
      (["--judge", "preference_model"], "needs --pm"),
  ]
  for extra, message in cases:
    argv = ["--out", str(tmp_path / "out"), "--sft", sft_dir, *extra]
    if "--judge" not in extra:
      argv += ["--judge", "llm"]
    with pytest.raises(SystemExit) as exit_info:
      evaluate.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    evaluate.main(["--out", str(tmp_path), "--sft", sft_dir, "--judge", "llm"])
  assert exit_info.value.code == 2
  assert "--llm_base_url" in capsys.readouterr().err
