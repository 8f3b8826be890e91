"""How far one judge agrees with another on the same tournament's pairs.

Two tournaments of the same policies on the same prompts and summaries,
judged by J (e.g. an LLM judge) and by R (e.g. the synthetic world's P*),
give per pair (r, c) and prompt i the probabilities j_i and r_i of
P(y_c,i ≻ y_r,i). Over every (pair, prompt) both judges answered:

  comparison agreement = mean 1[sign(j_i − ½) = sign(r_i − ½)]
                         over the comparisons neither judge calls a tie,
  correlation          = Pearson's correlation of j and r,
  cell agreement       = the fraction of pairs whose mean win rates fall on
                         the same side of ½.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nlhf_jax.evaluation import tournament as tournament_lib


@dataclasses.dataclass(frozen=True)
class Agreement:
  """The agreement of a judge with a reference judge (module docstring)."""

  comparisons: int
  comparison_agreement: float
  correlation: float
  cell_agreement: float


def agreement(judged: tournament_lib.TournamentResult,
              reference: tournament_lib.TournamentResult) -> Agreement:
  """`judged` against `reference` (same policies, prompts and summaries).

  Raises:
    ValueError: the tournaments judged different pairs or prompt counts.
  """
  if set(judged.comparisons) != set(reference.comparisons):
    raise ValueError("the tournaments judged different pairs: "
                     f"{sorted(judged.comparisons)} vs "
                     f"{sorted(reference.comparisons)}")
  pairs = sorted(judged.comparisons)
  j = np.concatenate([judged.comparisons[p] for p in pairs])
  r = np.concatenate([reference.comparisons[p] for p in pairs])
  if j.shape != r.shape:
    raise ValueError(f"{j.size} comparisons judged against {r.size}")
  both = ~(np.isnan(j) | np.isnan(r))
  j, r = j[both], r[both]
  decided = (j != 0.5) & (r != 0.5)
  same_sign = np.sign(j[decided] - 0.5) == np.sign(r[decided] - 0.5)
  cells = [np.sign(np.nanmean(judged.comparisons[p]) - 0.5)
           == np.sign(np.nanmean(reference.comparisons[p]) - 0.5)
           for p in pairs]
  spread = j.std() * r.std()
  return Agreement(
      comparisons=int(j.size),
      comparison_agreement=(float(same_sign.mean()) if same_sign.size
                            else float("nan")),
      correlation=(float(np.corrcoef(j, r)[0, 1]) if spread > 0
                   else float("nan")),
      cell_agreement=float(np.mean(cells)))
