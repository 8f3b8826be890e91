"""Shared pieces of the benchmark commands: environment, timing, memory, JSON.

Every benchmark prints exactly one JSON line built from `base_record`: the
machine (CPU model, cores, load average at the start: the machine may be
shared), the JAX backend and devices, library versions, the benchmark's
configuration, its measurements, and the peak host / device memory of the
process (`peak_memory`).

Timing (`time_calls`): `warmup` untimed calls (the first one compiles), then
`repeats` timed calls, each ended by `jax.block_until_ready`; the median is
the headline figure, min/max are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Optional

import jax

SCHEMA_VERSION = 1


def add_common_flags(parser: argparse.ArgumentParser, *, warmup: int = 2,
                     repeats: int = 5) -> None:
  """Flags every benchmark takes: platform, warm-up and repeat counts, smoke."""
  parser.add_argument(
      "--platform", default=os.environ.get("JAX_PLATFORMS", "cpu") or "cpu",
      help="JAX platform(s) to run on (default: $JAX_PLATFORMS or 'cpu').")
  parser.add_argument("--warmup", type=int, default=warmup,
                      help="untimed calls before timing (the first compiles)")
  parser.add_argument("--repeats", type=int, default=repeats,
                      help="timed calls; the median is reported")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny sizes and one repeat: checks that the "
                      "benchmark runs, the figures mean nothing")


FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_llvm_disable_expensive_passes=true")


def configure_platform(name: str, fast_compile: bool = False) -> None:
  """Selects the JAX platform; optionally cheaper (slower-code) compilation.

  Both take effect only before JAX initialises its backends, i.e. when
  called first thing by a benchmark's command line.

  Args:
    name: JAX platform(s), e.g. 'cpu' or 'gpu'.
    fast_compile: add `FAST_COMPILE_FLAGS` to XLA_FLAGS (smoke runs: XLA's
      CPU compiler dominates their run time; timings then mean nothing).
  """
  jax.config.update("jax_platforms", name)
  if fast_compile:
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags += [f for f in FAST_COMPILE_FLAGS if f not in flags]
    os.environ["XLA_FLAGS"] = " ".join(flags)


def check_counts(warmup: int, repeats: int) -> None:
  """Rejects counts that cannot give a median."""
  if warmup < 0:
    raise ValueError(f"--warmup must be >= 0, got {warmup}.")
  if repeats < 1:
    raise ValueError(f"--repeats must be >= 1, got {repeats}.")


def _cpu_model() -> Optional[str]:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def _cpu_flags() -> list[str]:
  wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          return [w for w in wanted if w in flags]
  except OSError:
    pass
  return []


def _total_memory_gib() -> Optional[float]:
  try:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return round(pages / 2 ** 30, 2)
  except (ValueError, OSError):
    return None


def machine_info() -> dict[str, Any]:
  """CPU model, usable cores, memory and the 1/5/15-min load average."""
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:
    load = None
  return {
      "cpu_model": _cpu_model(),
      "cpu_flags": _cpu_flags(),
      "logical_cores": os.cpu_count(),
      "usable_cores": usable,
      "memory_gib": _total_memory_gib(),
      "load_average_1_5_15": load,
      "os": platform.platform(),
  }


def backend_info() -> dict[str, Any]:
  """JAX backend, device kind and count."""
  devices = jax.devices()
  return {
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def versions() -> dict[str, Optional[str]]:
  """Versions of Python and the numerical libraries in use."""
  out: dict[str, Optional[str]] = {"python": sys.version.split()[0]}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
    try:
      module = __import__(name)
      out[name] = getattr(module, "__version__", None)
    except ImportError:
      out[name] = None
  return out


def base_record(benchmark: str, config: dict[str, Any]) -> dict[str, Any]:
  """The fields every benchmark's JSON line starts with."""
  return {
      "benchmark": benchmark,
      "schema_version": SCHEMA_VERSION,
      "machine": machine_info(),
      "backend": backend_info(),
      "versions": versions(),
      "config": config,
  }


def time_calls(fn: Callable[[], Any], warmup: int,
               repeats: int) -> dict[str, Any]:
  """Times `fn()` (blocking on its result) after `warmup` untimed calls.

  Args:
    fn: no-argument callable returning JAX arrays (or any pytree).
    warmup: untimed calls first (compilation happens in the first).
    repeats: timed calls.

  Returns:
    {'median_s', 'min_s', 'max_s', 'times_s', 'first_call_s'}; first_call_s
    is the first warm-up call's duration (compile + run), None without
    warm-up.
  """
  check_counts(warmup, repeats)
  first = None
  for i in range(warmup):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    if i == 0:
      first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return {
      "median_s": statistics.median(times),
      "min_s": min(times),
      "max_s": max(times),
      "times_s": [round(t, 6) for t in times],
      "first_call_s": first,
  }


def peak_memory() -> dict[str, Optional[float]]:
  """Peak host RSS of this process and peak device memory (MiB).

  Host: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (KiB on Linux, bytes on
  macOS). Device: the maximum `peak_bytes_in_use` over local devices from
  `Device.memory_stats()`, or None where the backend does not report it
  (the CPU backend does not).
  """
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss_mib = rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10
  peaks = []
  for device in jax.local_devices():
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(stats["peak_bytes_in_use"])
  return {
      "host_peak_rss_mib": round(rss_mib, 1),
      "device_peak_mib": round(max(peaks) / 2 ** 20, 1) if peaks else None,
  }


def cost_flops(compiled: Any) -> Optional[float]:
  """XLA's cost-analysis FLOP count of a compiled function, or None.

  Args:
    compiled: the result of `jax.jit(f).lower(...).compile()`.

  Returns:
    The 'flops' entry of `compiled.cost_analysis()`, None where the backend
    does not provide it. XLA counts the ops of a `while` loop body once, not
    once per iteration, so this is only meaningful for loop-free code.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def emit(record: dict[str, Any]) -> None:
  """Prints `record` as one JSON line on stdout."""
  print(json.dumps(record), flush=True)
