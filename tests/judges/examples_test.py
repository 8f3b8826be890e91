"""The example judges of gin_configs/judges/ resolve through gin and run
inside a jitted judging call on the small world's real vocabulary."""

import gin
import jax
import numpy as np
import pytest

from nlhf_jax import main as main_lib
from nlhf_jax.data import jsonl_sources
from nlhf_jax.jobs import judges as judge_configs
from nlhf_jax.judges import checks
from nlhf_jax.judges import examples
from nlhf_jax.judges import pairwise


def _judge_config(judge_gin):
  """The JUDGE a pairwise run file + `judge_gin` binds."""
  main_lib.parse_config(["gin_configs/runs/nash_md.gin",
                         "gin_configs/models/tiny.gin", judge_gin], [])
  try:
    return gin.query_parameter("%JUDGE").scoped_configurable_fn()
  finally:
    gin.clear_config()


def _shortened(targets: np.ndarray) -> np.ndarray:
  """Row i of `targets` with its last i % 4 tokens before EOS dropped."""
  out = np.zeros_like(targets)
  for i, row in enumerate(targets):
    body = row[row > 1]
    keep = max(len(body) - i % 4, 1)
    out[i, :keep + 1] = np.append(body[:keep], 1)
  return out


@pytest.mark.parametrize("judge_gin,kind,name", [
    ("gin_configs/judges/examples/prefer_shorter.gin", judge_configs.HostJudge,
     "prefer_shorter"),
    ("gin_configs/judges/examples/fewer_tokens.gin", judge_configs.JaxJudge,
     "fewer_tokens"),
    ("gin_configs/judges/examples/llm_rater.gin", judge_configs.HostJudge,
     "llm_rater(word_count_completer)"),
    ("gin_configs/judges/p_star.gin", judge_configs.SyntheticPStar,
     "synthetic P*"),
])
def test_example_judges_run_in_a_jitted_call(small_world, judge_gin, kind,
                                             name):
  config = _judge_config(judge_gin)
  assert isinstance(config, kind)
  data = jsonl_sources.SftJsonlSource(*small_world, input_length=48,
                                      target_length=12)
  judge = config.build(data, None, "pairwise")
  assert judge.name == name
  batch = data.arrays("train")
  x = batch["encoder_input_tokens"][:6]
  a = batch["decoder_target_tokens"][:6]
  b = _shortened(a)
  p, counts = jax.jit(lambda: pairwise.preference(judge, (), x, a, b))()
  p = np.asarray(p)
  assert counts[checks.METRIC_PREFIX + name] == 0
  assert np.all((p >= 0) & (p <= 1)) and len(set(p.round(4))) > 1
  np.testing.assert_array_equal(p + np.asarray(
      jax.jit(lambda: pairwise.preference(judge, (), x, b, a))()[0]), 1.0)


def test_the_llm_rater_normalises_its_answer_probabilities():
  judge = examples.llm_rater(lambda prompt: {"1": 3.0, "2": 1.0})
  assert judge(["x"], ["a"], ["b"]) == [0.75]
  assert examples.prefer_shorter(["x"] * 3, ["a b", "a", "a"],
                                 ["a", "a b", "b"]) == [0.0, 1.0, 0.5]


def test_the_readme_judge_example_runs_and_prints_what_it_says(capsys):
  """The README's "Plugging in a judge" Python block, run as it is."""
  readme = open("README.md", encoding="utf-8").read()
  section = readme.split("## Plugging in a judge", 1)[1]
  code = section.split("```python\n", 1)[1].split("```", 1)[0]
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  lines = capsys.readouterr().out.splitlines()
  assert [line.split("=")[1].split(",")[0].strip() for line in lines] == [
      "[0.731 0.119]", "[1. 0.]", "[0.6   0.333]"], lines
  assert all(line.endswith("invalid values: 0") for line in lines), lines
