"""Judges: anything that says how likely one summary is preferred to another.

A judge maps aligned lists (prompt_i, first_i, second_i) to
P(first_i ≻ second_i | prompt_i) ∈ [0, 1] (the `Judge` protocol). Three
sources are wrapped here:

* the synthetic world's exact population preference P*
  (`SyntheticJudge`: the values of
  `nlhf_jax.data.annotators.PopulationPreference` with per-(prompt, summary)
  feature caching);
* any Python callable, e.g. an external LLM rater that reads the "1" / "2"
  probabilities of an "expert summary rater" prompt (`CallableJudge`);
* a trained preference-model checkpoint, through a `score_fn` supplied by
  the trainer (`PreferenceModelJudge`).

Real raters have position bias, so evaluation queries both presentation
orders and averages (`order_averaged`):

  P(a ≻ b) = ½ (J(a, b) + 1 − J(b, a)),

computed as 0.5 ± |d| with d = ½ (J(a, b) − J(b, a)) so that
P(a ≻ b) + P(b ≻ a) == 1 and P(a ≻ a) == 0.5 hold exactly in floating point.
A judge that always prefers the first position (J ≡ 1) averages to exactly
0.5. Pure numpy; no TensorFlow.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

ScoreFn = Callable[[Sequence[str], Sequence[str], Sequence[str]], object]

# Judges may return values a hair outside [0, 1] (e.g. float32 sigmoid
# round-off); these are clipped, anything further out is an error.
_TOLERANCE = 1e-6


@runtime_checkable
class Judge(Protocol):
  """P(first ≻ second | prompt) for aligned lists of equal length n."""

  def __call__(self, prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    """Returns float64 [n] of P(first_i ≻ second_i | prompts_i) in [0, 1]."""


def judge_name(judge: Judge) -> str:
  """A judge's `name` attribute, else its `__name__`, else its type name."""
  name = getattr(judge, "name", None) or getattr(judge, "__name__", None)
  return str(name or type(judge).__name__)


def check_judge_inputs(prompts: Sequence[str], first: Sequence[str],
                       second: Sequence[str]) -> int:
  """Checks three aligned lists of strings; returns their length n.

  Raises:
    ValueError: if the lengths differ.
    TypeError: if an element is not a `str` (the list and index are named).
  """
  lengths = (len(prompts), len(first), len(second))
  if len(set(lengths)) != 1:
    raise ValueError(f"lengths differ: {lengths[0]} prompts, {lengths[1]} "
                     f"first summaries, {lengths[2]} second summaries")
  for what, texts in (("prompts", prompts), ("first", first),
                      ("second", second)):
    for i, text in enumerate(texts):
      if not isinstance(text, str):
        raise TypeError(f"{what}[{i}] must be a str, got "
                        f"{type(text).__name__}: {text!r:.60}")
  return lengths[0]


def check_judge_output(values: object, n: int, name: str,
                       allow_nan: bool = False) -> np.ndarray:
  """Converts a judge's output to float64 [n] in [0, 1].

  Values within 1e-6 of [0, 1] are clipped into it. With `allow_nan`, NaN
  (a judge's "no answer") passes through unchanged.

  Raises:
    ValueError: on a wrong shape, NaN/inf or values outside [0, 1] (the
      judge and the first offending index are named).
  """
  try:
    p = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"judge {name!r} returned non-numeric output: {e}") from e
  if p.shape != (n,):
    raise ValueError(f"judge {name!r} returned shape {p.shape} for {n} "
                     f"comparisons; expected ({n},)")
  bad = ~((p >= -_TOLERANCE) & (p <= 1.0 + _TOLERANCE))  # Also NaN.
  if allow_nan:
    bad &= ~np.isnan(p)
  if bad.any():
    i = int(np.argmax(bad))
    raise ValueError(f"judge {name!r} returned {float(p[i])!r} at index {i}, "
                     f"not a probability in [0, 1] ({int(bad.sum())} bad "
                     "values)")
  return np.clip(p, 0.0, 1.0)


