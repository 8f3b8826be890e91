"""The hidden annotator population of the synthetic TL;DR world.

Features (all from the observable text, so any string can be judged):
  coverage  fraction of the post's key facts the summary mentions (0 if none
            could be parsed from the post);
  gist      1 if the summary mentions the post's `issue` fact, else 0;
  length    number of words;
  style     hedge words + "!" marks + repeated word bigrams;
  wrong     facts of the same subreddit the post does not contain but the
            summary mentions (hallucinations);
  oov       fraction of words outside the world's vocabulary (garbage).

Annotator type k has a transitive utility u_k(x, y) = <w_k, f(x, y)> and
prefers y over y' with a noisy Bradley-Terry choice

  P_k(y ≻ y'|x) = σ((u_k(y) − u_k(y')) / T_k).

Workers (a fixed pool of `NUM_WORKERS` ids) belong to types; a comparison is
labelled by one uniformly drawn worker, so type k is drawn with probability
ρ_k = (workers of type k) / NUM_WORKERS and the population preference is

  P*(y ≻ y'|x) = Σ_k ρ_k P_k(y ≻ y'|x).

Each type is transitive, the mixture is not: the types rank coverage,
brevity and style differently, which produces Condorcet cycles that no
Bradley-Terry reward represents. Probabilities are computed as
0.5 ± 0.5 Σ_k ρ_k tanh(|d_k| / 2) with the sign carried separately, so
P*(a, b) + P*(b, a) == 1 and P*(a, a) == 0.5 hold exactly in floating point.

Pure Python + numpy; no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

import numpy as np

from nlhf_jax.data import synthetic_text as st

FEATURES = ("coverage", "gist", "length", "style", "wrong", "oov")


@dataclasses.dataclass(frozen=True)
class AnnotatorType:
  """One kind of rater: utility weights per feature, temperature, workers."""
  name: str
  weights: Mapping[str, float]
  temperature: float
  num_workers: int


ANNOTATOR_TYPES = (
    # Wants every fact; tolerates length.
    AnnotatorType("thorough", {"coverage": 6.0, "gist": 1.0, "length": -0.04,
                               "style": -0.4, "wrong": -2.0, "oov": -4.0},
                  temperature=0.5, num_workers=6),
    # Wants it short; the gist is enough.
    AnnotatorType("concise", {"coverage": 1.0, "gist": 3.0, "length": -0.3,
                              "style": -0.4, "wrong": -2.0, "oov": -4.0},
                  temperature=0.5, num_workers=6),
    # Cares about clean wording above all.
    AnnotatorType("stylist", {"coverage": 1.0, "gist": 1.0, "length": -0.05,
                              "style": -2.0, "wrong": -1.0, "oov": -4.0},
                  temperature=0.4, num_workers=5),
    # Skims: gist and no made-up facts; noisy.
    AnnotatorType("skimmer", {"coverage": 0.5, "gist": 2.0, "length": -0.05,
                              "style": -0.2, "wrong": -3.0, "oov": -2.0},
                  temperature=1.0, num_workers=3),
)
TYPE_NAMES = tuple(t.name for t in ANNOTATOR_TYPES)
NUM_WORKERS = sum(t.num_workers for t in ANNOTATOR_TYPES)
# [K, F] utility weights, [K] temperatures, [K] population weights ρ_k.
WEIGHTS = np.array([[t.weights[f] for f in FEATURES] for t in ANNOTATOR_TYPES])
TEMPERATURES = np.array([t.temperature for t in ANNOTATOR_TYPES])
TYPE_PROBS = np.array([t.num_workers for t in ANNOTATOR_TYPES]) / NUM_WORKERS


def _make_workers() -> tuple[tuple[str, int], ...]:
  """Fixed pool of (worker id, type index); ids look like OpenAI's."""
  rng = np.random.default_rng(20240101)
  alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "abcdefghijklmnopqrstuvwxyz0123456789"))
  types = [k for k, t in enumerate(ANNOTATOR_TYPES)
           for _ in range(t.num_workers)]
  return tuple(("".join(rng.choice(alphabet, 30)), k) for k in types)


WORKERS = _make_workers()
WORKER_TYPE = {worker: TYPE_NAMES[k] for worker, k in WORKERS}
_VOCAB = st.world_vocabulary()
_PROMPT_RE = re.compile(
    r"\ASUBREDDIT: r/(?P<subreddit>[^\n]*)\n\nTITLE: (?P<title>[^\n]*)\n\n"
    r"POST: (?P<post>.*)\n\nTL;DR:\Z", re.DOTALL)

Context = Any  # Situation | sequence of Facts | post record dict | prompt str.


def canonical_prompt(subreddit: str, title: str, post: str) -> str:
  """The OpenAI TL;DR prompt text for a post."""
  return f"SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"


