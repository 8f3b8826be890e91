"""The paper's worked examples (reference/paper.md §2), built from definitions.

- three_type_population: three types of humans whose population preference
  is non-transitive; its Nash equilibrium is close to uniform while the
  Bradley-Terry (RLHF) optimum is a single response that flips with sign(eps).
- elo_example: Elo scores (0, log 9, log 2), a Bradley-Terry preference; on
  the restricted set pi(y1) = 2 pi(y2) the Elo maximiser loses to the
  preference maximiser, 49/99 to 50/99.
- nontransitive dice {2,4,9}, {1,6,8}, {3,5,7}: each die beats the next with
  probability 5/9; the Nash equilibrium is uniform.
"""

import dataclasses
import itertools
from typing import Sequence

import numpy as np

from nlhf_jax.tabular import bradley_terry
from nlhf_jax.tabular import equilibrium
from nlhf_jax.tabular import games

NONTRANSITIVE_DICE = ((2, 4, 9), (1, 6, 8), (3, 5, 7))


def three_type_population(eps: float) -> np.ndarray:
  """Population preference P_eps of the paper's three types of humans (§3.2).

  Type 1 (probability 1/3 - eps) strictly prefers y2 > y1, type 2
  (1/3 + eps/2) prefers y1 > y3, type 3 (1/3 + eps/2) prefers y3 > y2; every
  other comparison is a tie. Averaging gives P_eps(y2 > y1) = 2/3 - eps/2,
  P_eps(y3 > y2) = 2/3 + eps/4 and P_eps(y1 > y3) = 2/3 + eps/4.

  Args:
    eps: population shift, |eps| <= 1/3.

  Returns:
    P_eps, shape (3, 3), indices 0, 1, 2 for y1, y2, y3.
  """
  if not abs(eps) <= 1.0 / 3.0:
    raise ValueError(f"eps must satisfy |eps| <= 1/3 (type probabilities >= "
                     f"0); got {eps}")
  probs = np.array([1 / 3 - eps, 1 / 3 + eps / 2, 1 / 3 + eps / 2])
  types = np.stack([
      games.strict_order_preference([1, 0], 3),
      games.strict_order_preference([0, 2], 3),
      games.strict_order_preference([2, 1], 3),
  ])
  return games.population_preference(probs, types)


def three_type_nash(eps: float) -> np.ndarray:
  """The paper's Nash equilibrium (1/3 + eps/2, 1/3 + eps/2, 1/3 - eps)."""
  return np.array([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps])


@dataclasses.dataclass(frozen=True)
class EloExample:
  """The Elo counter-example of App. A.

  Attributes:
    scores: Elo scores R, shape (3,).
    prefs: the Bradley-Terry preference sigmoid(R_i - R_j), shape (3, 3).
    restricted_vertices: the two extreme points of S = {pi(y1) = 2 pi(y2)},
      shape (2, 3).
    elo_max: argmax over S of the expected Elo score, shape (3,).
    preference_max: the Nash equilibrium of the game restricted to S,
      shape (3,).
    preference_max_wins: P(preference_max > elo_max).
  """
  scores: np.ndarray
  prefs: np.ndarray
  restricted_vertices: np.ndarray
  elo_max: np.ndarray
  preference_max: np.ndarray
  preference_max_wins: float


def elo_example() -> EloExample:
  """Builds the App. A example and solves both problems on S.

  S = conv{(2/3, 1/3, 0), (0, 0, 1)}. The expected Elo score is linear, so it
  is maximised at a vertex of S; the preference maximiser is the Nash
  equilibrium of the game restricted to S (solved by LP).

  Returns:
    EloExample with elo_max = (2/3, 1/3, 0), preference_max = (0, 0, 1) and
    preference_max_wins = 50/99.
  """
  scores = np.array([0.0, np.log(9.0), np.log(2.0)])
  prefs = bradley_terry.bradley_terry_matrix(scores)
  vertices = np.array([[2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0]])
  elo_max = vertices[np.argmax(vertices @ scores)]
  preference_max, _ = equilibrium.solve_restricted_nash(prefs, vertices)
  wins = float(equilibrium.policy_preference(prefs, preference_max, elo_max))
  return EloExample(
      scores=scores,
      prefs=prefs,
      restricted_vertices=vertices,
      elo_max=elo_max,
      preference_max=preference_max,
      preference_max_wins=wins)


def dice_preference_matrix(dice: Sequence[Sequence[float]]) -> np.ndarray:
  """P[a, b] = P(die a rolls higher than die b), ties counted as 1/2.

  Each die is a list of equally likely faces; all face pairs are enumerated,
  so the result is exact up to one division.

  Args:
    dice: K dice, each a non-empty sequence of face values.

  Returns:
    Preference matrix, shape (K, K).
  """
  if not dice or any(len(d) == 0 for d in dice):
    raise ValueError(f"dice must be a non-empty list of non-empty face lists; "
                     f"got {dice!r}")
  k = len(dice)
  prefs = np.full((k, k), 0.5)
  for a, b in itertools.permutations(range(k), 2):
    wins = sum((x > y) + 0.5 * (x == y)
               for x, y in itertools.product(dice[a], dice[b]))
    prefs[a, b] = wins / (len(dice[a]) * len(dice[b]))
  return prefs
