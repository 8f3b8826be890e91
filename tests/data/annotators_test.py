"""Tests of the hidden annotator population and the synthetic judge."""

import itertools

import numpy as np
import pytest
from scipy import optimize

from nlhf_jax.data import annotators
from nlhf_jax.data import synthetic_text as st

_F = st.FACTS["relationships"]
# "My boyfriend keeps texting an ex ... for almost three months ... I tried
# talking about it calmly ... should I end things?"
_SITUATION = st.Situation("relationships", (
    _F["who"][0], _F["issue"][0], _F["time"][1], _F["tried"][0], _F["ask"][0]))
_POST = ("I (25 F) need some advice. My boyfriend keeps texting an ex. It has "
         "been like this for almost three months.\n\nI tried talking about it "
         "calmly, but nothing changed.\n\nShould I end things?")
_PROMPT = annotators.canonical_prompt("relationships",
                                      "Boyfriend texts an ex, what do I do?",
                                      _POST)
# A Condorcet triple: short but shouting; complete but hedged; padded.
_CYCLE = ("texts an ex and it got worse!!",
          "basically boyfriend texts an ex for three months, tried talking - "
          "should I end it!!",
          "basically texts an ex for three months and it got worse and "
          "nothing changed - should I end it")
_GARBAGE = ("", " ", "!!!!", "xq zzv 123 ###", "ex ex ex ex ex ex ex ex",
            "ünïcödé 漢字 🙂", "a" * 5000, "boyfriend girlfriend husband wife")


def _fit_bradley_terry(p: np.ndarray) -> np.ndarray:
  """Scores r minimising Σ_{i≠j} CE(P[i, j], σ(r_i − r_j)); r_0 pinned to 0."""
  n = len(p)
  off = ~np.eye(n, dtype=bool)

  def loss(free):
    r = np.concatenate([[0.0], free])
    d = r[:, None] - r[None, :]
    return -np.sum((p * -np.logaddexp(0, -d) + (1 - p) * -np.logaddexp(0, d))
                   [off])

  return np.concatenate([[0.0], optimize.minimize(loss, np.zeros(n - 1)).x])


def test_prompt_parsing_recovers_the_facts():
  assert st.parse_facts(_POST, "relationships") == _SITUATION.facts
  assert annotators.facts_of(_PROMPT) == _SITUATION.facts
  assert annotators.facts_of({"post": _POST, "subreddit": "relationships",
                              "title": "t"}) == _SITUATION.facts
  assert annotators.facts_of({"info": {"post": _POST}}) == _SITUATION.facts
  assert annotators.PopulationPreference().facts(_PROMPT) == _SITUATION.facts


def test_features_read_coverage_length_style_and_wrong_facts():
  def feats(text):
    return dict(zip(annotators.FEATURES,
                    annotators.summary_features(_SITUATION.facts, text)))

  ref = feats("boyfriend texts an ex for three months - should I end it?")
  assert ref == {"coverage": 0.8, "gist": 1.0, "length": 11.0, "style": 0.0,
                 "wrong": 0.0, "oov": 0.0}
  noisy = feats("girlfriend basically texts an ex for two years lol!!")
  assert noisy["coverage"] == 0.2 and noisy["wrong"] == 2.0
  assert noisy["style"] == 4.0  # basically, lol, !, !
  looping = feats("texts an ex texts an ex")
  assert looping["style"] == 2.0  # Two repeated bigrams.
  garbage = feats("xq zzv boyfriend")
  assert garbage["oov"] == pytest.approx(2 / 3) and garbage["gist"] == 0.0


def test_population_preference_is_exactly_antisymmetric():
  rng = np.random.default_rng(0)
  texts = list(_CYCLE) + list(_GARBAGE)
  for _ in range(50):
    texts.append(st.write_summary(rng, _SITUATION,
                                  str(rng.choice(st.POLICIES)), post=_POST))
  for a, b in itertools.product(texts, repeat=2):
    p_ab = annotators.population_preference(_SITUATION, a, b)
    assert p_ab + annotators.population_preference(_SITUATION, b, a) == 1.0
    assert 0.0 <= p_ab <= 1.0
  for a in texts:
    assert annotators.population_preference(_SITUATION, a, a) == 0.5
  m = annotators.preference_matrix(_PROMPT, texts)
  assert np.all(m + m.T == 1.0) and np.all(np.diag(m) == 0.5)
  batch = annotators.population_preference_batch(
      [_PROMPT] * len(texts), texts, texts[::-1])
  np.testing.assert_array_equal(batch, m[np.arange(len(texts)),
                                         np.arange(len(texts))[::-1]])


