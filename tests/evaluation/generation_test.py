"""Tests for evaluation.generation: prompts, checkpoint restore, sampling with
per-sample KL estimates, decoding, and the preference-model judge.

The models are tiny and random (numpy-drawn weights, saved as nlhf_jax
checkpoints), so the sampler and the judge are each compiled once; what is
checked is exact bookkeeping: the KL equals log π − log μ recomputed by
teacher forcing, decoded texts equal the SentencePiece decoding of the
sampled ids, the judge equals `preference_probability` on hand-built
inputs and is antisymmetric, and padding the last batch changes nothing.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from nlhf_jax import checkpointing
from nlhf_jax import losses
from nlhf_jax import sampling
from nlhf_jax.models import preference as pm_lib
from nlhf_jax.data import annotators
from nlhf_jax.data import iterators as di
from nlhf_jax.data import jsonl_sources
from nlhf_jax.data import prompts as prompts_lib
from nlhf_jax.data import synthetic
from nlhf_jax.data import vocab as vocab_lib
from nlhf_jax.evaluation import generation
from nlhf_jax.judges import text as judges
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5

VOCAB = 384
CONFIG = t5.T5Config(vocab_size=VOCAB, d_model=16, num_heads=1, d_kv=16,
                     d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
INPUT_LENGTH, TARGET_LENGTH, MAX_LEN = 64, 16, 10
LAYOUT = pm_lib.LayoutConfig(length=104)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """(SftJsonlSource, vocabulary path) over a 400-post synthetic world."""
  out = tmp_path_factory.mktemp("gen_world")
  synthetic.generate(str(out), seed=1, size=400)
  vocab = vocab_lib.train_from_data_dir(str(out), str(out / "sp"), VOCAB)
  data = jsonl_sources.SftJsonlSource(str(out), vocab,
                                      input_length=INPUT_LENGTH,
                                      target_length=TARGET_LENGTH)
  return data, vocab


def _save(workdir, params):
  ckpt = checkpointing.Checkpointer(str(workdir),
                                    checkpointing.CheckpointConfig())
  ckpt.save(3, {"params": params, "step": jnp.asarray(3)}, {})
  ckpt.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, random_params):
  """Workdirs of two policies (reference, other) and a preference model."""
  root = tmp_path_factory.mktemp("gen_runs")
  policy_init = model_init.init_fn(t5.T5(CONFIG), 0)
  params = {name: random_params(policy_init, seed)
            for seed, name in enumerate(("reference", "other"))}
  params["pm"] = random_params(
      model_init.scorer_init_fn(t5.T5Scorer(CONFIG), 0), 7)
  for name, tree in params.items():
    _save(root / name, tree)
  return root, params


def test_load_prompts(world):
  data, _ = world
  prompt_set = generation.load_prompts(data, "test", 7)
  rows = [json.loads(line) for line in open(os.path.join(
      data.data_dir, "tldr_3_filtered", "test.jsonl"))][:7]
  assert prompt_set.texts == tuple(
      annotators.canonical_prompt(r["subreddit"], r["title"], r["post"])
      for r in rows)
  assert prompt_set.references == tuple(r["summary"] for r in rows)
  assert prompt_set.tokens.shape == (7, INPUT_LENGTH)
  for row, r in zip(prompt_set.tokens, rows):
    body = list(row[row != 0])
    assert body[-1] == di.EOS_ID
    # As in training: OpenAI's cut, then at most input_length - 1 tokens.
    assert body[:-1] == data.prompt_tokens(r["subreddit"], r["title"],
                                           r["post"])[:INPUT_LENGTH - 1]
  assert len(generation.load_prompts(data, "test", 0).texts) == 20
  with pytest.raises(ValueError, match="split must be one of"):
    generation.load_prompts(data, "dev", 3)


def test_restore_round_trip_and_mismatch(runs):
  root, params = runs
  restored = generation.restore_policy(str(root / "other"), CONFIG)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params["other"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  pm = generation.restore_scorer(str(root / "pm"), CONFIG)
  assert "score_head" in pm
  with pytest.raises(ValueError):
    generation.restore_policy(str(root / "other"),
                              dataclasses.replace(CONFIG, d_model=32))
  with pytest.raises(FileNotFoundError):
    generation.restore_policy(str(root / "missing"), CONFIG)


@pytest.fixture(scope="module")
def samples(world, runs):
  data, vocab = world
  _, params = runs
  prompt_set = generation.load_prompts(data, "test", 5)
  out = generation.generate(
      CONFIG, params["other"], params["reference"], prompt_set.tokens,
      vocabulary=vocab, max_decode_length=MAX_LEN, batch_size=4, seed=3)
  return prompt_set, out


def test_generate_kl_is_teacher_forced_log_ratio(world, runs, samples):
  data, vocab = world
  _, params = runs
  prompt_set, out = samples
  assert len(out.summaries) == 5 and out.kl.shape == (5,)
  assert np.all((out.lengths >= 1) & (out.lengths <= MAX_LEN))
  # The first batch alone gives the same draws: padding the last batch
  # changes nothing.
  again = generation.generate(
      CONFIG, params["other"], params["reference"], prompt_set.tokens[:4],
      vocabulary=vocab, max_decode_length=MAX_LEN, batch_size=4, seed=3)
  assert again.summaries == out.summaries[:4]
  np.testing.assert_array_equal(again.kl, out.kl[:4])
  processor = spm.SentencePieceProcessor(model_file=vocab)
  model = t5.T5(CONFIG)
  # The same draw, unjitted, exposes the token ids: recompute the log-ratio
  # by teacher forcing and decode the ids independently.
  sample = sampling.sample_mixture(
      model, params["other"], model, params["reference"],
      jnp.asarray(prompt_set.tokens[:4]),
      jax.random.fold_in(jax.random.PRNGKey(3), 0), 0.0,
      sampling.SamplingConfig(max_decode_length=MAX_LEN))
  logits_pi = model.apply({"params": params["other"]},
                          prompt_set.tokens[:4], t5.shift_right(sample.tokens))
  logits_mu = model.apply({"params": params["reference"]},
                          prompt_set.tokens[:4], t5.shift_right(sample.tokens))
  ratio = (losses.token_logprobs(logits_pi, sample.tokens) -
           losses.token_logprobs(logits_mu, sample.tokens)) * sample.mask
  np.testing.assert_allclose(out.kl[:4], np.asarray(ratio.sum(-1)),
                             atol=1e-4)
  texts = [processor.decode([int(t) for t in row[:n] if t != di.EOS_ID])
           for row, n in zip(np.asarray(sample.tokens),
                             np.asarray(sample.lengths))]
  assert tuple(texts) == out.summaries[:4]


def test_generate_reference_has_zero_kl(world, runs, samples):
  _, vocab = world
  _, params = runs
  prompt_set, _ = samples
  out = generation.generate(
      CONFIG, params["reference"], params["reference"], prompt_set.tokens,
      vocabulary=vocab, max_decode_length=MAX_LEN, batch_size=4, seed=3)
  np.testing.assert_array_equal(out.kl, np.zeros(5))


def test_generations_jsonl_round_trip(samples, tmp_path):
  _, out = samples
  path = str(tmp_path / "g.jsonl")
  out.to_jsonl(path)
  back = generation.Generations.from_jsonl(path)
  assert back.summaries == out.summaries
  np.testing.assert_array_equal(back.kl, out.kl)
  np.testing.assert_array_equal(back.lengths, out.lengths)
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"summary": "x"}\n')
  with pytest.raises(ValueError, match=r"g\.jsonl:6"):
    generation.Generations.from_jsonl(path)


def test_preference_model_judge(world, runs, samples):
  data, _ = world
  _, params = runs
  prompt_set, out = samples
  layout = pm_lib.make_layout(LAYOUT, data)
  score_fn = generation.preference_model_score_fn(
      CONFIG, params["pm"], data, layout, batch_size=4)
  texts = list(prompt_set.texts)
  first = list(out.summaries)
  second = list(prompt_set.references)
  p = score_fn(texts, first, second)
  assert p.shape == (5,) and p.dtype == np.float64
  np.testing.assert_allclose(p + score_fn(texts, second, first), 1.0,
                             atol=1e-6)
  # Equal to preference_probability on inputs tokenised by hand.
  def summaries(items):
    return di.pad_token_rows(
        [data.encode(prompts_lib.format_target(s.strip())) for s in items],
        TARGET_LENGTH)
  direct = pm_lib.preference_probability(
      t5.T5Scorer(CONFIG), params["pm"], prompt_set.tokens,
      summaries(first), summaries(second), layout)
  np.testing.assert_allclose(p, np.asarray(direct), atol=1e-6)
  judge = judges.PreferenceModelJudge(score_fn)
  np.testing.assert_allclose(judge(texts, first, second), p)
  with pytest.raises(ValueError, match=r"prompts\[1\]"):
    score_fn([texts[0], "not a prompt"], first[:2], second[:2])
