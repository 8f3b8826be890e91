"""Host judges: Python callables on decoded text, called from the jitted step.

A host judge is any text judge `fn(prompts, first, second) -> [n]` of
`judges.text` (the synthetic world's exact P*, an LLM rater, a rule) or
any reward `fn(prompts, responses) -> [n]`. Inside the step the token rows
travel to the host through `jax.pure_callback`, are decoded there
(`TextCodec`) and judged; the values come back as float32 [n] and are
checked (shape, NaN, range). A host judge must not raise inside the step
(the devices that did not fail would wait at their next collective
forever): a failure, or an output of the wrong shape or range, is logged
on that host with its cause and the judge's name, and its rows come back
NaN, which the in-step check counts and the trainer turns into a
`checks.JudgeOutputError` naming the judge.

Sharding: the callback runs under `jax.shard_map` over the batch axes of
the mesh, so every device hands its own rows to its own host process: each
process judges its local rows and nothing is gathered across hosts. Devices
that hold the same rows (a `model` axis > 1) each call the judge on them;
the judge must be deterministic (P* is), so the copies agree.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np

from nlhf_jax import partitioning
from nlhf_jax import tokens
from nlhf_jax.judges import text

Array = jax.Array
RewardFn = Callable[[Sequence[str], Sequence[str]], object]


def failed_rows(name: str, n: int, error: Exception) -> np.ndarray:
  """Logs a host judge's failure; returns its n rows as NaN (see above)."""
  logging.getLogger(__name__).error(
      "judge %r failed on %d rows on this host: %s: %s; the rows are NaN "
      "and the trainer stops the run", name, n, type(error).__name__, error)
  return np.full((n,), np.nan, np.float32)


def response_ids(row: np.ndarray) -> list[int]:
  """The ids of a decoder-target row before its first EOS (pads dropped)."""
  ids = [int(t) for t in row]
  if tokens.EOS_ID in ids:
    ids = ids[:ids.index(tokens.EOS_ID)]
  return [t for t in ids if t != tokens.PAD_ID]


@dataclasses.dataclass(frozen=True)
class TextCodec:
  """How token rows become text on the host.

  Attributes:
    decode: ids -> text (the run's vocabulary, e.g. SentencePiece decode).
    prompt_text: prompt row -> text; defaults to decoding it. The synthetic
      P* judge maps rows back to the full canonical prompt instead, because
      a decoded prompt may be cut to the input length or normalised.
  """

  decode: Callable[[list[int]], str]
  prompt_text: Optional[Callable[[np.ndarray], str]] = None

  def prompts(self, rows: np.ndarray) -> list[str]:
    if self.prompt_text is not None:
      return [self.prompt_text(r) for r in rows]
    return [self.decode(response_ids(r)) for r in rows]

  def responses(self, rows: np.ndarray) -> list[str]:
    return [self.decode(response_ids(r)) for r in rows]


def host_map(fn: Callable[..., np.ndarray], mesh: Optional[Mesh],
             *rows: Array) -> Array:
  """float32 [n] of `fn(*row blocks)` run on the host, per batch shard.

  Args:
    fn: numpy function of int arrays [m, ...] (one block of rows each) that
      returns float32 [m].
    mesh: the step's mesh (its batch axes split the rows), or None for one
      device.
    *rows: int32 arrays [n, ...], same n.
  """

  def local(*blocks):
    shape = jax.ShapeDtypeStruct((blocks[0].shape[0],), jnp.float32)
    return jax.pure_callback(fn, shape, *blocks, vmap_method="sequential")

  if mesh is None:
    return local(*rows)
  spec = P(partitioning.BATCH_AXES)
  return jax.shard_map(local, mesh=mesh, in_specs=(spec,) * len(rows),
                       out_specs=spec, check_vma=False)(*rows)


@dataclasses.dataclass(frozen=True)
class HostPairJudge:
  """A text judge as an in-step `pairwise.PairJudge` (one order per call).

  Attributes:
    judge: text judge `(prompts, first, second) -> [n]` in [0, 1].
    codec: decoding of the token rows.
    mesh: the step's mesh, or None (one device).
    name: label in errors; defaults to the text judge's name.
  """

  judge: text.Judge
  codec: TextCodec
  mesh: Optional[Mesh] = None
  name: str = ""

  def __post_init__(self):
    if not callable(self.judge):
      raise TypeError(f"HostPairJudge.judge must be callable, got "
                      f"{self.judge!r:.60}")
    if not self.name:
      object.__setattr__(self, "name", text.judge_name(self.judge))

  def init_params(self):
    return ()

  def on_host(self, prompts: np.ndarray, first: np.ndarray,
              second: np.ndarray) -> np.ndarray:
    """The host side: decodes, judges and checks one block of rows."""
    n = prompts.shape[0]
    try:
      values = self.judge(self.codec.prompts(prompts),
                          self.codec.responses(first),
                          self.codec.responses(second))
      return text.check_judge_output(values, n, self.name).astype(np.float32)
    except Exception as e:  # pylint: disable=broad-except
      return failed_rows(self.name, n, e)

  def __call__(self, params, prompts_bt, first_bt, second_bt):
    del params
    return host_map(self.on_host, self.mesh, prompts_bt, first_bt, second_bt)


@dataclasses.dataclass(frozen=True)
class HostReward:
  """A Python reward `fn(prompts, responses) -> [n]` as a `RewardJudge`.

  Attributes:
    fn: the reward on text.
    codec: decoding of the token rows.
    mesh: the step's mesh, or None (one device).
    name: label in errors; defaults to the function's name.
  """

  fn: RewardFn
  codec: TextCodec
  mesh: Optional[Mesh] = None
  name: str = ""

  def __post_init__(self):
    if not callable(self.fn):
      raise TypeError(f"HostReward.fn must be callable, got {self.fn!r:.60}")
    if not self.name:
      object.__setattr__(self, "name", text.judge_name(self.fn))

  def init_params(self):
    return ()

  def on_host(self, prompts: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """The host side: decodes, scores and checks one block of rows."""
    n = prompts.shape[0]
    try:
      values = np.asarray(self.fn(self.codec.prompts(prompts),
                                  self.codec.responses(responses)),
                          np.float64)
      if values.shape != (n,):
        raise ValueError(f"returned shape {values.shape} for {n} responses; "
                         f"expected ({n},)")
      return values.astype(np.float32)  # NaN/inf: counted in the step.
    except Exception as e:  # pylint: disable=broad-except
      return failed_rows(self.name, n, e)

  def __call__(self, params, prompts_bt, responses_bt):
    del params
    return host_map(self.on_host, self.mesh, prompts_bt, responses_bt)
