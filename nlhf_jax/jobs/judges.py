"""Which judge scores an online run's responses (gin: `JUDGE = @...`).

Each config here is a small validated dataclass that the online job turns
into an in-step judge (`nlhf_jax.judges`) once it knows the data (for the
vocabulary) and the mesh (for host judges), and whose frozen parameters it
restores. The algorithm says which kind it needs (`judge_kind` of its
config): Nash-MD/EMA, self-play, best response and Online IPO take a
'pairwise' judge P(y ≻ y' | x); RLHF a 'pointwise' reward r(x, y).

  LearnedJudge   a trained checkpoint (JUDGE_DIR): the preference model
                 (pairwise), or the Bradley–Terry reward model (pointwise,
                 or pairwise as σ(r(y) − r(y'))). The default.
  SyntheticPStar the synthetic world's exact population preference P*
                 (pairwise, host judge on the full canonical prompt text).
  HostJudge      any Python text judge fn(prompts, first, second) -> [n].
  HostRewardFn   any Python reward fn(prompts, responses) -> [n].
  JaxJudge       any JAX function fn(prompt_tokens, first, second) -> [n].
  JaxReward      any JAX function fn(prompt_tokens, responses) -> [n].
  Ensemble       a weighted average of pairwise judges.

A reward used where a pairwise judge is needed is applied as
σ(r(y) − r(y')); a pairwise judge cannot give a reward (ConfigError).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol, Union

from jax.sharding import Mesh

from nlhf_jax import checkpointing
from nlhf_jax import errors
from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import host
from nlhf_jax.judges import pairwise
from nlhf_jax.judges import pointwise
from nlhf_jax.judges import text
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import reward
from nlhf_jax.models import t5

KINDS = ("pairwise", "pointwise")
Judge = Union[pairwise.PairJudge, pointwise.RewardJudge]


class JudgeConfig(Protocol):
  """What the online job needs of a judge config."""

  def build(self, data: Any, mesh: Optional[Mesh], kind: str) -> Judge:
    """The in-step judge of `kind` ('pairwise' or 'pointwise')."""

  def load(self, abstract: Any) -> Any:
    """Its frozen parameters at the Program's layout `abstract`."""


def _check_kind(kind: str) -> None:
  if kind not in KINDS:
    raise ConfigError(f"judge kind must be one of {KINDS}, got {kind!r}")


def _pointwise_refused(what: str) -> ConfigError:
  return ConfigError(
      f"{what} is a pairwise judge, but this algorithm (RLHF) needs a "
      "reward r(x, y): use a reward model (LearnedJudge with "
      "reward.RewardLayoutConfig), HostRewardFn or JaxReward.")


def _reward_as(kind: str, judge: pointwise.RewardJudge) -> Judge:
  """A reward as the judge `kind` asks for: itself, or σ(r(y) − r(y'))."""
  if kind == "pointwise":
    return judge
  return pairwise.RewardDifferenceJudge(judge, name=f"{judge.name}, pairwise")


def text_codec(data: Any, judge_name: str,
               prompt_text: Optional[Callable] = None) -> host.TextCodec:
  """Host decoding with the data's SentencePiece vocabulary.

  Raises:
    ConfigError: the data has no SentencePiece vocabulary file.
  """
  from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
  path = getattr(data, "vocabulary", None)
  if not isinstance(path, str) or not path.endswith(".model"):
    raise ConfigError(
        f"Judge {judge_name!r} decodes responses to text and needs the "
        f"data's SentencePiece vocabulary (a .model file); the data "
        f"{type(data).__name__} has vocabulary={path!r}.")
  processor = vocab.sentencepiece_processor(path)
  return host.TextCodec(decode=processor.decode, prompt_text=prompt_text)


