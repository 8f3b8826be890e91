"""Tests of the pairwise tournament."""

import math

import numpy as np
import pytest

from nlhf_jax.data import annotators
from nlhf_jax.evaluation import intervals
from nlhf_jax.judges import text as judges
from nlhf_jax.evaluation import rouge
from nlhf_jax.evaluation import tournament


def _first_wins(prompts, first, second):
  del first, second
  return np.ones(len(prompts))


def _shorter_wins(prompts, first, second):
  """The shorter text wins w.p. 0.9 (ties 0.5), +0.1 for the first slot.

  J(a, b) = q(a, b) + 0.1 with q = 0.1 + 0.8 [a shorter] (+0.4 on ties), so
  q(a, b) + q(b, a) = 1 and order averaging recovers q exactly.
  """
  del prompts
  a = np.array([len(t) for t in first])
  b = np.array([len(t) for t in second])
  return np.where(a < b, 1.0, np.where(a > b, 0.0, 0.5)) * 0.8 + 0.2


@pytest.fixture(scope="module")
def world_result(synthetic_world):
  world = synthetic_world
  return tournament.run_tournament(
      world.prompts, world.summaries, judges.synthetic_judge(),
      references=world.references, baseline="sup_short",
      kl={"ref": [0.1, 0.2, 0.3]}, token_counter=len)


def test_first_position_judge_gives_one_half_everywhere():
  result = tournament.run_tournament(
      ["x1", "x2", "x3"], {"a": ["a", "b", "c"], "b": ["dd", "e", "f"],
                           "c": ["g", "hhh", "i"]}, _first_wins)
  np.testing.assert_array_equal(result.win_rate, np.full((3, 3), 0.5))
  off = ~np.eye(3, dtype=bool)
  assert np.all(result.num_samples[off] == 3)


def test_matrix_is_antisymmetric_with_one_half_diagonal(world_result):
  w = world_result.win_rate
  size = len(world_result.policies)
  np.testing.assert_array_equal(w + w.T, np.ones((size, size)))
  np.testing.assert_array_equal(np.diag(w), np.full(size, 0.5))
  off = ~np.eye(size, dtype=bool)
  np.testing.assert_array_equal(world_result.num_samples[off], 48)
  np.testing.assert_array_equal(
      world_result.sampled_wins + world_result.sampled_wins.T,
      world_result.num_samples)
  # Intervals mirror too and contain their point estimates.
  np.testing.assert_allclose(world_result.ci_low[off],
                             1 - world_result.ci_high.T[off], atol=1e-12)
  assert np.all(world_result.ci_low[off] <= w[off])
  assert np.all(w[off] <= world_result.ci_high[off])
  assert np.all(np.isnan(np.diag(world_result.ci_low)))


def test_cells_are_mean_population_preference(synthetic_world, world_result):
  world = synthetic_world
  expected = np.mean(annotators.population_preference_batch(
      world.prompts, world.summaries["ref"], world.summaries["pretrained"]))
  np.testing.assert_allclose(world_result.cell("pretrained", "ref").win_rate,
                             expected, rtol=0, atol=1e-14)
  per_prompt = world_result.comparisons[("ref", "pretrained")]
  assert per_prompt.shape == (48,)
  cell = world_result.cell("ref", "pretrained")
  assert cell == intervals.win_rate_interval(per_prompt, seed=[0, 3])


def test_reference_summaries_beat_pretrained_garbage(world_result):
  cell = world_result.cell(row="pretrained", column="ref")
  assert cell.win_rate > 0.75 and cell.ci_low > 0.6, cell
  for clean in ("ref", "sup_short", "sup_long"):
    assert world_result.stats[clean].mean_win_rate > (
        world_result.stats["pretrained"].mean_win_rate)


