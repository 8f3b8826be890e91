"""Generation from trained checkpoints, and a preference-model judge.

The model side of the tournament (`tournament.run_tournament` takes texts):

* `load_prompts` reads a TL;DR split once: the canonical prompt texts (for
  the judges, never truncated), the reference summaries (for ROUGE) and the
  model-side prompt tokens (OpenAI's truncation rule to `input_length - 1`
  tokens, then EOS, exactly as in training).
* `restore_policy` / `restore_scorer` read the parameters of a run's newest
  intact checkpoint (`checkpointing.restore_params`) onto one device, at
  the layout `program.abstract_params` gives the model.
* `generate` samples one summary per prompt from a policy with the KV-cache
  sampler at temperature 1 without truncation, the distribution the online
  algorithms train and that the paper samples from, and decodes it with the
  SentencePiece model. It samples with `sampling.sample_mixture` at β = 0,
  which draws exactly from π_θ while also recording the reference's
  log-probs of the drawn tokens, so each sample carries the estimate

    KL_i = Σ_n (log π_θ(y_n | x, y_<n) − log μ(y_n | x, y_<n)),

  whose mean over y ~ π_θ is KL(π_θ ‖ μ) (the tournament's `kl=` input).
  Rows are drawn with `fold_in(PRNGKey(seed), batch)`, so every policy sees
  the same random numbers (common random numbers across policies).
* `preference_model_score_fn` turns a preference-model checkpoint into the
  `score_fn(prompts, first, second)` of `judges.PreferenceModelJudge`: it
  tokenises like the training data and calls the symmetrised
  `models.preference.preference_probability` (P(a ≻ b) + P(b ≻ a) = 1
  exactly, so the tournament need not average orders again), jitted once
  per shape, in fixed-size batches.

Everything runs on the default device without a mesh (the models' logical
constraints are no-ops there); the evaluation shapes are small.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nlhf_jax import checkpointing
from nlhf_jax import program
from nlhf_jax import sampling
from nlhf_jax.data import annotators
from nlhf_jax.data import iterators as di
from nlhf_jax.data import jsonl_sources as jsonl_data
from nlhf_jax.data import prompts as prompts_lib
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import t5


@dataclasses.dataclass(frozen=True)
class PromptSet:
  """Prompts of one split, aligned row by row.

  Attributes:
    texts: n canonical prompts "SUBREDDIT: r/…\\n\\nTITLE: …\\n\\nPOST: …
      \\n\\nTL;DR:" (full posts; what the judges read).
    references: n reference summaries (no leading space).
    tokens: int32 [n, input_length] model inputs (cut prompt, EOS, padding).
  """

  texts: tuple[str, ...]
  references: tuple[str, ...]
  tokens: np.ndarray


@dataclasses.dataclass(frozen=True)
class Generations:
  """One sampled summary per prompt.

  Attributes:
    summaries: n decoded summaries (EOS and padding removed).
    kl: float64 [n] per-sample Σ_n (log π_θ − log μ) over the sampled
      tokens (EOS included); 0 for the reference policy itself.
    lengths: int32 [n] sampled tokens, EOS included.
  """

  summaries: tuple[str, ...]
  kl: np.ndarray
  lengths: np.ndarray

  def to_jsonl(self, path: str) -> None:
    """Writes one {"summary", "kl", "length"} object per line (atomically)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for text, kl, length in zip(self.summaries, self.kl, self.lengths):
        f.write(json.dumps({"summary": text, "kl": float(kl),
                            "length": int(length)}) + "\n")
    os.replace(tmp, path)

  @classmethod
  def from_jsonl(cls, path: str) -> "Generations":
    """Reads what `to_jsonl` wrote; ValueError names a bad line."""
    rows = []
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        try:
          row = json.loads(line)
          rows.append((str(row["summary"]), float(row["kl"]),
                       int(row["length"])))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
          raise ValueError(f"{path}:{number}: not a generation record "
                           f"({e}).") from e
    summaries, kl, lengths = zip(*rows) if rows else ((), (), ())
    return cls(tuple(summaries), np.asarray(kl, np.float64),
               np.asarray(lengths, np.int32))


