"""ROUGE-N and ROUGE-L F1 (Lin 2004), implemented from the definitions.

Tokenization follows the default of Google's `rouge-score` package without
stemming: lower-case, every run of characters outside [a-z0-9] is a
separator. So "Should I end it?!" -> ["should", "i", "end", "it"].

For a candidate c and reference r with token lists of lengths |c|, |r|:

  ROUGE-N: overlap = Σ_g min(count_c(g), count_r(g)) over n-grams g;
           precision = overlap / (#n-grams of c), recall = overlap /
           (#n-grams of r).
  ROUGE-L: L = length of the longest common subsequence of the tokens;
           precision = L / |c|, recall = L / |r|.
  F1 = 2 P R / (P + R), and 0 when P + R = 0 (also for empty texts).

Scores are per pair; corpus figures are the mean of per-pair F1 (as
`rouge-score`'s aggregators and the summarization literature report).
Pure Python + numpy.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(frozen=True)
class Score:
  """Precision, recall and F1 of one candidate against one reference."""
  precision: float
  recall: float
  f1: float


def tokenize(text: str) -> list[str]:
  """Lower-cased alphanumeric tokens of `text` (see the module doc)."""
  return [t for t in _SEPARATORS.split(text.lower()) if t]


def _score(overlap: int, candidate_total: int, reference_total: int) -> Score:
  precision = overlap / candidate_total if candidate_total else 0.0
  recall = overlap / reference_total if reference_total else 0.0
  total = precision + recall
  f1 = 2 * precision * recall / total if total > 0 else 0.0
  return Score(precision, recall, f1)


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + n])
                             for i in range(len(tokens) - n + 1))


def rouge_n(candidate: str, reference: str, n: int) -> Score:
  """ROUGE-N with clipped n-gram counts.

  Args:
    candidate: generated summary.
    reference: reference summary.
    n: n-gram order >= 1.

  Returns:
    The `Score`.
  """
  if n < 1:
    raise ValueError(f"n-gram order must be >= 1, got {n}")
  cand = _ngrams(tokenize(candidate), n)
  ref = _ngrams(tokenize(reference), n)
  overlap = sum((cand & ref).values())
  return _score(overlap, sum(cand.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
  """Length of the longest common subsequence: O(|a| |b|) time, O(|b|) memory.

  Standard dynamic programme: L[i][j] = L[i−1][j−1] + 1 if a_i = b_j, else
  max(L[i−1][j], L[i][j−1]).
  """
  if len(b) > len(a):
    a, b = b, a
  previous = [0] * (len(b) + 1)
  for token in a:
    current = [0]
    for j, other in enumerate(b):
      if token == other:
        current.append(previous[j] + 1)
      else:
        current.append(max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(candidate: str, reference: str) -> Score:
  """Sentence-level ROUGE-L (longest common subsequence of all tokens)."""
  cand, ref = tokenize(candidate), tokenize(reference)
  return _score(lcs_length(cand, ref), len(cand), len(ref))


def rouge_scores(candidate: str, reference: str) -> dict[str, Score]:
  """ROUGE-1, ROUGE-2 and ROUGE-L of one pair, keyed by `ROUGE_TYPES`."""
  return {"rouge1": rouge_n(candidate, reference, 1),
          "rouge2": rouge_n(candidate, reference, 2),
          "rougeL": rouge_l(candidate, reference)}


def rouge_f1(candidates: Sequence[str],
             references: Sequence[str]) -> dict[str, np.ndarray]:
  """Per-pair F1 for aligned candidate / reference lists.

  Args:
    candidates: n generated summaries.
    references: n reference summaries (same order).

  Returns:
    {"rouge1" | "rouge2" | "rougeL": float64 [n] of F1}.

  Raises:
    ValueError: if the lengths differ.
    TypeError: if an element is not a str (its list and index are named).
  """
  if len(candidates) != len(references):
    raise ValueError(f"{len(candidates)} candidates but {len(references)} "
                     "references")
  for what, texts in (("candidates", candidates), ("references", references)):
    for i, text in enumerate(texts):
      if not isinstance(text, str):
        raise TypeError(f"{what}[{i}] must be a str, got "
                        f"{type(text).__name__}")
  out = {name: np.zeros(len(candidates)) for name in ROUGE_TYPES}
  for i, (cand, ref) in enumerate(zip(candidates, references)):
    for name, score in rouge_scores(cand, ref).items():
      out[name][i] = score.f1
  return out


def mean_rouge_f1(candidates: Sequence[str],
                  references: Sequence[str]) -> Mapping[str, float]:
  """Mean per-pair F1 of each ROUGE type (see `rouge_f1`); needs n >= 1."""
  if not candidates:
    raise ValueError("mean ROUGE needs at least one candidate")
  return {name: float(np.mean(values))
          for name, values in rouge_f1(candidates, references).items()}