@dataclasses.dataclass(frozen=True)
class LearnedJudge:
  """A trained preference or reward model (gin: JUDGE_DIR and its model).

  Attributes:
    model: the scorer's architecture (PREFERENCE_MODEL / REWARD_MODEL).
    layout: `preference.LayoutConfig` (a preference model, pairwise) or
      `reward.RewardLayoutConfig` (a reward model).
    checkpoint: the judge's run (workdir or checkpoint directory).
    row_chunk: a preference model scores its 2n rows this many at a time
      (`pairwise.PreferenceModelJudge.row_chunk`; an XLA:CPU cache trick,
      bound by gin_configs/backends/cpu.gin); None: all at once.
  """

  model: t5.T5Config
  layout: Union[preference.LayoutConfig, reward.RewardLayoutConfig]
  checkpoint: str
  row_chunk: Optional[int] = None

  def __post_init__(self):
    if not isinstance(self.layout, (preference.LayoutConfig,
                                    reward.RewardLayoutConfig)):
      raise ConfigError(
          "LearnedJudge.layout must be @preference.LayoutConfig() or "
          f"@reward.RewardLayoutConfig(), got {type(self.layout).__name__}")
    errors.check_path_exists(
        self, "checkpoint", self.checkpoint,
        hint="gin macro JUDGE_DIR: the checkpoint of a finished preference-"
        "or reward-model stage; train that stage first")
    errors.check_positive(self, "row_chunk", self.row_chunk, integer=True,
                          also=(None,))

  def build(self, data, mesh, kind):
    del mesh
    _check_kind(kind)
    model_init.check_vocabulary(self.model, data)
    net = t5.T5Scorer(self.model)
    if isinstance(self.layout, preference.LayoutConfig):
      if kind == "pointwise":
        raise _pointwise_refused("The preference model")
      return pairwise.PreferenceModelJudge(
          net, preference.make_layout(self.layout, data),
          row_chunk=self.row_chunk)
    return _reward_as(kind, pointwise.RewardModelJudge(
        net, reward.make_layout(self.layout, data)))

  def load(self, abstract):
    return checkpointing.restore_params(self.checkpoint, abstract)


class _NoParams:
  """Judges without frozen parameters."""

  def load(self, abstract):
    del abstract
    return ()


@dataclasses.dataclass(frozen=True)
class _OfFunction(_NoParams):
  """A judge made of a user function `fn`, labelled `name` in errors."""

  fn: Callable[..., Any]
  name: str = ""

  def __post_init__(self):
    if not callable(self.fn):
      raise ConfigError(f"{type(self).__name__}.fn must be callable, got "
                        f"{self.fn!r:.60}")


@dataclasses.dataclass(frozen=True)
class SyntheticPStar(_NoParams):
  """The synthetic world's exact P* as the training judge (host judge).

  Prompt rows are mapped back to their full canonical prompt text through
  the data's train and validation posts (a decoded prompt may be cut to
  the input length, and P* reads the post's facts); responses are decoded
  with the data's vocabulary. Values equal
  `judges.text.SyntheticJudge` on those strings. Only meaningful on data
  written by `python -m nlhf_jax.data.synthetic`.

  Attributes:
    max_cached: size of P*'s (prompt, summary) feature cache.
  """

  max_cached: int = 1_000_000

  def __post_init__(self):
    errors.check_positive(self, "max_cached", self.max_cached, integer=True)

  def build(self, data, mesh, kind):
    _check_kind(kind)
    if kind == "pointwise":
      raise ConfigError(
          "SyntheticPStar is a pairwise judge and no reward represents the "
          "synthetic world's non-transitive P*: RLHF keeps its Bradley-Terry "
          "reward model (JUDGE_DIR), whose training labels are draws from P* "
          "(README, 'Training against the exact P*').")
    lookup = prompt_lookup(data)

    def prompt_text(row):
      key = tuple(host.response_ids(row))
      if key not in lookup:
        raise ValueError(
            "judge 'synthetic P*': a prompt of the batch is not one of the "
            f"data's posts ({len(key)} tokens, first {list(key[:8])})")
      return lookup[key]

    judge = text.SyntheticJudge(max_cached=self.max_cached)
    return host.HostPairJudge(judge, text_codec(data, judge.name,
                                                prompt_text), mesh)


