"""Tests of the judge adapters and order averaging."""

import numpy as np
import pytest

from nlhf_jax.data import annotators
from nlhf_jax.judges import text as judges


def _first_wins(prompts, first, second):
  del first, second
  return np.ones(len(prompts))


def _length_judge(prompts, first, second):
  """Prefers the longer text, with a +0.2 bonus for the first position."""
  del prompts
  d = np.array([len(a) - len(b) for a, b in zip(first, second)], float)
  return np.clip(0.5 + 0.05 * d, 0.0, 0.8) + 0.2


def test_first_position_judge_averages_to_exactly_one_half():
  judge = judges.order_averaged(judges.CallableJudge(_first_wins))
  p = judge(["x"] * 4, ["a", "bb", "", "dddd"], ["z", "", "cc", "dddd"])
  np.testing.assert_array_equal(p, np.full(4, 0.5))


def test_order_averaging_cancels_an_additive_position_bias():
  # _length_judge = q(a, b) + 0.2 with q(a, b) + q(b, a) = 1 while unclipped,
  # so ½(J(a,b) + 1 − J(b,a)) = q(a, b) exactly.
  judge = judges.order_averaged(_length_judge)
  first, second = ["aaaa", "a", "abc"], ["a", "aaa", "abc"]
  p = judge(["x"] * 3, first, second)
  np.testing.assert_allclose(p, [0.65, 0.4, 0.5], atol=1e-12)
  np.testing.assert_array_equal(p + judge(["x"] * 3, second, first), 1.0)


def test_order_averaged_formula_on_asymmetric_judge():
  table = {("a", "b"): 0.9, ("b", "a"): 0.3, ("a", "a"): 0.7}
  raw = lambda p, f, s: np.array([table[(x, y)] for x, y in zip(f, s)])
  judge = judges.order_averaged(raw)
  p = judge(["x"] * 3, ["a", "b", "a"], ["b", "a", "a"])
  np.testing.assert_allclose(p, [0.5 * (0.9 + 1 - 0.3),
                                 0.5 * (0.3 + 1 - 0.9), 0.5], atol=1e-15)
  assert p[0] + p[1] == 1.0


def test_order_averaged_calls_inner_judge_once_with_both_orders():
  calls = []

  def recording(prompts, first, second):
    calls.append((list(prompts), list(first), list(second)))
    return np.full(len(prompts), 0.5)

  judges.order_averaged(recording)(["p1", "p2"], ["a", "b"], ["c", "d"])
  assert calls == [(["p1", "p2", "p1", "p2"], ["a", "b", "c", "d"],
                    ["c", "d", "a", "b"])]


def test_order_averaged_is_idempotent_and_named():
  inner = judges.CallableJudge(_first_wins, name="llm")
  once = judges.order_averaged(inner)
  assert judges.order_averaged(once) is once
  assert once.name == "llm (order-averaged)"
  assert isinstance(once, judges.Judge)


def test_synthetic_judge_matches_population_preference(synthetic_world):
  world = synthetic_world
  judge = judges.synthetic_judge()
  first, second = world.summaries["ref"], world.summaries["pretrained"]
  p = judge(world.prompts, first, second)
  expected = [annotators.population_preference(x, a, b)
              for x, a, b in zip(world.prompts, first, second)]
  np.testing.assert_array_equal(p, expected)
  # P* is exactly antisymmetric, so averaging the orders changes nothing.
  averaged = judges.order_averaged(judge)(world.prompts, first, second)
  np.testing.assert_allclose(averaged, p, rtol=0, atol=1e-15)


@pytest.mark.parametrize("max_cached", [1_000_000, 1])
def test_cached_synthetic_judge_is_bit_identical(synthetic_world, max_cached):
  world = synthetic_world
  garbage = ["", "!!!!", "xq zzv 123", "ex ex ex ex", "漢字 🙂"] * 10
  first = world.summaries["sup_noisy"][:40] + garbage[:8]
  second = garbage[:8] + world.summaries["sup_long"][:40]
  judge = judges.SyntheticJudge(max_cached=max_cached)
  expected = annotators.PopulationPreference()(world.prompts, first, second)
  for _ in range(2):  # The second pass reads cached features.
    np.testing.assert_array_equal(judge(world.prompts, first, second),
                                  expected)


def test_callable_judge_batches_and_concatenates():
  sizes = []

  def scorer(prompts, first, second):
    sizes.append(len(prompts))
    return [0.1 * len(a) for a in first]

  judge = judges.PreferenceModelJudge(scorer, batch_size=2)
  p = judge(["x"] * 5, ["a", "aa", "aaa", "aaaa", "aaaaa"], ["b"] * 5)
  np.testing.assert_allclose(p, [0.1, 0.2, 0.3, 0.4, 0.5])
  assert sizes == [2, 2, 1]
  assert judge.name == "preference_model"


def test_judge_output_errors_name_the_judge_and_index():
  bad_range = judges.CallableJudge(lambda p, f, s: [0.2, 1.5], name="llm")
  with pytest.raises(ValueError, match=r"'llm' returned 1.5 at index 1"):
    bad_range(["x", "y"], ["a", "b"], ["c", "d"])
  bad_shape = judges.CallableJudge(lambda p, f, s: [0.2], name="llm")
  with pytest.raises(ValueError, match=r"shape \(1,\) for 2 comparisons"):
    bad_shape(["x", "y"], ["a", "b"], ["c", "d"])
  nan = judges.CallableJudge(lambda p, f, s: [np.nan], name="llm")
  with pytest.raises(ValueError, match="nan at index 0"):
    nan(["x"], ["a"], ["c"])


def test_judge_output_tiny_overshoot_is_clipped():
  judge = judges.CallableJudge(lambda p, f, s: [1 + 1e-9, -1e-9])
  np.testing.assert_array_equal(judge(["x", "y"], ["a", "b"], ["c", "d"]),
                                [1.0, 0.0])


def test_judge_input_errors():
  judge = judges.CallableJudge(_first_wins)
  with pytest.raises(ValueError, match="2 prompts, 1 first summaries"):
    judge(["x", "y"], ["a"], ["b", "c"])
  with pytest.raises(TypeError, match=r"second\[1\] must be a str"):
    judge(["x", "y"], ["a", "b"], ["c", None])
  with pytest.raises(TypeError, match="must be callable"):
    judges.CallableJudge("not a function")
  with pytest.raises(ValueError, match="batch_size"):
    judges.CallableJudge(_first_wins, batch_size=0)


def test_synthetic_judge_rejects_non_canonical_prompt():
  with pytest.raises(ValueError, match=r"prompts\[0\]"):
    judges.synthetic_judge()(["not a tl;dr prompt"], ["a"], ["b"])
