"""Example judges to copy: a rule on text, a JAX function, an LLM rater.

Each plugs into an online run through gin (README "Plugging in a judge";
`gin_configs/judges/examples/*.gin`):

  prefer_shorter      a Python text judge for `jobs.judges.HostJudge`;
  fewer_tokens        a JAX function for `jobs.judges.JaxJudge`;
  llm_rater(complete) an LLM-style text judge: it writes one "which summary
                      is better" prompt per pair and reads P("1") from any
                      `complete(prompt) -> {"1": p1, "2": p2}` callable (a
                      model server, an API client). `word_count_completer`
                      stands in for the model so the example runs anywhere.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

RATER_PROMPT = (
    "A good summary is short and keeps the post's most important facts.\n\n"
    "{prompt}\n\nSummary 1: {first}\nSummary 2: {second}\n\n"
    "Which summary is better? Answer 1 or 2:")


def prefer_shorter(prompts: Sequence[str], first: Sequence[str],
                   second: Sequence[str]) -> list[float]:
  """P(first ≻ second) = 1 if first has fewer words, 0 if more, else ½."""
  del prompts
  out = []
  for a, b in zip(first, second):
    na, nb = len(a.split()), len(b.split())
    out.append(1.0 if na < nb else 0.0 if na > nb else 0.5)
  return out


def fewer_tokens(prompts: jax.Array, first: jax.Array,
                 second: jax.Array) -> jax.Array:
  """σ(len(second) − len(first)) from the token arrays (pad id 0)."""
  del prompts
  length = lambda t: jnp.sum(t > 0, axis=-1).astype(jnp.float32)
  return jax.nn.sigmoid(length(second) - length(first))


Completer = Callable[[str], Mapping[str, float]]


def llm_rater(complete: Completer) -> Callable[..., list[float]]:
  """A text judge that asks `complete` which summary is better.

  Args:
    complete: prompt -> probabilities (or scores) of the answers "1" and
      "2"; they are normalised, so P(first ≻ second) = p1 / (p1 + p2).

  Returns:
    judge(prompts, first, second) -> list of P(first_i ≻ second_i).
  """

  def judge(prompts: Sequence[str], first: Sequence[str],
            second: Sequence[str]) -> list[float]:
    out = []
    for x, a, b in zip(prompts, first, second):
      answer = complete(RATER_PROMPT.format(prompt=x, first=a.strip(),
                                            second=b.strip()))
      p1, p2 = float(answer["1"]), float(answer["2"])
      out.append(p1 / (p1 + p2) if p1 + p2 > 0 else 0.5)
    return out

  judge.__name__ = f"llm_rater({getattr(complete, '__name__', 'complete')})"
  return judge


def word_count_completer(prompt: str) -> dict[str, float]:
  """A stand-in 'LLM': prefers the summary with fewer words, softly."""
  lines = {line.split(":", 1)[0]: line.split(":", 1)[1]
           for line in prompt.splitlines() if line.startswith("Summary ")}
  n1 = len(lines.get("Summary 1", "").split())
  n2 = len(lines.get("Summary 2", "").split())
  return {"1": 1.0 + n2, "2": 1.0 + n1}


def llm_rater_example() -> Callable[..., list[float]]:
  """`llm_rater(word_count_completer)`, for gin (examples/llm_rater.gin)."""
  return llm_rater(word_count_completer)