def load_prompts(data: jsonl_data.SftJsonlSource, split: str,
                 num_prompts: int) -> PromptSet:
  """The first `num_prompts` posts of `split` (all if 0 or more than exist).

  Args:
    data: the SFT source (data_dir, vocabulary, input_length).
    split: 'train', 'valid' or 'test'.
    num_prompts: how many prompts to keep (0: all).

  Returns:
    The `PromptSet`.

  Raises:
    ValueError: on an unknown split or an empty file.
  """
  if split not in jsonl_data.SFT_SPLITS:
    raise ValueError(f"split must be one of {jsonl_data.SFT_SPLITS}, got "
                     f"{split!r}.")
  path = os.path.join(data.data_dir, "tldr_3_filtered", f"{split}.jsonl")
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        rows.append(json.loads(line))
      if num_prompts and len(rows) == num_prompts:
        break
  if not rows:
    raise ValueError(f"{path} holds no posts.")
  texts = tuple(prompts_lib.format_prompt(r["subreddit"], r["title"],
                                          r["post"]) for r in rows)
  tokens = di.pad_token_rows(
      [data.prompt_tokens(r["subreddit"], r["title"], r["post"])
       for r in rows], data.input_length)
  return PromptSet(texts, tuple(r["summary"] for r in rows), tokens)


def restore_policy(workdir: str, config: t5.T5Config) -> Any:
  """Parameters of a policy run (SFT or online) from its newest checkpoint.

  Raises:
    FileNotFoundError: no intact checkpoint under `workdir`.
    ValueError: the checkpoint does not match `config` (names or shapes).
  """
  return checkpointing.restore_params(
      workdir, program.abstract_params(model_init.init_fn(t5.T5(config), 0)))


def restore_scorer(workdir: str, config: t5.T5Config) -> Any:
  """Parameters of a preference- or reward-model run (newest checkpoint)."""
  return checkpointing.restore_params(
      workdir, program.abstract_params(
          model_init.scorer_init_fn(t5.T5Scorer(config), 0)))


@functools.lru_cache(maxsize=8)
def _sampler(config: t5.T5Config, sampling_config: sampling.SamplingConfig):
  model = t5.T5(config)

  def run(params, reference_params, tokens, rng):
    out = sampling.sample_mixture(model, params, model, reference_params,
                                  tokens, rng, 0.0, sampling_config)
    kl = jnp.sum((out.policy_log_probs - out.reference_log_probs) * out.mask,
                 axis=-1)
    return out.tokens, out.lengths, kl

  return jax.jit(run)


@functools.lru_cache(maxsize=4)
def _sentencepiece(path: str):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if not os.path.exists(path):
    raise FileNotFoundError(f"SentencePiece model {path!r} not found.")
  return spm.SentencePieceProcessor(model_file=path)


def _batches(rows: np.ndarray, batch_size: int):
  """Yields (start, padded batch [batch_size, ...]) covering `rows`."""
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    if len(chunk) < batch_size:
      pad = np.repeat(chunk[-1:], batch_size - len(chunk), axis=0)
      chunk = np.concatenate([chunk, pad])
    yield start, chunk


