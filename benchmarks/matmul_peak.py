"""Measured matmul peak of this machine: FLOP/s of a jitted `jnp.dot`.

For each dtype and square size n, one call computes C = A @ B with
A, B [n, n] (2 n³ FLOPs); the time is the median of several calls after
warm-up. The peak of a dtype is the best median over the sizes. The MFU
of the train-step benchmarks is measured against this figure for the same
dtype, in the same process, so both see the same machine conditions.

  python -m benchmarks.matmul_peak [--dtypes float32,bfloat16]
      [--sizes 1024,2048,3072]
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from benchmarks import common

DEFAULT_SIZES = (1024, 2048, 3072)
SMOKE_SIZES = (64, 128)


def measure_dtype(dtype: str, sizes: Sequence[int], warmup: int,
                  repeats: int) -> dict[str, Any]:
  """Median FLOP/s of `jnp.dot` at each size for one dtype.

  Args:
    dtype: 'float32' or 'bfloat16' (inputs and output; accumulation is the
      backend's default for that dtype).
    sizes: square sizes n.
    warmup: untimed calls per size.
    repeats: timed calls per size.

  Returns:
    {'peak_flops_per_s', 'best_size', 'by_size': {n: {...}}}.
  """
  dot = jax.jit(jnp.dot)
  by_size = {}
  for n in sizes:
    if n < 1:
      raise ValueError(f"matmul sizes must be positive, got {n}.")
    key_a, key_b = jax.random.split(jax.random.PRNGKey(n))
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
    timing = common.time_calls(lambda: dot(a, b), warmup, repeats)
    flops = 2.0 * n ** 3
    by_size[str(n)] = {
        "median_s": timing["median_s"],
        "flops_per_s": flops / timing["median_s"],
        "best_flops_per_s": flops / timing["min_s"],
    }
  best = max(by_size, key=lambda k: by_size[k]["flops_per_s"])
  return {"peak_flops_per_s": by_size[best]["flops_per_s"],
          "best_size": int(best), "by_size": by_size}


def measure_peak(dtype: str, *, smoke: bool = False,
                 sizes: Optional[Sequence[int]] = None, warmup: int = 1,
                 repeats: int = 5) -> float:
  """Peak matmul FLOP/s for `dtype` (used by the MFU benchmarks)."""
  sizes = sizes or (SMOKE_SIZES if smoke else DEFAULT_SIZES)
  return measure_dtype(dtype, sizes, warmup, repeats)["peak_flops_per_s"]


def _parse_ints(text: str) -> list[int]:
  try:
    return [int(x) for x in text.split(",") if x]
  except ValueError as e:
    raise ValueError(f"--sizes must be comma-separated integers, got "
                     f"{text!r}.") from e


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the benchmark, prints and returns its JSON record."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=1, repeats=5)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--sizes", default=None,
                      help="comma-separated square sizes (default "
                      f"{','.join(map(str, DEFAULT_SIZES))})")
  args = parser.parse_args(argv)
  common.configure_platform(args.platform, fast_compile=args.smoke)
  sizes = (_parse_ints(args.sizes) if args.sizes else
           SMOKE_SIZES if args.smoke else DEFAULT_SIZES)
  repeats = 1 if args.smoke else args.repeats
  dtypes = [d for d in args.dtypes.split(",") if d]
  for d in dtypes:
    if d not in ("float32", "bfloat16", "float16"):
      raise ValueError(f"--dtypes: unsupported dtype {d!r} (use float32, "
                       "bfloat16 or float16).")
  config = {"dtypes": dtypes, "sizes": list(sizes), "warmup": args.warmup,
            "repeats": repeats, "smoke": args.smoke}
  record = common.base_record("matmul_peak", config)
  results = {d: measure_dtype(d, sizes, args.warmup, repeats)
             for d in dtypes}
  record["results"] = results
  record["peak_flops_per_s"] = {d: r["peak_flops_per_s"]
                                for d, r in results.items()}
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
