"""Finite-answer worlds: answers, prompts and their voter populations.

A world has K answer strings shared by its prompts. Prompt x offers a
subset S_x of them (all by default) and has a population of voters, each
a ranking of offered answers (best first) with a weight; weights sum to 1.
The exact population preference over the K + 1 outcomes (the answers, then
"other", index K) is

  P*_x(a ≻ b) = Σ_v w_v P_v(a ≻ b)      for a, b ∈ S_x,
  P*_x(a ≻ b) = 1, P*_x(b ≻ a) = 0      for a ∈ S_x, b ∉ S_x,
  P*_x(a ≻ b) = ½                       for a, b ∉ S_x,

where P_v(a ≻ b) = 1 if voter v ranks a above b, ½ if it ranks neither
(`tabular.games.strict_order_preference`). Answers not offered at x and
every response outside the answer set ("other") lose to each offered
answer and tie with each other. The Condorcet winner of x beats every
other offered answer with probability > ½; its Borda winner maximises
Σ_b P*_x(a ≻ b) over offered b (with full rankings, the Borda count up to
an affine map).

Worlds are built in code, read from JSON (`load_world`, the format of
`World.to_json`) or taken from `READY` (see `ready_world`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional, Sequence

import numpy as np

from nlhf_jax.tabular import games

OTHER = "other"  # The outcome of every response outside the answer set.
_WEIGHT_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Voters:
  """Voters who share one ranking.

  Attributes:
    ranking: offered answers from most to least preferred; pairs with an
      unlisted offered answer are ties.
    weight: their share of the prompt's population, > 0.
  """

  ranking: tuple[str, ...]
  weight: float


@dataclasses.dataclass(frozen=True)
class Prompt:
  """One prompt: its text, the answers it offers and its population.

  Attributes:
    text: the prompt (the policy's input).
    voters: the population; weights sum to 1.
    offered: the answers it offers; empty: all of the world's answers.
  """

  text: str
  voters: tuple[Voters, ...]
  offered: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class World:
  """A finite-answer world, validated on construction.

  Attributes:
    name: label in reports.
    answers: the K answer strings (distinct, non-empty, no "other").
    prompts: the prompts (distinct texts), each a contextual game.
  """

  name: str
  answers: tuple[str, ...]
  prompts: tuple[Prompt, ...]

  def __post_init__(self):
    where = f"world {self.name!r}"
    answers = tuple(self.answers)
    if len(answers) < 2 or len(set(answers)) != len(answers):
      raise ValueError(f"{where}: answers must be >= 2 distinct strings; "
                       f"got {list(answers)}")
    for a in answers:
      if not isinstance(a, str) or not a.strip() or a == OTHER:
        raise ValueError(f"{where}: answer {a!r} must be a non-empty string "
                         f"other than {OTHER!r}")
    if not self.prompts:
      raise ValueError(f"{where}: no prompts")
    texts = [p.text for p in self.prompts]
    if len(set(texts)) != len(texts):
      raise ValueError(f"{where}: prompt texts must be distinct")
    for i, prompt in enumerate(self.prompts):
      _check_prompt(prompt, answers, f"{where}, prompts[{i}]")

  @property
  def num_answers(self) -> int:
    """K."""
    return len(self.answers)

  @property
  def outcomes(self) -> tuple[str, ...]:
    """The K answers, then "other" (index K)."""
    return self.answers + (OTHER,)

  def offered_mask(self) -> np.ndarray:
    """bool (X, K + 1): answer k is offered at prompt x ("other" never)."""
    mask = np.zeros((len(self.prompts), self.num_answers + 1), bool)
    for x, prompt in enumerate(self.prompts):
      for a in prompt.offered or self.answers:
        mask[x, self.answers.index(a)] = True
    return mask

  def preference(self) -> np.ndarray:
    """P*, float64 (X, K + 1, K + 1) over the outcomes (module docstring)."""
    n = self.num_answers + 1
    out = np.empty((len(self.prompts), n, n))
    for x, (prompt, offered) in enumerate(zip(self.prompts,
                                              self.offered_mask())):
      voters = np.stack([games.strict_order_preference(
          [self.answers.index(a) for a in v.ranking], n)
                         for v in prompt.voters])
      weights = np.array([v.weight for v in prompt.voters])
      prefs = np.einsum("v,vij->ij", weights / weights.sum(), voters)
      prefs = np.where(offered[:, None] & ~offered[None, :], 1.0, prefs)
      prefs = np.where(~offered[:, None] & offered[None, :], 0.0, prefs)
      prefs = np.where(~offered[:, None] & ~offered[None, :], 0.5, prefs)
      out[x] = prefs
    return games.as_preference_matrix(out, name=f"P* of {self.name}")

  def condorcet_winners(self) -> list[Optional[int]]:
    """Per prompt, the answer beating every other offered one, or None."""
    prefs, offered = self.preference(), self.offered_mask()
    return [condorcet_winner(p, o) for p, o in zip(prefs, offered)]

  def borda_winners(self) -> list[Optional[int]]:
    """Per prompt, the offered answer of largest Borda score, None on a tie."""
    prefs, offered = self.preference(), self.offered_mask()
    return [borda_winner(p, o) for p, o in zip(prefs, offered)]

  def to_json(self) -> dict[str, Any]:
    """The JSON form read by `world_from_json`."""
    return {"name": self.name, "answers": list(self.answers),
            "prompts": [{"text": p.text, "offered": list(p.offered),
                         "voters": [{"ranking": list(v.ranking),
                                     "weight": v.weight} for v in p.voters]}
                        for p in self.prompts]}


def _check_prompt(prompt: Prompt, answers: Sequence[str], where: str) -> None:
  """ValueError naming `where` unless the prompt is well formed."""
  if not isinstance(prompt.text, str) or not prompt.text.strip():
    raise ValueError(f"{where}: text must be a non-empty string")
  offered = tuple(prompt.offered) or tuple(answers)
  unknown = [a for a in offered if a not in answers]
  if unknown or len(set(offered)) != len(offered) or len(offered) < 2:
    raise ValueError(f"{where}: offered must list >= 2 distinct answers of "
                     f"{list(answers)}; got {list(prompt.offered)}")
  if not prompt.voters:
    raise ValueError(f"{where}: no voters")
  for j, v in enumerate(prompt.voters):
    bad = [a for a in v.ranking if a not in offered]
    if bad or len(set(v.ranking)) != len(v.ranking) or not v.ranking:
      raise ValueError(f"{where}, voters[{j}]: ranking must list distinct "
                       f"offered answers {list(offered)}; got "
                       f"{list(v.ranking)}")
    if not np.isfinite(v.weight) or v.weight <= 0:
      raise ValueError(f"{where}, voters[{j}]: weight must be > 0; got "
                       f"{v.weight!r}")
  total = sum(v.weight for v in prompt.voters)
  if abs(total - 1.0) > _WEIGHT_TOLERANCE:
    raise ValueError(f"{where}: voter weights sum to {total:g}, not 1")


def condorcet_winner(prefs: np.ndarray,
                     offered: Optional[np.ndarray] = None) -> Optional[int]:
  """The offered response with P(a ≻ b) > ½ for every other offered b.

  Args:
    prefs: one preference matrix (n, n).
    offered: bool (n,) of the candidates; None: all.

  Returns:
    Its index, or None when there is none (a cycle or a tie).
  """
  n = prefs.shape[-1]
  offered = np.ones(n, bool) if offered is None else np.asarray(offered)
  for a in np.flatnonzero(offered):
    others = offered.copy()
    others[a] = False
    if np.all(prefs[a, others] > 0.5):
      return int(a)
  return None


def borda_scores(prefs: np.ndarray,
                 offered: Optional[np.ndarray] = None) -> np.ndarray:
  """Σ_b P(a ≻ b) over the offered b ≠ a, shape (n,)."""
  n = prefs.shape[-1]
  offered = np.ones(n, bool) if offered is None else np.asarray(offered)
  inner = np.where(offered[None, :], prefs, 0.0)
  return inner.sum(axis=-1) - 0.5 * offered


def borda_winner(prefs: np.ndarray,
                 offered: Optional[np.ndarray] = None) -> Optional[int]:
  """The offered response of largest Borda score; None if several tie."""
  n = prefs.shape[-1]
  offered = np.ones(n, bool) if offered is None else np.asarray(offered)
  scores = np.where(offered, borda_scores(prefs, offered), -np.inf)
  best = np.flatnonzero(scores >= scores.max() - _WEIGHT_TOLERANCE)
  return int(best[0]) if best.size == 1 else None


# Reading and the ready worlds ------------------------------------------------


def world_from_json(spec: Any, where: str = "world") -> World:
  """A World from its JSON form (`World.to_json`).

  Raises:
    ValueError: naming the missing or malformed field.
  """
  try:
    prompts = tuple(
        Prompt(text=p["text"], offered=tuple(p.get("offered", ())),
               voters=tuple(Voters(tuple(v["ranking"]), float(v["weight"]))
                            for v in p["voters"]))
        for p in spec["prompts"])
    return World(name=str(spec["name"]), answers=tuple(spec["answers"]),
                 prompts=prompts)
  except (KeyError, TypeError) as e:
    raise ValueError(f"{where}: malformed world ({type(e).__name__}: {e}); "
                     "expected {'name', 'answers': [...], 'prompts': "
                     "[{'text', 'offered'?, 'voters': [{'ranking', "
                     "'weight'}]}]}") from None


def load_world(path: str) -> World:
  """Reads a world from a JSON file (ValueError names the file)."""
  with open(path, encoding="utf-8") as f:
    try:
      spec = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not JSON ({e})") from None
  return world_from_json(spec, where=path)


def _voters(*pairs: tuple[str, float]) -> tuple[Voters, ...]:
  return tuple(Voters(tuple(r.split(">")), w) for r, w in pairs)


COLOURS = ("red", "green", "deep blue")
R, G, B = COLOURS

READY = {
    # Condorcet winner ≠ Borda winner at both prompts.
    "majority": World("majority", COLOURS, (
        Prompt("which colour for the kitchen ?",
               _voters((f"{R}>{G}>{B}", 0.6), (f"{G}>{B}>{R}", 0.4))),
        Prompt("which colour for the door ?",
               _voters((f"{B}>{R}>{G}", 0.55), (f"{R}>{G}>{B}", 0.45))))),
    # The same voters on red vs green, without and with an irrelevant
    # third answer: Borda's (RLHF's) winner flips, the Condorcet winner not.
    "iia": World("iia", COLOURS, (
        Prompt("pick one of two colours .",
               _voters((f"{R}>{G}", 0.6), (f"{G}>{R}", 0.4)),
               offered=(R, G)),
        Prompt("pick one of three colours .",
               _voters((f"{R}>{G}>{B}", 0.6), (f"{G}>{B}>{R}", 0.4))))),
    # Condorcet cycles: a symmetric one (maximal lottery uniform) and a
    # lopsided one (every pairwise majority, a non-uniform lottery).
    "cyclic": World("cyclic", COLOURS, (
        Prompt("which colour for the car ?",
               _voters((f"{R}>{G}>{B}", 1 / 3), (f"{G}>{B}>{R}", 1 / 3),
                       (f"{B}>{R}>{G}", 1 / 3))),
        Prompt("which colour for the bike ?",
               _voters((f"{R}>{G}>{B}", 0.4), (f"{G}>{B}>{R}", 0.35),
                       (f"{B}>{R}>{G}", 0.25))))),
}


def ready_world(name: str) -> World:
  """One of the ready worlds (`READY`): 'majority', 'iia' or 'cyclic'."""
  if name not in READY:
    raise ValueError(f"unknown world {name!r}; ready ones: {sorted(READY)}")
  return READY[name]
