"""Decode throughput: the KV-cached sampler against naive recomputation.

  python -m benchmarks.decode_benchmark --model all
  python -m benchmarks.decode_benchmark --model small --repeats 3 \
      --naive_warmup 0 --naive_repeats 1

One JSON line per model (`base_record` of `benchmarks/common.py`: machine,
backend, versions, config) with, for each engine, the ahead-of-time
compile time, the timings of `--repeats` calls after `--warmup` untimed ones
(`--naive_repeats` / `--naive_warmup` for the naive engine) and the decode
throughput batch·new_tokens / median time, plus `speedup` = cached / naive
tokens/s.

Both engines are `nlhf_jax.sampling.sample` (one jitted function: encoder
once, then a `while_loop` over the steps, temperature-1 sampling) and
differ only in how each step's logits are computed:
  * cached: one decoder position per step against the self-attention KV
    cache;
  * naive (`use_kv_cache=False`): the full decoder and LM head over the
    whole fixed-size [batch, new_tokens] token buffer every step (causal
    masking makes the not-yet-written positions irrelevant; static shapes
    inside jit mean it always processes all new_tokens positions, about
    twice the work of a prefix-only recompute on average).
Decoding never stops early (`eos_id=None`), so every call produces exactly
batch × new_tokens tokens; the encoder pass over the prompt is included in
both timings. Weights are random (numpy, N(0, 1/fan_in), unit norm scales):
only shapes matter for speed. `tokens_agree` is the fraction of positions
where both engines sampled the same token with the same rng (float
differences between the two logit computations may flip near-ties).

Models: `tiny` = gin_configs/models/tiny.gin (vocab 512, d_model 64, 4×16
heads, d_ff 128, 2+2 layers); `small` = T5 1.1 small (vocab 32128, d_model
512, 6×64 heads, d_ff 1024, 8+8 layers), both without dropout, in --dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from nlhf_jax import model_info
from nlhf_jax import sampling
from nlhf_jax.models import t5

MODELS = {
    "tiny": t5.T5Config(vocab_size=512, d_model=64, num_heads=4, d_kv=16,
                        d_ff=128, num_encoder_layers=2, num_decoder_layers=2,
                        dropout_rate=0.0),
    "small": t5.T5Config(vocab_size=32128, d_model=512, num_heads=6, d_kv=64,
                         d_ff=1024, num_encoder_layers=8,
                         num_decoder_layers=8, dropout_rate=0.0),
}


def random_params(config: t5.T5Config, seed: int = 0) -> Any:
  """Random weights of `T5(config)`'s shapes, drawn on the host with numpy.

  Kernels ~ N(0, 1/fan_in) with fan_in = the leading dimension (after the
  stacked layer axis of `scan_layers` stacks), norm scales 1: logits come
  out O(1). Avoids compiling flax's RNG-heavy `init`.
  """
  rng = np.random.default_rng(seed)
  abstract = nn.unbox(model_info.abstract_params(config))

  def draw(path, leaf):
    keys = [getattr(k, "key", None) for k in path]
    if keys[-1] == "scale":
      return jnp.ones(leaf.shape, leaf.dtype)
    fan_in = leaf.shape[1] if "layers" in keys else leaf.shape[0]
    values = rng.standard_normal(leaf.shape, np.float32) * fan_in ** -0.5
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def _engine(model: t5.T5, params: Any, prompts: jax.Array,
            config: sampling.SamplingConfig, use_kv_cache: bool,
            warmup: int, repeats: int) -> tuple[dict[str, Any], np.ndarray]:
  """Compiles and times one engine; returns its figures and its tokens."""
  fn = jax.jit(lambda p, x, r: sampling.sample(
      model, p, x, r, config, use_kv_cache=use_kv_cache))
  rng = jax.random.PRNGKey(1)
  start = time.perf_counter()
  compiled = fn.lower(params, prompts, rng).compile()
  compile_s = time.perf_counter() - start
  timing = common.time_calls(lambda: compiled(params, prompts, rng).tokens,
                             warmup, repeats)
  tokens = np.asarray(compiled(params, prompts, rng).tokens)
  new_tokens = prompts.shape[0] * config.max_decode_length
  return {
      "compile_s": round(compile_s, 3),
      **timing,
      "tokens_per_s": new_tokens / timing["median_s"],
  }, tokens


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
  """Benchmarks both engines on one model; returns the JSON record."""
  config = dataclasses.replace(MODELS[name], dtype=args.dtype)
  model = t5.T5(config)
  params = random_params(config)
  prompts = jnp.asarray(np.random.default_rng(1).integers(
      2, config.vocab_size, (args.batch, args.prompt_length)), jnp.int32)
  sampling_config = sampling.SamplingConfig(
      max_decode_length=args.new_tokens, temperature=1.0, eos_id=None)
  cached, cached_tokens = _engine(model, params, prompts, sampling_config,
                                  True, args.warmup, args.repeats)
  naive, naive_tokens = _engine(model, params, prompts, sampling_config,
                                False, args.naive_warmup, args.naive_repeats)
  record = common.base_record("decode", {
      "model": name, **dataclasses.asdict(config),
      "num_params": sum(x.size for x in jax.tree.leaves(params)),
      "batch": args.batch, "prompt_length": args.prompt_length,
      "new_tokens": args.new_tokens, "warmup": args.warmup,
      "repeats": args.repeats, "naive_warmup": args.naive_warmup,
      "naive_repeats": args.naive_repeats, "temperature": 1.0,
      "smoke": args.smoke,
  })
  record["cached"] = cached
  record["naive"] = naive
  record["speedup"] = cached["tokens_per_s"] / naive["tokens_per_s"]
  record["tokens_agree"] = float(np.mean(cached_tokens == naive_tokens))
  record["peak_memory"] = common.peak_memory()
  return record


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", choices=("tiny", "small", "all"),
                      default="all")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--prompt_length", type=int, default=128)
  parser.add_argument("--dtype", default="float32",
                      help="activation dtype (params stay float32)")
  parser.add_argument("--naive_warmup", type=int, default=None,
                      help="warm-up calls of the naive engine (default: "
                      "--warmup); both engines are compiled ahead of time")
  parser.add_argument("--naive_repeats", type=int, default=None,
                      help="timed calls of the naive engine (default: "
                      "--repeats); a naive T5-small call takes minutes on CPU")
  common.add_common_flags(parser, warmup=1, repeats=3)
  args = parser.parse_args(argv)
  if args.smoke:
    args.batch, args.new_tokens, args.prompt_length = 2, 4, 8
    args.warmup, args.repeats = 1, 1
    args.naive_warmup, args.naive_repeats = 1, 1
  if args.naive_warmup is None:
    args.naive_warmup = args.warmup
  if args.naive_repeats is None:
    args.naive_repeats = args.repeats
  for flag in ("batch", "new_tokens", "prompt_length"):
    if getattr(args, flag) < 1:
      parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}.")
  common.check_counts(args.warmup, args.repeats)
  common.check_counts(args.naive_warmup, args.naive_repeats)
  return args


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
  args = _parse(argv)
  common.configure_platform(args.platform)
  names = ("tiny", "small") if args.model == "all" else (args.model,)
  records = []
  for name in names:
    record = run_model(name, args)
    common.emit(record)
    records.append(record)
  return records


if __name__ == "__main__":
  main()