def parse_prompt(prompt: str) -> tuple[str, str, str]:
  """Splits a canonical prompt into (subreddit, title, post).

  Raises:
    ValueError: if `prompt` is not in the canonical format.
  """
  match = _PROMPT_RE.match(prompt)
  if match is None:
    raise ValueError("prompt is not 'SUBREDDIT: r/..\\n\\nTITLE: ..\\n\\nPOST: "
                     f"..\\n\\nTL;DR:': {prompt[:80]!r}")
  return match["subreddit"], match["title"], match["post"]


def facts_of(context: Context) -> tuple[st.Fact, ...]:
  """The key facts of a post, from any of the accepted context forms.

  Args:
    context: a `Situation`; a sequence of `Fact`s; a post record dict with
      "post" (and optionally "subreddit"), e.g. a tldr_3_filtered row, a
      comparison row or its "info"; or a canonical prompt string. Texts are parsed
      with `synthetic_text.parse_facts`.

  Returns:
    The facts, ordered by slot.
  """
  if isinstance(context, st.Situation):
    return context.facts
  if isinstance(context, str):
    subreddit, _, post = parse_prompt(context)
    return st.parse_facts(post, subreddit)
  if isinstance(context, Mapping):
    if "post" not in context and "info" in context:  # A comparison row.
      context = context["info"]
    if "post" not in context:
      raise ValueError(f"post record has no 'post' key: keys {sorted(context)}")
    return st.parse_facts(context["post"], context.get("subreddit"))
  facts = tuple(context)
  if not all(isinstance(f, st.Fact) for f in facts):
    raise TypeError(f"expected Situation, Facts, post dict or prompt; got "
                    f"{type(context).__name__}")
  return facts


def summary_features(facts: Sequence[st.Fact], summary: str) -> np.ndarray:
  """Feature vector f(x, y), ordered as `FEATURES`.

  Args:
    facts: the post's key facts.
    summary: any text (a leading space is ignored like all whitespace).

  Returns:
    float64 array [len(FEATURES)].
  """
  words = st.tokenize(summary)
  wordset = set(words)
  covered = [st.mentions(f, wordset) for f in facts]
  issue = [c for f, c in zip(facts, covered) if f.slot == "issue"]
  true_keys = {k for f in facts for k in f.keys}
  true_ids = {(f.subreddit, f.slot, f.post) for f in facts}
  wrong = 0
  for sub in {f.subreddit for f in facts}:
    for slot_facts in st.FACTS[sub].values():
      for g in slot_facts:
        if ((g.subreddit, g.slot, g.post) not in true_ids
            and st.mentions(g, wordset) and not set(g.keys) <= true_keys):
          wrong += 1
  bigrams = list(zip(words, words[1:]))
  style = (sum(w in st.HEDGES for w in words) + summary.count("!")
           + len(bigrams) - len(set(bigrams)))
  oov = sum(w not in _VOCAB for w in words) / len(words) if words else 0.0
  return np.array([sum(covered) / len(facts) if facts else 0.0,
                   float(any(issue)), float(len(words)), float(style),
                   float(wrong), oov])


def utilities(features: np.ndarray) -> np.ndarray:
  """u_k = Σ_f features_f WEIGHTS[k, f]: [..., F] -> [..., K].

  Accumulated elementwise in a fixed order (not BLAS), so equal feature rows
  give bit-identical utilities whatever the batch shape; this is what makes
  P*(a, b) + P*(b, a) == 1 exact in `preference_matrix`.
  """
  features = np.asarray(features, dtype=np.float64)
  u = np.zeros(features.shape[:-1] + (len(ANNOTATOR_TYPES),))
  for f in range(len(FEATURES)):
    u += features[..., f, None] * WEIGHTS[:, f]
  return u


def _mix(h: np.ndarray) -> np.ndarray:
  """Σ_k TYPE_PROBS[k] h[..., k] in a fixed order: [..., K] -> [...]."""
  total = np.zeros(h.shape[:-1])
  for k, rho in enumerate(TYPE_PROBS):
    total += rho * h[..., k]
  return total


def _signed_half_tanh(d: np.ndarray) -> np.ndarray:
  """sign(d) tanh(|d| / 2): exactly odd in d."""
  return np.sign(d) * np.tanh(np.abs(d) / 2)


def _prob_from_centered(s: np.ndarray) -> np.ndarray:
  """0.5 + s with exact antisymmetry: returns 1 − (0.5 + |s|) when s < 0."""
  hi = 0.5 + np.abs(s)
  return np.where(s >= 0, hi, 1.0 - hi)


def type_preferences_from_features(fa: np.ndarray,
                                   fb: np.ndarray) -> np.ndarray:
  """P_k(a ≻ b) = σ((u_k(a) − u_k(b)) / T_k): [..., F] x2 -> [..., K]."""
  d = (utilities(fa) - utilities(fb)) / TEMPERATURES
  return _prob_from_centered(0.5 * _signed_half_tanh(d))


