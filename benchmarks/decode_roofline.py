"""Cached decoding against this machine's memory roofline, and the mixture's price.

  python -m benchmarks.decode_roofline [--model small] [--batches 8,32]
      [--prompt_length 64 --new_tokens 32]

At small batch a decoding step is memory-bound: it reads every decoder
weight, the LM head and the KV caches once and does little arithmetic per
byte. The roofline time of a step is bytes read / memory bandwidth, with

  weights  per decoder layer: self-attention q, k, v, o (4·e·h·d), the
           cross-attention's q and o (2·e·h·d; its keys and values come
           from the cache), the gated MLP (3·e·f), three norm scales (3·e);
           then the final norm (e) and the LM head (e·v);
  caches   per layer: self-attention keys and values over the allocated
           length, 2·b·L·h·d (each step attends to all L positions,
           masked), and the cross-attention's 2·b·t·h·d;

at 4 bytes each (float32), and the bandwidth is measured in the same
process: NumPy sums of a 512 MiB float32 array (larger than the caches),
median of 5 passes, bytes read / seconds, before and after the timed calls;
the larger reading is used (`bandwidth_used`). `fraction` = bytes per step
× steps/s ÷ bandwidth (1.0 = at the roofline). Embedding-row gathers,
activations and the per-step noise are not counted (they are small, except
the Gumbel noise, which is b·v draws written and read once).

A call also encodes the prompts and projects the cross-attention's keys and
values once (compute-bound work the roofline above does not model), so
`step_ms` (call time / new tokens) overstates a decoding step. The loop
alone is measured as the difference of a call with all new tokens and a
call with one, divided by the steps between them: `loop_step_ms`, and
`loop_fraction` against the same roofline.

Each batch is timed for `sampling.sample` (the policy alone) and
`sampling.sample_mixture` (policy and reference, token-level mixture: twice
the bytes), both without early exit (`eos_id=None`), and reports
`mixture_over_single` = mixture tokens/s ÷ single tokens/s (ideal about 0.5
when memory-bound: the reads double). Weights are random (numpy); the
reference is a second random draw of the same config.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import decode_benchmark
from nlhf_jax import sampling
from nlhf_jax.models import t5

BYTES = 4  # float32


def measure_bandwidth(mib: int = 512, passes: int = 5) -> dict[str, float]:
  """Read bandwidth in bytes/s: the median of `passes` NumPy sums."""
  data = np.ones(mib * 2**20 // 4, np.float32)
  times = []
  for _ in range(passes + 1):
    start = time.perf_counter()
    float(data.sum())
    times.append(time.perf_counter() - start)
  median = statistics.median(times[1:])  # The first pass faults pages in.
  return {"array_mib": mib, "passes": passes, "median_s": median,
          "bytes_per_s": data.nbytes / median}


def bytes_per_step(config: t5.T5Config, batch: int, prompt_length: int,
                   max_len: int) -> dict[str, int]:
  """Bytes one cached decoding step reads (module docstring)."""
  e, hd, f = config.d_model, config.num_heads * config.d_kv, config.d_ff
  layers = config.num_decoder_layers
  per_layer = 6 * e * hd + 3 * e * f + 3 * e
  weights = layers * per_layer + e + e * config.vocab_size
  caches = layers * 2 * batch * hd * (max_len + prompt_length)
  return {"weights": weights * BYTES, "caches": caches * BYTES,
          "total": (weights + caches) * BYTES}


def _time(fn, args, warmup: int, repeats: int) -> dict[str, Any]:
  compiled = jax.jit(fn).lower(*args).compile()
  return common.time_calls(lambda: compiled(*args).tokens, warmup, repeats)


def run_batch(config: t5.T5Config, params: Any, reference: Any, batch: int,
              args: argparse.Namespace, bandwidth: float) -> dict[str, Any]:
  """Single-model and mixture decoding at one batch size."""
  model = t5.T5(config)
  prompts = jnp.asarray(np.random.default_rng(batch).integers(
      2, config.vocab_size, (batch, args.prompt_length)), jnp.int32)
  rng = jax.random.PRNGKey(0)

  def timed(steps):
    cfg = sampling.SamplingConfig(max_decode_length=steps, eos_id=None)
    single = _time(lambda p, x, r: sampling.sample(model, p, x, r, cfg),
                   (params, prompts, rng), args.warmup, args.repeats)
    mixture = _time(lambda p, q, x, r: sampling.sample_mixture(
        model, p, model, q, x, r, 0.125, cfg),
                    (params, reference, prompts, rng), args.warmup,
                    args.repeats)
    return {"single": single, "mixture": mixture}

  full = timed(args.new_tokens)
  one = timed(1) if args.new_tokens > 1 else None
  read = bytes_per_step(config, batch, args.prompt_length, args.new_tokens)
  out = {"batch": batch, "bytes_per_step": read}
  for name, models in (("single", 1), ("mixture", 2)):
    timing = full[name]
    steps_per_s = args.new_tokens / timing["median_s"]
    achieved = models * read["total"] * steps_per_s
    roofline_ms = 1e3 * models * read["total"] / bandwidth
    out[name] = {**timing, "tokens_per_s": batch * steps_per_s,
                 "step_ms": 1e3 / steps_per_s,
                 "roofline_step_ms": roofline_ms,
                 "bytes_per_s": achieved, "fraction": achieved / bandwidth}
    if one is not None:
      loop_ms = 1e3 * (timing["median_s"] - one[name]["median_s"]) / (
          args.new_tokens - 1)
      out[name].update(one_step_call_s=one[name]["median_s"],
                       loop_step_ms=loop_ms,
                       loop_fraction=roofline_ms / loop_ms)
  out["mixture_over_single"] = (out["mixture"]["tokens_per_s"] /
                                out["single"]["tokens_per_s"])
  return out


def _rescale(row: dict[str, Any], factor: float) -> None:
  """Re-expresses a row measured against bandwidth B against B / factor."""
  for name in ("single", "mixture"):
    out = row[name]
    out["roofline_step_ms"] *= factor
    for key in ("fraction", "loop_fraction"):
      if key in out:
        out[key] *= factor


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", choices=tuple(decode_benchmark.MODELS),
                      default="small")
  parser.add_argument("--batches", default="8,32")
  parser.add_argument("--prompt_length", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=32)
  common.add_common_flags(parser, warmup=1, repeats=5)
  args = parser.parse_args(argv)
  if args.smoke:
    args.model, args.batches, args.new_tokens = "tiny", "2", 4
    args.prompt_length, args.warmup, args.repeats = 8, 1, 1
  batches = [int(b) for b in args.batches.split(",")]
  if min(batches) < 1 or args.new_tokens < 1 or args.prompt_length < 1:
    parser.error("--batches, --new_tokens and --prompt_length must be >= 1.")
  common.check_counts(args.warmup, args.repeats)
  common.configure_platform(args.platform)
  config = decode_benchmark.MODELS[args.model]
  params = decode_benchmark.random_params(config, seed=0)
  reference = decode_benchmark.random_params(config, seed=1)
  bandwidth_before = measure_bandwidth(64 if args.smoke else 512)
  rows = [run_batch(config, params, reference, b, args,
                    bandwidth_before["bytes_per_s"]) for b in batches]
  bandwidth_after = measure_bandwidth(64 if args.smoke else 512)
  # Fractions against the larger of the two readings (the conservative one).
  used = max(bandwidth_before["bytes_per_s"], bandwidth_after["bytes_per_s"])
  for row in rows:
    _rescale(row, bandwidth_before["bytes_per_s"] / used)
  record = common.base_record("decode_roofline", {
      "model": args.model, **dataclasses.asdict(config), "batches": batches,
      "prompt_length": args.prompt_length, "new_tokens": args.new_tokens,
      "warmup": args.warmup, "repeats": args.repeats, "smoke": args.smoke})
  record.update(bandwidth=bandwidth_before, bandwidth_after=bandwidth_after,
                bandwidth_used=used, rows=rows, memory=common.peak_memory())
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
