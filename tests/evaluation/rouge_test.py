"""ROUGE on hand-computed examples."""

import pytest

from nlhf_jax.evaluation import rouge

_CAT = ("the cat sat on the mat", "the cat is on the mat")


def test_tokenize_lowercases_and_splits_on_non_alphanumerics():
  assert rouge.tokenize("Should I end it?!  TL;DR:x-y") == [
      "should", "i", "end", "it", "tl", "dr", "x", "y"]
  assert rouge.tokenize("  ...  ") == []


def test_rouge1_cat_example():
  # Unigrams: the×2, cat, on, mat shared = 5 of 6 on each side.
  score = rouge.rouge_n(*_CAT, n=1)
  assert score.precision == pytest.approx(5 / 6)
  assert score.recall == pytest.approx(5 / 6)
  assert score.f1 == pytest.approx(5 / 6)


def test_rouge2_cat_example():
  # Bigrams: "the cat", "on the", "the mat" shared = 3 of 5 on each side.
  assert rouge.rouge_n(*_CAT, n=2).f1 == pytest.approx(3 / 5)


def test_rougel_cat_example():
  # LCS "the cat on the mat" = 5 tokens of 6.
  assert rouge.rouge_l(*_CAT).f1 == pytest.approx(5 / 6)


def test_asymmetric_lengths():
  # c = a b c d, r = a c e: unigram overlap 2 -> P = 2/4, R = 2/3,
  # F = 2 (1/2)(2/3) / (1/2 + 2/3) = 4/7; no shared bigram; LCS "a c" = 2.
  scores = rouge.rouge_scores("a b c d", "a c e")
  assert scores["rouge1"].precision == pytest.approx(0.5)
  assert scores["rouge1"].recall == pytest.approx(2 / 3)
  assert scores["rouge1"].f1 == pytest.approx(4 / 7)
  assert scores["rouge2"].f1 == 0.0
  assert scores["rougeL"].f1 == pytest.approx(4 / 7)


def test_order_matters_only_for_lcs():
  # Same bag of words, reversed order: ROUGE-1 = 1, LCS = 1 of 3.
  assert rouge.rouge_n("c b a", "a b c", 1).f1 == pytest.approx(1.0)
  assert rouge.rouge_l("c b a", "a b c").f1 == pytest.approx(1 / 3)


def test_counts_are_clipped():
  # "the" three times against once: overlap 1, P = 1/3, R = 1/2, F = 0.4.
  score = rouge.rouge_n("the the the", "the cat", 1)
  assert (score.precision, score.recall) == pytest.approx((1 / 3, 1 / 2))
  assert score.f1 == pytest.approx(0.4)


def test_lcs_length_dynamic_programme():
  assert rouge.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # CLRS.
  assert rouge.lcs_length([], ["a"]) == 0


def test_empty_texts_score_zero():
  for name, score in rouge.rouge_scores("", "the cat").items():
    assert score.f1 == 0.0, name
  assert rouge.rouge_n("a", "a b", 2).f1 == 0.0  # No bigram in candidate.


def test_identical_texts_score_one():
  scores = rouge.rouge_scores("Boyfriend texts an ex.", "boyfriend texts an ex")
  assert all(s.f1 == pytest.approx(1.0) for s in scores.values())


def test_corpus_means_and_errors():
  means = rouge.mean_rouge_f1(list(_CAT), [_CAT[1], _CAT[1]])
  assert means["rouge1"] == pytest.approx((5 / 6 + 1) / 2)
  assert means["rouge2"] == pytest.approx((3 / 5 + 1) / 2)
  with pytest.raises(ValueError, match="2 candidates but 1 references"):
    rouge.rouge_f1(list(_CAT), ["x"])
  with pytest.raises(TypeError, match=r"references\[0\] must be a str"):
    rouge.rouge_f1(["x"], [None])
  with pytest.raises(ValueError, match="n-gram order"):
    rouge.rouge_n("a", "a", 0)