class CallableJudge:
  """Adapts any callable `fn(prompts, first, second) -> probabilities`.

  Use it for an external LLM judge: `fn` receives lists of strings and
  returns P(first ≻ second) per comparison (soft probabilities, e.g. the
  normalized probability of answering "1", or hard 0/1 choices). Inputs and
  outputs are validated, and calls are split into chunks of `batch_size`.

  Attributes:
    name: label used in reports and error messages.
  """

  def __init__(self, fn: ScoreFn, name: str | None = None,
               batch_size: int | None = None):
    """Wraps `fn`.

    Args:
      fn: callable (prompts, first, second) -> array-like [n] in [0, 1].
      name: label for reports; defaults to the callable's name.
      batch_size: if set, `fn` is called on at most this many comparisons
        at a time and the results are concatenated.

    Raises:
      TypeError: if `fn` is not callable.
      ValueError: if batch_size < 1.
    """
    if not callable(fn):
      raise TypeError(f"judge function must be callable, got {fn!r:.60}")
    if batch_size is not None and batch_size < 1:
      raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    self._fn = fn
    self._batch_size = batch_size
    self.name = name or getattr(fn, "__name__", type(fn).__name__)

  def __call__(self, prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    """P(first_i ≻ second_i | prompts_i): float64 [n] in [0, 1]."""
    n = check_judge_inputs(prompts, first, second)
    if n == 0:
      return np.zeros([0])
    step = self._batch_size or n
    chunks = []
    for start in range(0, n, step):
      stop = min(start + step, n)
      out = self._fn(list(prompts[start:stop]), list(first[start:stop]),
                     list(second[start:stop]))
      chunks.append(check_judge_output(out, stop - start, self.name))
    return np.concatenate(chunks)


class PreferenceModelJudge(CallableJudge):
  """A trained preference model used as a judge (the paper's P_τ side).

  The model side lives with the trainer: it supplies
  `score_fn(prompts, first, second) -> probabilities`, which tokenizes,
  runs the preference model (e.g. the sigmoid of its logit for "first is
  better") and returns float [n] in [0, 1]. This class only wraps it:
  validation, batching (`batch_size` should match the compiled batch of the
  model function) and a name for reports. Order averaging is applied by the
  tournament, or explicitly with `order_averaged`.
  """

  def __init__(self, score_fn: ScoreFn, name: str = "preference_model",
               batch_size: int | None = None):
    """See `CallableJudge.__init__`; `score_fn` is the model's function."""
    super().__init__(score_fn, name=name, batch_size=batch_size)


class SyntheticJudge:
  """The synthetic world's exact P* over canonical prompt text.

  Same values as `nlhf_jax.data.annotators.PopulationPreference` (bit for
  bit), but the feature vector f(x, y) of each (prompt, summary) is computed
  once and cached, so a tournament of P policies costs P feature passes instead
  of P (P − 1) (2 with order averaging). The prompts must be canonical
  TL;DR prompts ("SUBREDDIT: r/…\\n\\nTITLE: …\\n\\nPOST: …\\n\\nTL;DR:").
  P* is exactly antisymmetric, so order averaging leaves it unchanged.
  Pure Python/numpy.

  Attributes:
    name: "synthetic P*".
  """

  def __init__(self, max_cached: int = 1_000_000):
    """Creates the judge.

    Args:
      max_cached: the feature cache is emptied when it reaches this many
        (prompt, summary) entries.
    """
    from nlhf_jax.data import annotators  # pylint: disable=g-import-not-at-top
    self._annotators = annotators
    self._facts = annotators.PopulationPreference()  # Caches parsed prompts.
    self._features: dict[tuple[str, str], np.ndarray] = {}
    self._max_cached = max_cached
    self.name = "synthetic P*"

  def _features_of(self, index: int, prompt: str, summary: str) -> np.ndarray:
    key = (prompt, summary)
    if key not in self._features:
      try:
        facts = self._facts.facts(prompt)
      except ValueError as e:
        raise ValueError(f"prompts[{index}]: {e}") from None
      if len(self._features) >= self._max_cached:
        self._features.clear()
      self._features[key] = self._annotators.summary_features(facts, summary)
    return self._features[key]

  def __call__(self, prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    """P*(first_i ≻ second_i | prompts_i): float64 [n] in [0, 1].

    Raises:
      ValueError: if lengths differ or a prompt is not canonical (its index
        is named).
      TypeError: if an element is not a str.
    """
    n = check_judge_inputs(prompts, first, second)
    if n == 0:
      return np.zeros([0])
    fa = np.stack([self._features_of(i, x, y)
                   for i, (x, y) in enumerate(zip(prompts, first))])
    fb = np.stack([self._features_of(i, x, y)
                   for i, (x, y) in enumerate(zip(prompts, second))])
    return self._annotators.population_from_features(fa, fb)


def synthetic_judge() -> SyntheticJudge:
  """The synthetic world's exact P* judge (see `SyntheticJudge`)."""
  return SyntheticJudge()


class OrderAveragedJudge:
  """P(a ≻ b) = ½ (J(a, b) + 1 − J(b, a)) for a wrapped judge J.

  Both orders go to J in one call of 2n comparisons (prompts twice, first
  and second swapped in the second half), so a batched model judge sees
  full batches.

  Attributes:
    judge: the wrapped judge.
    name: "<inner name> (order-averaged)".
  """

  def __init__(self, judge: Judge):
    if not callable(judge):
      raise TypeError(f"judge must be callable, got {judge!r:.60}")
    self.judge = judge
    self.name = f"{judge_name(judge)} (order-averaged)"

  def __call__(self, prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    """Order-averaged P(first_i ≻ second_i): float64 [n] in [0, 1]."""
    n = check_judge_inputs(prompts, first, second)
    if n == 0:
      return np.zeros([0])
    both = self.judge(list(prompts) * 2, list(first) + list(second),
                      list(second) + list(first))
    both = check_judge_output(both, 2 * n, judge_name(self.judge))
    forward, backward = both[:n], both[n:]
    return centered_to_probability(0.5 * (forward - backward))


def centered_to_probability(d: np.ndarray) -> np.ndarray:
  """0.5 + d computed so that d and −d give values summing to 1 exactly.

  Returns 0.5 + |d| when d ≥ 0, else 1 − (0.5 + |d|); the subtraction is
  exact (Sterbenz) because 0.5 + |d| ∈ [0.5, 1].

  Args:
    d: float [...] in [−0.5, 0.5].

  Returns:
    float64 [...] in [0, 1].
  """
  d = np.asarray(d, dtype=np.float64)
  high = 0.5 + np.abs(d)
  return np.where(d >= 0, high, 1.0 - high)


def order_averaged(judge: Judge) -> OrderAveragedJudge:
  """Wraps `judge` so both presentation orders are judged and averaged.

  Idempotent: an already order-averaged judge is returned unchanged.
  """
  if isinstance(judge, OrderAveragedJudge):
    return judge
  return OrderAveragedJudge(judge)