def prompt_lookup(data: Any) -> dict[tuple[int, ...], str]:
  """{prompt token ids (no EOS): canonical prompt text} of the data's posts.

  Built from the rows the data source serves (train and valid splits, the
  tokens exactly as the step receives them).
  """
  from nlhf_jax.data import jsonl_sources  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import prompts  # pylint: disable=g-import-not-at-top
  if not isinstance(data, jsonl_sources.SftJsonlSource):
    raise ConfigError(
        "SyntheticPStar needs the JSONL prompts of a synthetic world "
        f"(jsonl_sources.SftJsonlSource); got {type(data).__name__}.")
  out = {}
  for split in ("train", "valid"):
    rows = jsonl_sources.sft_examples(data.data_dir, split)
    tokens = data.arrays(split)["encoder_input_tokens"]
    for row, ids in zip(rows, tokens, strict=True):
      out[tuple(host.response_ids(ids))] = prompts.format_prompt(
          row["subreddit"], row["title"], row["post"])
  return out


@dataclasses.dataclass(frozen=True)
class HostJudge(_OfFunction):
  """Any Python text judge `fn(prompts, first, second) -> [n]` in [0, 1].

  E.g. an LLM rater. It receives decoded strings (prompts decoded from the
  possibly cut prompt tokens) and is called per batch shard on each host.

  Attributes:
    fn: the judge (gin: `@my_module.my_judge`).
    name: label in errors; defaults to the function's name.
  """

  def build(self, data, mesh, kind):
    _check_kind(kind)
    judge = text.CallableJudge(self.fn, name=self.name or None)
    if kind == "pointwise":
      raise _pointwise_refused(f"HostJudge {judge.name!r}")
    return host.HostPairJudge(judge, text_codec(data, judge.name), mesh)


@dataclasses.dataclass(frozen=True)
class HostRewardFn(_OfFunction):
  """Any Python reward `fn(prompts, responses) -> [n]` on decoded text.

  Attributes:
    fn: the reward (gin: `@my_module.my_reward`).
    name: label in errors; defaults to the function's name.
  """

  def build(self, data, mesh, kind):
    _check_kind(kind)
    name = self.name or text.judge_name(self.fn)
    return _reward_as(kind, host.HostReward(self.fn, text_codec(data, name),
                                            mesh, name))


@dataclasses.dataclass(frozen=True)
class JaxJudge(_OfFunction):
  """Any JAX function `fn(prompt_tokens, first, second) -> [n]` in [0, 1].

  Attributes:
    fn: the function, traced into the step.
    name: label in errors; defaults to the function's name.
  """

  def build(self, data, mesh, kind):
    del data, mesh
    _check_kind(kind)
    judge = pairwise.FunctionJudge(self.fn, self.name)
    if kind == "pointwise":
      raise _pointwise_refused(f"JaxJudge {judge.name!r}")
    return judge


@dataclasses.dataclass(frozen=True)
class JaxReward(_OfFunction):
  """Any JAX function `fn(prompt_tokens, responses) -> [n]`.

  Attributes:
    fn: the function, traced into the step.
    name: label in errors; defaults to the function's name.
  """

  def build(self, data, mesh, kind):
    del data, mesh
    _check_kind(kind)
    return _reward_as(kind, pointwise.FunctionReward(self.fn, self.name))


@dataclasses.dataclass(frozen=True)
class Ensemble:
  """A weighted average of pairwise judges.

  Attributes:
    members: judge configs (pairwise, or rewards used pairwise).
    weights: one weight >= 0 per member, summing to 1; None: equal.
  """

  members: tuple[Any, ...]
  weights: Optional[tuple[float, ...]] = None

  def __post_init__(self):
    if not self.members:
      raise ConfigError("Ensemble.members is empty; give at least one judge.")
    if self.weights is not None and len(self.weights) != len(self.members):
      raise ConfigError(f"Ensemble: {len(self.members)} members but "
                        f"{len(self.weights)} weights")

  def build(self, data, mesh, kind):
    _check_kind(kind)
    if kind == "pointwise":
      raise _pointwise_refused("An Ensemble")
    weights = self.weights or (1.0 / len(self.members),) * len(self.members)
    try:
      return pairwise.EnsembleJudge(
          tuple(m.build(data, mesh, kind) for m in self.members),
          tuple(float(w) for w in weights))
    except ValueError as e:
      if isinstance(e, ConfigError):
        raise
      raise ConfigError(f"Ensemble: {e}") from None

  def load(self, abstract):
    return tuple(m.load(a) for m, a in zip(self.members, abstract))
