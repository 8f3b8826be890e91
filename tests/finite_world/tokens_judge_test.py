"""Tests for the world's vocabulary, outcomes, data rows and exact judges."""

import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax.errors import ConfigError
from nlhf_jax.finite_world import data as data_lib
from nlhf_jax.finite_world import judge
from nlhf_jax.finite_world import population as pop
from nlhf_jax.finite_world import tokens


@pytest.fixture(name="source")
def _source():
  return data_lib.FiniteWorldSource(pop.ready_world("iia"), copies=2)


def test_vocabulary_round_trip(source):
  words = source.words
  assert words.decode(words.encode("pick one of two colours .")) == (
      "pick one of two colours .")
  assert words.encode("purple") == [tokens.UNKNOWN_ID]
  assert source.vocab_size == tokens.FIRST_WORD_ID + len(words.words)


def test_outcomes_of_responses(source):
  red, green, blue = source.answer_rows()  # [4] each: ids, EOS, pads.
  assert blue.tolist()[:3] == source.encode("deep blue") + [1]
  eos, pad = tokens.EOS_ID, tokens.PAD_ID
  deep = source.encode("deep")[0]
  responses = np.array([
      red.tolist() + [pad],
      blue.tolist() + [pad],
      [deep, eos, pad, pad, pad],          # "deep": not an answer.
      [red[0], red[0], eos, pad, pad],     # "red red".
      [red[0]] * 5,                        # no EOS.
      [pad, red[0], eos, pad, pad],        # a pad id before EOS.
      [green[0], eos, red[0], red[0], 7],  # junk after EOS is ignored.
  ], np.int32)
  out = tokens.outcomes(jnp.asarray(responses), source.answer_rows())
  assert out.tolist() == [0, 2, 3, 3, 3, 3, 1]


def test_answers_must_fit():
  with pytest.raises(ConfigError, match="target_length"):
    data_lib.FiniteWorldSource(pop.ready_world("iia"), target_length=2)
  with pytest.raises(ConfigError, match="input_length"):
    data_lib.FiniteWorldSource(pop.ready_world("iia"), input_length=4)


def test_splits(source):
  train = source.arrays("train")
  # iia offers red, green at prompt 0 (shares 1, 2) and all three at
  # prompt 1 (shares 2, 3, 1), 2 copies per share.
  prompt = [source.prompt_rows().tolist().index(row)
            for row in train["encoder_input_tokens"].tolist()]
  answer = [source.answer_rows().tolist().index(row)
            for row in train["decoder_target_tokens"].tolist()]
  counts = np.zeros((2, 3), int)
  np.add.at(counts, (prompt, answer), 1)
  assert counts.tolist() == [[2, 4, 0], [4, 6, 2]]
  equal = data_lib.FiniteWorldSource(source.world, copies=2,
                                     rotate_shares=False).arrays("train")
  assert len(equal["decoder_target_tokens"]) == 10
  outcomes = source.arrays("outcomes")
  assert outcomes[data_lib.PROMPT_INDEX].tolist() == [0, 0, 0, 1, 1, 1]
  assert outcomes[data_lib.ANSWER_INDEX].tolist() == [0, 1, 2, 0, 1, 2]
  np.testing.assert_array_equal(outcomes["decoder_target_tokens"][2],
                                source.answer_rows()[2])
  with pytest.raises(ValueError, match="splits"):
    source.arrays("valid")


def test_exact_preference_and_reward(source):
  prompts, answers = source.prompt_rows(), source.answer_rows()
  p_star = judge.exact_preference(source)
  other = np.array([[tokens.EOS_ID, 0, 0, 0]], np.int32)
  x = jnp.asarray(np.concatenate([prompts[[0, 0, 1, 1]],
                                  prompts[[1]] * 0 + 5]))  # Last: unknown.
  first = jnp.asarray(np.concatenate([answers[[0, 2, 1, 2]], other]))
  second = jnp.asarray(np.concatenate([answers[[1, 0, 2]], other, other]))
  values = np.asarray(p_star(x, first, second))
  prefs = source.world.preference()
  np.testing.assert_allclose(values[:4], [prefs[0, 0, 1], prefs[0, 2, 0],
                                          prefs[1, 1, 2], prefs[1, 2, 3]],
                             rtol=1e-6)
  assert values[1] == 0.0 and values[3] == 1.0  # Not offered; vs "other".
  assert np.isnan(values[4])
  reward = judge.exact_reward(source)
  table = judge.bradley_terry_table(source)
  r = np.asarray(reward(x[:4], first[:4]))
  np.testing.assert_allclose(r, table[[0, 0, 1, 1], [0, 2, 1, 2]], rtol=1e-6)
  # Uniform pairs of offered answers: the Borda order at the 3-answer prompt.
  assert np.argmax(table[1]) == source.world.borda_winners()[1]


def test_prompt_length_mismatch_is_named(source):
  p_star = judge.exact_preference(source)
  rows = jnp.zeros((2, 8), jnp.int32)
  with pytest.raises(ValueError, match="input_length"):
    p_star(rows, rows[:, :4], rows[:, :4])


def test_comparisons_follow_p_star():
  world = pop.ready_world("majority")
  source = data_lib.FiniteWorldComparisons(world, num_train=4000, num_eval=8)
  rows = source.arrays("train")
  prompts = [source.answers_source.prompt_rows().tolist().index(r)
             for r in rows["encoder_input_tokens"].tolist()]
  answers = source.answers_source.answer_rows().tolist()
  a = [answers.index(r) for r in rows["decoder_target_tokens_a"].tolist()]
  b = [answers.index(r) for r in rows["decoder_target_tokens_b"].tolist()]
  assert all(i != j for i, j in zip(a, b))
  prefs = world.preference()
  np.testing.assert_allclose(rows["p_star"], prefs[prompts, a, b], rtol=1e-6)
  # Labels are draws from P*: the kitchen prompt's red vs green (0.6).
  pick = [(x, i, j) == (0, 0, 1) for x, i, j in zip(prompts, a, b)]
  rate = rows["label"][np.array(pick)].mean()
  assert abs(rate - 0.6) < 4 * np.sqrt(0.24 / sum(pick))
  assert source.arrays("valid")["label"].shape == (8,)
  # The scorers' default markers are words of the vocabulary.
  assert tokens.UNKNOWN_ID not in source.encode(" Summary 1: Summary 2:")
  with pytest.raises(ValueError, match="splits"):
    source.arrays("test")