def generate(config: t5.T5Config, params: Any, reference_params: Any,
             prompt_tokens: np.ndarray, *, vocabulary: str,
             max_decode_length: int, temperature: float = 1.0,
             batch_size: int = 64, seed: int = 0) -> Generations:
  """Samples and decodes one summary per prompt (module docstring).

  Args:
    config: the policy architecture (policy and reference share it).
    params: the policy's parameters.
    reference_params: the reference μ (SFT) parameters, for the KL.
    prompt_tokens: int32 [n, input_length] prompts (`PromptSet.tokens`).
    vocabulary: SentencePiece model path used for decoding.
    max_decode_length: response length L in tokens, EOS included.
    temperature: sampling temperature (1.0: the policy itself; the KL
      estimate is only meaningful at 1.0).
    batch_size: rows per compiled call (the last batch is padded).
    seed: batch k uses fold_in(PRNGKey(seed), k), for every policy.

  Returns:
    `Generations` for the n prompts.
  """
  if prompt_tokens.ndim != 2 or len(prompt_tokens) == 0:
    raise ValueError("prompt_tokens must be a non-empty [n, length] array, "
                     f"got shape {prompt_tokens.shape}.")
  run = _sampler(config, sampling.SamplingConfig(
      max_decode_length=max_decode_length, temperature=temperature))
  processor = _sentencepiece(vocabulary)
  n = len(prompt_tokens)
  tokens, lengths, kls = [], [], []
  for k, (_, batch) in enumerate(_batches(prompt_tokens, batch_size)):
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), k)
    out = jax.device_get(run(params, reference_params, jnp.asarray(batch),
                             rng))
    tokens.append(out[0])
    lengths.append(out[1])
    kls.append(out[2])
  tokens = np.concatenate(tokens)[:n]
  lengths = np.concatenate(lengths)[:n].astype(np.int32)
  kl = np.concatenate(kls)[:n].astype(np.float64)
  texts = tuple(processor.decode(
      [int(t) for t in row[:length] if t != di.EOS_ID])
                for row, length in zip(tokens, lengths))
  return Generations(texts, kl, lengths)


@functools.lru_cache(maxsize=4)
def _pm_call(config: t5.T5Config, layout: preference.PairLayout):
  model = t5.T5Scorer(config)
  return jax.jit(lambda params, x, a, b: preference.preference_probability(
      model, params, x, a, b, layout))


class _Tokens:
  """Cached prompt / summary tokenisation in the training layouts."""

  def __init__(self, data: jsonl_data.SftJsonlSource):
    self._data = data
    self._prompts: dict[str, np.ndarray] = {}

  def prompt(self, index: int, text: str) -> np.ndarray:
    if text not in self._prompts:
      try:
        subreddit, title, post = annotators.parse_prompt(text)
      except ValueError as e:
        raise ValueError(f"prompts[{index}]: {e}") from None
      self._prompts[text] = di.pad_token_rows(
          [self._data.prompt_tokens(subreddit, title, post)],
          self._data.input_length)[0]
    return self._prompts[text]

  def summaries(self, texts: Sequence[str]) -> np.ndarray:
    return di.pad_token_rows(
        [self._data.encode(prompts_lib.format_target(s.strip()))
         for s in texts], self._data.target_length)


def preference_model_score_fn(
    config: t5.T5Config, params: Any, data: jsonl_data.SftJsonlSource,
    layout: preference.PairLayout, batch_size: int = 64
) -> Callable[[Sequence[str], Sequence[str], Sequence[str]], np.ndarray]:
  """`score_fn(prompts, first, second)` of a trained preference model.

  Prompts must be canonical TL;DR prompt texts (`PromptSet.texts`); they are
  parsed and cut by OpenAI's rule to `data.input_length - 1` tokens, and
  summaries are tokenised as `" " + summary` and cut to
  `data.target_length` tokens with EOS, as in the comparison data the model
  was trained on.

  Args:
    config: the preference model's architecture.
    params: its parameters (`restore_scorer`).
    data: tokeniser and lengths (the preference model's INPUT_LENGTH,
      TARGET_LENGTH and VOCABULARY).
    layout: packed length and marker ids (`preference.make_layout`).
    batch_size: comparisons per compiled call (the last batch is padded).

  Returns:
    A function returning float64 [n] P(first_i ≻ second_i | prompts_i),
    symmetrised over presentation order.
  """
  call = _pm_call(config, layout)
  tokens = _Tokens(data)

  def score_fn(prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    n = len(prompts)
    x = np.stack([tokens.prompt(i, p) for i, p in enumerate(prompts)])
    a, b = tokens.summaries(first), tokens.summaries(second)
    out = []
    for start, xb in _batches(x, batch_size):
      ab = _batches(a[start:start + batch_size], batch_size)
      bb = _batches(b[start:start + batch_size], batch_size)
      out.append(np.asarray(call(params, xb, next(ab)[1], next(bb)[1])))
    return np.concatenate(out)[:n].astype(np.float64)

  return score_fn
