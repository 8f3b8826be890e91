"""TPU topologies from a CPU machine, and per-device memory of compiled steps.

With `libtpu` installed, `jax.experimental.topologies.get_topology_desc`
describes a TPU slice (e.g. "v5e:4x4") without any TPU present; a jitted
function lowered with shardings on those devices compiles for that slice,
and the executable's memory analysis gives real per-device figures. This
module holds the topology catalogue and the memory report; `aot.py` builds
the train steps to compile.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional, Sequence

import jax

from nlhf_jax.errors import ConfigError

GIB = 1024 ** 3

# HBM per JAX device. JAX exposes one device per v5e / v6e chip and, for the
# v4 topology descriptions used here, one device per TensorCore (two per
# 32 GiB chip).
HBM_BYTES_BY_KIND = {
    "TPU v5 lite": 16 * GIB,
    "TPU v6 lite": 32 * GIB,
    "TPU v5": 95 * GIB,
    "TPU v4": 16 * GIB,
}

# Slice names users know -> JAX topology names.
SLICES = {
    "v4-32": "v4:2x2x4",
    "v5e-4": "v5e:2x2",
    "v5e-16": "v5e:4x4",
    "v5e-64": "v5e:8x8",
    "v5e-256": "v5e:16x16",
}


def topology_devices(topology: str) -> list[Any]:
  """Devices of a TPU slice, e.g. "v5e:4x4" or "v5e-16".

  Raises:
    ConfigError: libtpu is missing or the topology name is unknown.
  """
  name = SLICES.get(topology, topology)
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    desc = topologies.get_topology_desc(platform="tpu", topology_name=name)
  except Exception as e:  # libtpu raises assorted runtime errors.
    raise ConfigError(
        f"Cannot describe TPU topology {topology!r} ({e}). Ahead-of-time "
        "compilation needs libtpu: pip install -e '.[tpu]'; names look like "
        f"'v5e:4x4' or one of {sorted(SLICES)}.") from e
  return list(desc.devices)


@dataclasses.dataclass(frozen=True)
class MemoryReport:
  """Per-device memory of one compiled program (bytes)."""

  program: str
  topology: str
  num_devices: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  code_bytes: int
  hbm_bytes: Optional[int]

  @property
  def total_bytes(self) -> int:
    """Peak estimate: arguments + outputs not aliased to them + temporaries."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes +
            self.temp_bytes + self.code_bytes)

  @property
  def fits(self) -> Optional[bool]:
    return None if self.hbm_bytes is None else self.total_bytes <= self.hbm_bytes

  def as_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d.update(total_bytes=self.total_bytes, fits=self.fits)
    return d

  def summary(self) -> str:
    gib = lambda b: f"{b / GIB:.2f} GiB"
    verdict = ("unknown HBM" if self.fits is None else
               ("fits" if self.fits else "DOES NOT FIT") +
               f" in {gib(self.hbm_bytes)}")
    return (f"{self.program} on {self.topology} ({self.num_devices} devices): "
            f"arguments {gib(self.argument_bytes)}, outputs "
            f"{gib(self.output_bytes)} (aliased {gib(self.alias_bytes)}), "
            f"temporaries {gib(self.temp_bytes)}, total "
            f"{gib(self.total_bytes)} per device -> {verdict}")


def memory_report(compiled: Any, program: str, topology: str,
                  devices: Sequence[Any]) -> MemoryReport:
  """Reads a compiled executable's memory analysis into a report."""
  stats = compiled.memory_analysis()
  kind = getattr(devices[0], "device_kind", "")
  return MemoryReport(
      program=program, topology=topology, num_devices=len(devices),
      argument_bytes=int(stats.argument_size_in_bytes),
      output_bytes=int(stats.output_size_in_bytes),
      alias_bytes=int(stats.alias_size_in_bytes),
      temp_bytes=int(stats.temp_size_in_bytes),
      code_bytes=int(stats.generated_code_size_in_bytes),
      hbm_bytes=HBM_BYTES_BY_KIND.get(kind))


_OOM = re.compile(r"HLO temporaries \(([0-9.]+)([KMGT])\)")


def report_from_oom(error: Exception, program: str, topology: str,
                    devices: Sequence[Any]) -> Optional[MemoryReport]:
  """A not-fitting report from the TPU compiler's out-of-memory error.

  The TPU compiler refuses programs whose temporaries exceed HBM and names
  the amount; arguments and outputs are then unknown (reported as 0).
  Returns None if `error` is not such an error.
  """
  match = _OOM.search(str(error))
  if "RESOURCE_EXHAUSTED" not in str(error) or not match:
    return None
  scale = {"K": 1024, "M": 1024 ** 2, "G": GIB, "T": 1024 * GIB}
  temp = int(float(match.group(1)) * scale[match.group(2)])
  kind = getattr(devices[0], "device_kind", "")
  return MemoryReport(program=program, topology=topology,
                      num_devices=len(devices), argument_bytes=0,
                      output_bytes=0, alias_bytes=0, temp_bytes=temp,
                      code_bytes=0, hbm_bytes=HBM_BYTES_BY_KIND.get(kind))