def population_from_features(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
  """P*(a ≻ b) = Σ_k ρ_k P_k(a ≻ b): [..., F] x2 -> [...]."""
  d = (utilities(fa) - utilities(fb)) / TEMPERATURES
  return _prob_from_centered(0.5 * _mix(_signed_half_tanh(d)))


def type_preferences(context: Context, summary_a: str,
                     summary_b: str) -> np.ndarray:
  """Per-type P_k(a ≻ b | x) as float64 [K] (order `TYPE_NAMES`)."""
  facts = facts_of(context)
  return type_preferences_from_features(summary_features(facts, summary_a),
                                        summary_features(facts, summary_b))


def population_preference(context: Context, summary_a: str,
                          summary_b: str) -> float:
  """P*(a ≻ b | x), exactly antisymmetric. See `facts_of` for `context`."""
  facts = facts_of(context)
  return float(population_from_features(summary_features(facts, summary_a),
                                        summary_features(facts, summary_b)))


def population_preference_batch(contexts: Sequence[Context],
                                summaries_a: Sequence[str],
                                summaries_b: Sequence[str]) -> np.ndarray:
  """P*(a_i ≻ b_i | x_i) for aligned lists: returns float64 [n]."""
  if not len(contexts) == len(summaries_a) == len(summaries_b):
    raise ValueError(f"lengths differ: {len(contexts)} contexts, "
                     f"{len(summaries_a)} summaries_a, {len(summaries_b)} b")
  if not contexts:
    return np.zeros([0])
  facts = [facts_of(c) for c in contexts]
  fa = np.stack([summary_features(f, s) for f, s in zip(facts, summaries_a)])
  fb = np.stack([summary_features(f, s) for f, s in zip(facts, summaries_b)])
  return population_from_features(fa, fb)


def preference_matrix(context: Context, summaries: Sequence[str]) -> np.ndarray:
  """M[i, j] = P*(y_i ≻ y_j | x): float64 [n, n], M + M.T == 1 exactly."""
  facts = facts_of(context)
  f = np.stack([summary_features(facts, s) for s in summaries])
  return population_from_features(f[:, None, :], f[None, :, :])


def confidence_from_probability(p: np.ndarray | float) -> np.ndarray:
  """Likert confidence 1..9 from a rater's P_k: 1 + round(8 |2p − 1|)."""
  return 1 + np.rint(8 * np.abs(2 * np.asarray(p) - 1)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class AnnotatorLabel:
  """One sampled human-like judgement of (summary 0, summary 1)."""
  worker: str
  annotator_type: str
  choice: int  # 0 or 1: index of the preferred summary.
  confidence: int  # 1..9.
  prob_first: float  # The rater type's P_k(summary 0 ≻ summary 1).


def sample_annotator_label(rng: np.random.Generator, context: Context,
                           summary_a: str, summary_b: str) -> AnnotatorLabel:
  """Draws one worker uniformly from `WORKERS`, then a label from its type.

  choice = 0 with probability P_k(a ≻ b | x) for the worker's type k, so
  marginally choice = 0 with probability P*(a ≻ b | x).
  """
  facts = facts_of(context)
  return label_from_features(rng, summary_features(facts, summary_a),
                             summary_features(facts, summary_b))


def label_from_features(rng: np.random.Generator, fa: np.ndarray,
                        fb: np.ndarray) -> AnnotatorLabel:
  """`sample_annotator_label` on precomputed features [F] of a and b."""
  worker, k = WORKERS[int(rng.integers(NUM_WORKERS))]
  p = float(type_preferences_from_features(fa, fb)[k])
  choice = 0 if rng.random() < p else 1
  return AnnotatorLabel(worker, TYPE_NAMES[k], choice,
                        int(confidence_from_probability(p)), p)


def agreement_ceiling(p_star: np.ndarray) -> float:
  """E[max(P*, 1 − P*)]: best achievable accuracy on sampled labels."""
  p_star = np.asarray(p_star, dtype=np.float64)
  return float(np.mean(np.maximum(p_star, 1 - p_star)))


class PopulationPreference:
  """The exact population preference P*(a ≻ b | x) over prompt text.

  Facts are recovered from the canonical prompt by `parse_facts` (inventory
  phrase matching), so it needs nothing but text. Parsed prompts are
  cached. (The evaluation judge `nlhf_jax.judges.text.SyntheticJudge`
  gives the same values with summary features cached too, for tournaments.)
  """

  def __init__(self):
    self._cache: dict[str, tuple[st.Fact, ...]] = {}

  def facts(self, prompt: str) -> tuple[st.Fact, ...]:
    """Key facts parsed from a canonical prompt (cached)."""
    if prompt not in self._cache:
      self._cache[prompt] = facts_of(prompt)
    return self._cache[prompt]

  def __call__(self, prompts: Sequence[str], summaries_a: Sequence[str],
               summaries_b: Sequence[str]) -> np.ndarray:
    """P*(a_i ≻ b_i | prompt_i): float64 [n] in [0, 1].

    Raises:
      ValueError: if lengths differ or a prompt is not canonical (its index
        is named).
    """
    facts = []
    for i, prompt in enumerate(prompts):
      try:
        facts.append(self.facts(prompt))
      except ValueError as e:
        raise ValueError(f"prompts[{i}]: {e}") from None
    return population_preference_batch(facts, summaries_a, summaries_b)
