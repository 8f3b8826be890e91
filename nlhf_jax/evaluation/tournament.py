"""Pairwise tournament between policies on a shared prompt set.

Input: the prompts x_1..x_n and, per policy, one already generated summary
per prompt (generation happens elsewhere; for several samples per prompt,
repeat the prompt). Every unordered pair of policies {r, c} is judged once,
prompt by prompt, by an order-averaged judge (both presentation orders
queried, see `judges.order_averaged`), giving p_i = P(y_c,i ≻ y_r,i | x_i).

The result follows the paper's table convention: cell [row r, column c] is
the win rate of the column over the row, P(π_c ≻ π_r), with a Clopper–Pearson
interval (see `intervals`) and the sample count n. Only one side of each
pair is computed; the other is its exact mirror, so
win_rate + win_rate.T == 1 bit-for-bit and the diagonal is 0.5 (no
comparisons: n = 0 and a NaN interval).

Per policy we also report the mean length in words (whitespace split) and,
given a token counter, in tokens; mean ROUGE-1/2/L F1 against reference
summaries; the win rate against a named baseline (e.g. "SFT"); the mean win
rate against all other policies; and the mean of supplied per-sample KL
estimates KL(π ‖ π_ref). Pure numpy/scipy.

A judge that can fail to answer (an LLM judge behind a network: its
`abstains` attribute is True) returns NaN for those comparisons. They are
left out of that cell's win rate and interval (n counts the answered ones),
counted per pair in `unanswered`, and kept as NaN in `comparisons`; a pair
with no answer at all is an error. Other judges' NaNs are errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np

from nlhf_jax.evaluation import intervals
from nlhf_jax.judges import text as judges_lib
from nlhf_jax.evaluation import rouge


@dataclasses.dataclass(frozen=True)
class PolicyStats:
  """Per-policy summary figures.

  Attributes:
    name: policy name.
    mean_words: mean number of whitespace-separated words per summary.
    mean_tokens: mean token count (None without a token counter).
    rouge: mean F1 per ROUGE type (None without references).
    vs_baseline: P(policy ≻ baseline) cell (None without a baseline, or for
      the baseline itself).
    mean_win_rate: mean over the other policies of P(policy ≻ other) (NaN
      when there is no other policy).
    kl_mean: mean of the supplied per-sample KL estimates (None if absent).
    kl_stderr: standard error of that mean (NaN for a single sample).
    kl_count: number of KL estimates.
  """
  name: str
  mean_words: float
  mean_tokens: float | None = None
  rouge: Mapping[str, float] | None = None
  vs_baseline: intervals.WinRate | None = None
  mean_win_rate: float = math.nan
  kl_mean: float | None = None
  kl_stderr: float | None = None
  kl_count: int = 0


@dataclasses.dataclass(frozen=True)
class TournamentResult:
  """Win-rate matrix and per-policy statistics.

  Attributes:
    policies: policy names, the order of rows and columns.
    win_rate: float64 [P, P]; win_rate[r, c] = P(policies[c] ≻ policies[r]);
      diagonal 0.5; win_rate + win_rate.T == 1.
    ci_low: float64 [P, P] lower interval ends (NaN on the diagonal).
    ci_high: float64 [P, P] upper interval ends (NaN on the diagonal).
    num_samples: int64 [P, P] comparisons per cell (0 on the diagonal).
    sampled_wins: int64 [P, P] seeded Bernoulli win counts of the column
      over the row; sampled_wins + sampled_wins.T == num_samples.
    comparisons: {(row, column): float64 [n]} per-prompt P(column ≻ row)
      for each judged pair (row before column in `policies`).
    stats: {policy: PolicyStats}.
    judge_name: the judge's name.
    confidence: nominal interval coverage.
    interval_method: "fractional" or "sampled" (see `intervals`).
    baseline: the baseline policy name, or None.
    unanswered: {(row, column): comparisons the judge left unanswered} for
      each judged pair (all 0 unless the judge abstains).
  """
  policies: tuple[str, ...]
  win_rate: np.ndarray
  ci_low: np.ndarray
  ci_high: np.ndarray
  num_samples: np.ndarray
  sampled_wins: np.ndarray
  comparisons: Mapping[tuple[str, str], np.ndarray]
  stats: Mapping[str, PolicyStats]
  judge_name: str
  confidence: float
  interval_method: str
  baseline: str | None = None
  unanswered: Mapping[tuple[str, str], int] = dataclasses.field(
      default_factory=dict)

  def index(self, policy: str) -> int:
    """Row/column index of `policy`; ValueError names the known policies."""
    if policy not in self.policies:
      raise ValueError(f"unknown policy {policy!r}; known: {self.policies}")
    return self.policies.index(policy)

  def cell(self, row: str, column: str) -> intervals.WinRate:
    """P(column ≻ row) with its interval, as a `WinRate`."""
    r, c = self.index(row), self.index(column)
    return intervals.WinRate(
        win_rate=float(self.win_rate[r, c]), ci_low=float(self.ci_low[r, c]),
        ci_high=float(self.ci_high[r, c]),
        num_samples=int(self.num_samples[r, c]),
        sampled_wins=int(self.sampled_wins[r, c]),
        confidence=self.confidence, method=self.interval_method)


def _check_texts(what: str, texts: Sequence[str], n: int) -> None:
  if isinstance(texts, str):
    raise TypeError(f"{what} must be a sequence of str, not one str")
  if len(texts) != n:
    raise ValueError(f"{what} has {len(texts)} entries but there are {n} "
                     "prompts")
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"{what}[{i}] must be a str, got {type(text).__name__}")


def _check_inputs(prompts: Sequence[str],
                  summaries: Mapping[str, Sequence[str]],
                  references: Sequence[str] | None, baseline: str | None,
                  kl: Mapping[str, object] | None, confidence: float,
                  interval_method: str) -> dict[str, dict[str, object]]:
  """Validates everything before any judging; returns the KL statistics."""
  if interval_method not in intervals.METHODS:
    raise ValueError(f"unknown interval_method {interval_method!r}; known: "
                     f"{intervals.METHODS}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  if not summaries:
    raise ValueError("a tournament needs at least one policy")
  _check_texts("prompts", prompts, len(prompts))
  if not prompts:
    raise ValueError("a tournament needs at least one prompt")
  for name, texts in summaries.items():
    if not isinstance(name, str) or not name:
      raise ValueError(f"policy names must be non-empty str, got {name!r}")
    _check_texts(f"summaries[{name!r}]", texts, len(prompts))
  if references is not None:
    _check_texts("references", references, len(prompts))
  if baseline is not None and baseline not in summaries:
    raise ValueError(f"baseline {baseline!r} is not a policy: "
                     f"{tuple(summaries)}")
  unknown = sorted(set(kl or {}) - set(summaries))
  if unknown:
    raise ValueError(f"kl given for unknown policies {unknown}; known: "
                     f"{tuple(summaries)}")
  return {name: _kl_stats(name, values) for name, values in (kl or {}).items()}


def _kl_stats(name: str, values: object) -> dict[str, object]:
  try:
    kl = np.asarray(values, dtype=np.float64).reshape(-1)
  except (TypeError, ValueError) as e:
    raise ValueError(f"kl[{name!r}] is not an array of numbers: {e}") from None
  if kl.size == 0:
    raise ValueError(f"kl[{name!r}] is empty")
  if not np.all(np.isfinite(kl)):
    i = int(np.argmax(~np.isfinite(kl)))
    raise ValueError(f"kl[{name!r}][{i}] = {kl[i]} is not finite")
  stderr = (float(np.std(kl, ddof=1) / math.sqrt(kl.size)) if kl.size > 1
            else math.nan)
  return {"kl_mean": float(np.mean(kl)), "kl_stderr": stderr,
          "kl_count": int(kl.size)}


def _judge_pairs(policies: Sequence[str], prompts: Sequence[str],
                 summaries: Mapping[str, Sequence[str]],
                 judge: judges_lib.Judge, confidence: float, method: str,
                 seed: int) -> tuple[dict, dict, dict]:
  """Judges every unordered pair once: (cells, per-prompt probabilities,
  unanswered counts)."""
  cells, comparisons, unanswered = {}, {}, {}
  pairs = itertools.combinations(range(len(policies)), 2)
  name = judges_lib.judge_name(judge)
  for pair_index, (r, c) in enumerate(pairs):
    row, column = policies[r], policies[c]
    p = judges_lib.check_judge_output(
        judge(prompts, summaries[column], summaries[row]), len(prompts),
        name, allow_nan=getattr(judge, "abstains", False))
    comparisons[(row, column)] = p
    answered = ~np.isnan(p)
    unanswered[(row, column)] = int(p.size - answered.sum())
    if not answered.any():
      raise ValueError(f"judge {name!r} answered none of the {p.size} "
                       f"comparisons of {row!r} and {column!r}")
    cell = intervals.win_rate_interval(p[answered], confidence=confidence,
                                       method=method, seed=[seed, pair_index])
    cells[(r, c)] = cell
    cells[(c, r)] = cell.flipped()
  return cells, comparisons, unanswered


def _matrices(num_policies: int,
              cells: Mapping[tuple[int, int], intervals.WinRate]) -> dict:
  shape = (num_policies, num_policies)
  out = {"win_rate": np.full(shape, 0.5), "ci_low": np.full(shape, np.nan),
         "ci_high": np.full(shape, np.nan),
         "num_samples": np.zeros(shape, np.int64),
         "sampled_wins": np.zeros(shape, np.int64)}
  for (r, c), cell in cells.items():
    out["win_rate"][r, c] = cell.win_rate
    out["ci_low"][r, c] = cell.ci_low
    out["ci_high"][r, c] = cell.ci_high
    out["num_samples"][r, c] = cell.num_samples
    out["sampled_wins"][r, c] = cell.sampled_wins
  return out


def _policy_stats(name: str, index: int, texts: Sequence[str],
                  win_rate: np.ndarray, baseline_cell: object,
                  references: Sequence[str] | None,
                  token_counter: Callable[[str], int] | None,
                  kl_stats: Mapping[str, object] | None) -> PolicyStats:
  fields = {"name": name, "vs_baseline": baseline_cell,
            "mean_words": float(np.mean([len(t.split()) for t in texts]))}
  if token_counter is not None:
    fields["mean_tokens"] = float(np.mean([token_counter(t) for t in texts]))
  if references is not None:
    fields["rouge"] = rouge.mean_rouge_f1(texts, references)
  if len(win_rate) > 1:  # Column `index` holds P(name ≻ row).
    others = np.delete(win_rate[:, index], index)
    fields["mean_win_rate"] = float(np.mean(others))
  if kl_stats:
    fields.update(kl_stats)
  return PolicyStats(**fields)


def run_tournament(prompts: Sequence[str],
                   summaries: Mapping[str, Sequence[str]],
                   judge: judges_lib.Judge, *,
                   references: Sequence[str] | None = None,
                   baseline: str | None = None,
                   kl: Mapping[str, Sequence[float] | np.ndarray] | None = None,
                   token_counter: Callable[[str], int] | None = None,
                   average_orders: bool = True, confidence: float = 0.95,
                   interval_method: str = "fractional",
                   seed: int = 0) -> TournamentResult:
  """Runs the pairwise tournament.

  Args:
    prompts: n prompt texts, shared by all policies (at least one).
    summaries: {policy name: n summaries, aligned with `prompts`}; the
      insertion order gives the row/column order.
    judge: a `judges.Judge`.
    references: optional n reference summaries for ROUGE.
    baseline: optional policy name; each policy's P(policy ≻ baseline) is
      reported in its stats.
    kl: optional {policy: per-sample KL(π ‖ π_ref) estimates, any length};
      policies without an entry get None.
    token_counter: optional text -> number of tokens (e.g. a SentencePiece
      model's `lambda s: len(sp.encode(s))`).
    average_orders: judge both presentation orders and average (default;
      turn off only for a judge known to be antisymmetric, to halve calls).
    confidence: nominal interval coverage.
    interval_method: "fractional" or "sampled" (see `intervals`).
    seed: seed of the Bernoulli draws (pair j uses [seed, j]).

  Returns:
    The `TournamentResult`.

  Raises:
    ValueError / TypeError: on mismatched lengths, non-str texts, an unknown
      baseline or KL policy, bad KL values or bad judge output (the
      offending policy / index is named).
  """
  kl_stats = _check_inputs(prompts, summaries, references, baseline, kl,
                           confidence, interval_method)
  policies = tuple(summaries)
  if average_orders:
    judge = judges_lib.order_averaged(judge)
  cells, comparisons, unanswered = _judge_pairs(
      policies, prompts, summaries, judge, confidence, interval_method, seed)
  mats = _matrices(len(policies), cells)
  stats = {}
  for i, name in enumerate(policies):
    base = (cells[(policies.index(baseline), i)]
            if baseline is not None and baseline != name else None)
    stats[name] = _policy_stats(name, i, summaries[name], mats["win_rate"],
                                base, references, token_counter,
                                kl_stats.get(name))
  return TournamentResult(
      policies=policies, comparisons=comparisons, stats=stats,
      judge_name=judges_lib.judge_name(judge), confidence=confidence,
      interval_method=interval_method, baseline=baseline,
      unanswered=unanswered, **mats)
