"""Tests for finite-answer worlds: P*, winners, JSON and the ready worlds."""

import json

import numpy as np
import pytest

from nlhf_jax.finite_world import population as pop

R, G, B = pop.COLOURS


def test_majority_population_by_hand():
  # 60% red > green > blue, 40% green > blue > red (kitchen prompt).
  prefs = pop.ready_world("majority").preference()[0]
  np.testing.assert_allclose(prefs[:3, :3], [[0.5, 0.6, 0.6],
                                             [0.4, 0.5, 1.0],
                                             [0.4, 0.0, 0.5]], atol=1e-15)
  np.testing.assert_array_equal(prefs[:3, 3], 1.0)  # Answers beat "other".
  np.testing.assert_array_equal(prefs[3, :3], 0.0)
  assert prefs[3, 3] == 0.5


@pytest.mark.parametrize("name, condorcet, borda", [
    ("majority", [0, 2], [1, 0]),  # Condorcet ≠ Borda at both prompts.
    ("iia", [0, 0], [0, 1]),       # Borda flips when blue is offered.
    ("cyclic", [None, None], [None, 1]),
])
def test_ready_worlds_winners(name, condorcet, borda):
  world = pop.ready_world(name)
  assert world.condorcet_winners() == condorcet
  assert world.borda_winners() == borda


def test_iia_pair_shares_red_vs_green():
  prefs = pop.ready_world("iia").preference()
  assert prefs[0, 0, 1] == pytest.approx(prefs[1, 0, 1]) == pytest.approx(0.6)
  # Blue is not offered at the first prompt: it loses like "other".
  np.testing.assert_array_equal(prefs[0, :2, 2], 1.0)
  assert prefs[0, 2, 3] == 0.5


def test_preferences_are_valid_and_antisymmetric():
  for world in pop.READY.values():
    prefs = world.preference()
    np.testing.assert_allclose(prefs + np.swapaxes(prefs, 1, 2), 1.0,
                               atol=1e-15)
    assert prefs.shape == (len(world.prompts), 4, 4)


def test_json_round_trip(tmp_path):
  world = pop.ready_world("iia")
  path = tmp_path / "iia.json"
  path.write_text(json.dumps(world.to_json()))
  loaded = pop.load_world(str(path))
  assert loaded == world
  np.testing.assert_array_equal(loaded.preference(), world.preference())


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["prompts"][0]["voters"][0].update(weight=0.5),
     "weights sum to 0.9"),
    (lambda s: s["prompts"][1]["voters"][0].update(ranking=["pink"]),
     r"prompts\[1\], voters\[0\]: ranking"),
    (lambda s: s.update(answers=["red", "red", "green"]), "distinct"),
    (lambda s: s["prompts"][0].update(offered=["red"]), "offered"),
    (lambda s: s["prompts"][0].pop("voters"), "malformed world"),
])
def test_bad_worlds_are_named(tmp_path, edit, message):
  spec = pop.ready_world("majority").to_json()
  edit(spec)
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(spec))
  with pytest.raises(ValueError, match=message):
    pop.load_world(str(path))


def test_unknown_ready_world():
  with pytest.raises(ValueError, match="ready ones"):
    pop.ready_world("nope")