def test_policy_stats(synthetic_world, world_result):
  world = synthetic_world
  stats = world_result.stats
  assert tuple(stats) == world_result.policies
  for name, texts in world.summaries.items():
    s = stats[name]
    assert s.mean_words == pytest.approx(np.mean([len(t.split())
                                                  for t in texts]))
    assert s.mean_tokens == pytest.approx(np.mean([len(t) for t in texts]))
    assert s.rouge == pytest.approx(
        rouge.mean_rouge_f1(texts, world.references))
    column = world_result.index(name)
    others = [world_result.win_rate[r, column]
              for r in range(len(world_result.policies)) if r != column]
    assert s.mean_win_rate == pytest.approx(np.mean(others))
  # The extractive "pretrained" policy overlaps the human TL;DR least.
  assert stats["ref"].rouge["rouge1"] > stats["pretrained"].rouge["rouge1"]
  assert stats["sup_short"].vs_baseline is None
  assert stats["ref"].vs_baseline == world_result.cell("sup_short", "ref")
  assert stats["ref"].kl_mean == pytest.approx(0.2)
  assert stats["ref"].kl_stderr == pytest.approx(0.1 / math.sqrt(3))
  assert stats["ref"].kl_count == 3 and stats["sup_long"].kl_mean is None


def test_hand_computed_tournament_with_biased_hard_judge():
  # q(long, short) = 0.1, 0.1, 0.9, 0.1; averaging removes the bonus.
  prompts = ["p"] * 4
  summaries = {"short": ["a", "b", "cc", "d"],
               "long": ["aaa", "bbb", "c", "dd"]}
  result = tournament.run_tournament(prompts, summaries, _shorter_wins)
  cell = result.cell(row="short", column="long")
  assert cell.win_rate == pytest.approx(0.3)  # Shorter only on prompt 3.
  low, high = intervals.clopper_pearson(1.2, 4)  # Fractional wins Σ q.
  np.testing.assert_allclose([cell.ci_low, cell.ci_high], [low, high])
  raw = tournament.run_tournament(prompts, summaries, _shorter_wins,
                                  average_orders=False)
  assert raw.cell("short", "long").win_rate == pytest.approx(0.4)


def test_single_policy_tournament_has_only_stats():
  result = tournament.run_tournament(["x"], {"only": ["a b c"]}, _first_wins)
  assert result.win_rate.tolist() == [[0.5]]
  assert math.isnan(result.stats["only"].mean_win_rate)
  assert result.stats["only"].mean_words == 3.0


@pytest.mark.parametrize("kwargs,error,match", [
    ({"summaries": {"a": ["x"], "b": ["y", "z"]}}, ValueError,
     r"summaries\['b'\] has 2 entries but there are 1 prompts"),
    ({"summaries": {"a": ["x"], "b": [3]}}, TypeError,
     r"summaries\['b'\]\[0\] must be a str"),
    ({"summaries": {"a": "x"}}, TypeError, "not one str"),
    ({"summaries": {}}, ValueError, "at least one policy"),
    ({"baseline": "SFT"}, ValueError, "baseline 'SFT' is not a policy"),
    ({"references": ["r1", "r2"]}, ValueError, "references.* has 2 entries"),
    ({"kl": {"c": [0.1]}}, ValueError, r"unknown policies \['c'\]"),
    ({"kl": {"a": [0.1, np.nan]}}, ValueError, r"kl\['a'\]\[1\] = nan"),
    ({"kl": {"a": ["x"]}}, ValueError, r"kl\['a'\] is not an array"),
    ({"interval_method": "wald"}, ValueError, "unknown interval_method"),
    ({"judge": lambda p, f, s: [2.0] * len(p)}, ValueError,
     "'<lambda>' returned 2.0 at index 0"),
])
def test_input_errors(kwargs, error, match):
  args = {"prompts": ["x"], "summaries": {"a": ["x"], "b": ["y"]},
          "judge": _first_wins}
  args.update(kwargs)
  with pytest.raises(error, match=match):
    tournament.run_tournament(**args)


def test_inputs_are_checked_before_any_judging():
  calls = []

  def judge(prompts, first, second):
    calls.append(len(prompts))
    return np.full(len(prompts), 0.5)

  with pytest.raises(ValueError, match="kl"):
    tournament.run_tournament(["x"], {"a": ["x"], "b": ["y"]}, judge,
                              kl={"b": []})
  assert not calls


def test_unknown_policy_lookup_names_known_ones(world_result):
  with pytest.raises(ValueError, match="unknown policy 'SFT'; known"):
    world_result.cell("SFT", "ref")