def test_population_preference_is_the_weighted_mixture_of_types():
  a, b = _CYCLE[0], _CYCLE[1]
  per_type = annotators.type_preferences(_SITUATION, a, b)
  f = [annotators.summary_features(_SITUATION.facts, t) for t in (a, b)]
  d = (annotators.utilities(f[0]) - annotators.utilities(f[1]))
  np.testing.assert_allclose(per_type,
                             1 / (1 + np.exp(-d / annotators.TEMPERATURES)))
  np.testing.assert_allclose(
      annotators.population_preference(_SITUATION, a, b),
      per_type @ annotators.TYPE_PROBS)
  assert annotators.TYPE_PROBS.sum() == pytest.approx(1.0)


def test_condorcet_cycle_that_bradley_terry_cannot_fit():
  m = annotators.preference_matrix(_PROMPT, _CYCLE)
  links = [m[0, 1], m[1, 2], m[2, 0]]
  print(f"\nP*(y1>y2)={links[0]:.3f} P*(y2>y3)={links[1]:.3f} "
        f"P*(y3>y1)={links[2]:.3f}")
  assert min(links) > 0.55
  # Each type ranks the three transitively (by its utility), but the types
  # disagree on which one is best: every summary is some type's favourite.
  u = annotators.utilities(np.stack(
      [annotators.summary_features(_SITUATION.facts, y) for y in _CYCLE]))
  favourites = dict(zip(annotators.TYPE_NAMES, np.argmax(u, axis=0)))
  print(f"favourite summary per type: {favourites}")
  assert set(favourites.values()) == {0, 1, 2}
  r = _fit_bradley_terry(m)
  bt = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
  wrong = [(i, j) for i, j in ((0, 1), (1, 2), (2, 0))
           if (r[i] - r[j] > 0) != (m[i, j] > 0.5) or r[i] == r[j]]
  print(f"best BT scores {np.round(r, 4)}; mispredicted links {wrong}; "
        f"max |BT - P*| = {np.abs(bt - m).max():.3f}")
  assert wrong
  assert np.abs(bt - m).max() > 0.05


def test_sampled_labels_match_each_type_probability():
  a, b = _CYCLE[0], _CYCLE[2]
  per_type = annotators.type_preferences(_SITUATION, a, b)
  rng = np.random.default_rng(1)
  labels = [annotators.sample_annotator_label(rng, _SITUATION, a, b)
            for _ in range(6000)]
  for k, name in enumerate(annotators.TYPE_NAMES):
    mine = [lab for lab in labels if lab.annotator_type == name]
    p = per_type[k]
    rate = np.mean([lab.choice == 0 for lab in mine])
    assert abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / len(mine)) + 1e-9, name
    assert abs(len(mine) / len(labels) - annotators.TYPE_PROBS[k]) < 0.03
    expected_conf = annotators.confidence_from_probability(p)
    assert all(lab.confidence == expected_conf for lab in mine)
    assert all(annotators.WORKER_TYPE[lab.worker] == name for lab in mine)


def test_confidence_maps_probability_to_likert_scale():
  conf = annotators.confidence_from_probability(np.linspace(0, 1, 101))
  assert conf.min() == 1 and conf.max() == 9
  assert conf[50] == 1 and conf[0] == conf[-1] == 9
  assert np.all(np.diff(conf[50:]) >= 0)


def test_worker_pool_is_fixed_and_covers_every_type():
  assert len(annotators.WORKERS) == annotators.NUM_WORKERS == 20
  assert len({w for w, _ in annotators.WORKERS}) == 20
  assert set(annotators.WORKER_TYPE.values()) == set(annotators.TYPE_NAMES)


def test_judge_returns_probabilities_on_garbage():
  judge = annotators.PopulationPreference()
  rng = np.random.default_rng(2)
  words = sorted(st.world_vocabulary())
  random_text = [" ".join(rng.choice(words, size=int(rng.integers(0, 40))))
                 for _ in range(20)]
  texts = list(_GARBAGE) + random_text
  other = annotators.canonical_prompt("nosuchsub", "", "no facts\n\nat all")
  prompts = [_PROMPT, other] * len(texts)
  a = texts * 2
  b = list(reversed(texts)) * 2
  p = judge(prompts, a, b)
  assert p.shape == (len(a),) and p.dtype == np.float64
  assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
  np.testing.assert_array_equal(p + judge(prompts, b, a), 1.0)
  good = "boyfriend texts an ex for three months - should I end it?"
  assert judge([_PROMPT], [good], [""])[0] > 0.7
  assert judge([_PROMPT], [good], ["xq zzv vvq qqz"])[0] > 0.9
  assert judge([], [], []).shape == (0,)


def test_judge_rejects_bad_input_with_clear_errors():
  judge = annotators.PopulationPreference()
  with pytest.raises(ValueError, match=r"prompts\[1\]: prompt is not"):
    judge([_PROMPT, "TL;DR:"], ["a", "b"], ["c", "d"])
  with pytest.raises(ValueError, match="lengths differ"):
    judge([_PROMPT], ["a", "b"], ["c"])
  with pytest.raises(ValueError, match="no 'post' key"):
    annotators.facts_of({"title": "x"})
  with pytest.raises(TypeError, match="expected Situation"):
    annotators.facts_of([1, 2])
