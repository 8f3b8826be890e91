"""Device mesh, the one table of logical-axis rules, and sharded initialisation.

Models name their parameter and activation axes logically (`embed`, `mlp`,
`heads`, `vocab`, `act_batch`, ...). `LOGICAL_AXIS_RULES` below is the only
place that says which mesh axis (`data`, `fsdp`, `model`) each name maps to:

* `data`: pure data parallelism (batch split, parameters replicated);
* `fsdp`: batch split *and* parameters/optimizer state split along `embed`
  (ZeRO-3 style; gathered per layer by XLA);
* `model`: tensor parallelism over heads, MLP width and vocabulary.

A dimension that the mapped mesh axes do not divide evenly is replicated
instead (logged once), so tiny test models run on any mesh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
from typing import Any, Callable, Iterator, Optional, Sequence
import warnings

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from nlhf_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "model")

LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    # Parameters.
    ("vocab", "model"),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("relpos_buckets", None),
    ("score", None),
    ("layers", None),
    # Activations.
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "model"),
    ("act_kv", None),
    ("act_mlp", "model"),
    ("act_vocab", "model"),
)

BATCH_AXES = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh shape over (data, fsdp, model); one size may be -1 (fills the rest).

  Attributes:
    data: data-parallel size.
    fsdp: data-parallel size that also shards parameters (`embed` axis).
    model: tensor-parallel size.
  """

  data: int = -1
  fsdp: int = 1
  model: int = 1

  def __post_init__(self):
    # Imported here: this file's edits are kept to __post_init__ for now.
    from nlhf_jax import errors  # pylint: disable=g-import-not-at-top
    sizes = self.sizes
    if sum(s == -1 for s in sizes) > 1:
      raise ConfigError(f"MeshConfig: at most one axis may be -1, got "
                       f"{dict(zip(MESH_AXES, sizes))}.")
    for name, size in zip(MESH_AXES, sizes):
      errors.check_positive(self, name, size, integer=True, also=(-1,),
                            hint="-1: the devices left")

  @property
  def sizes(self) -> tuple[int, int, int]:
    return (self.data, self.fsdp, self.model)

  def resolve(self, num_devices: int) -> tuple[int, int, int]:
    """Concrete (data, fsdp, model) sizes for `num_devices` devices.

    Raises:
      ConfigError: naming both numbers when the product cannot match.
    """
    sizes = list(self.sizes)
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
      if num_devices % known:
        raise ConfigError(
            f"Mesh {dict(zip(MESH_AXES, self.sizes))}: the fixed axes need a "
            f"multiple of {known} devices, but {num_devices} devices are "
            "available.")
      sizes[sizes.index(-1)] = num_devices // known
    elif known != num_devices:
      raise ConfigError(
          f"Mesh {dict(zip(MESH_AXES, self.sizes))} needs {known} devices, "
          f"but {num_devices} devices are available.")
    return tuple(sizes)


def fallback_device_mesh(platform: str, shape: tuple[int, ...],
                         devices: Sequence[jax.Device],
                         error: Exception) -> np.ndarray:
  """What to do when `mesh_utils.create_device_mesh` cannot build `shape`.

  On TPU the device order is the interconnect topology: a plain reshape
  would silently put the `model` axis across slow links, so this raises.
  Elsewhere (CPU, GPU: no torus to respect) it warns and returns the
  devices in the given order, reshaped.

  Args:
    platform: the devices' platform ('cpu', 'gpu', 'tpu').
    shape: the resolved (data, fsdp, model) sizes.
    devices: the devices of the mesh.
    error: what `create_device_mesh` raised (named in the message).

  Raises:
    ConfigError: on TPU, naming the mesh shape and the device count.
  """
  what = (f"mesh (data, fsdp, model) = {tuple(shape)} over {len(devices)} "
          f"{platform} devices: create_device_mesh failed "
          f"({type(error).__name__}: {error})")
  if platform == "tpu":
    raise ConfigError(f"Cannot lay out the {what}. Choose a MeshConfig "
                      "whose axes fit the TPU topology.")
  warnings.warn(f"Using the plain device order for the {what}.",
                RuntimeWarning, stacklevel=3)
  return np.asarray(list(devices), dtype=object).reshape(shape)


def _create_device_mesh(shape: tuple[int, ...],
                        devices: Sequence[jax.Device]) -> np.ndarray:
  """`create_device_mesh`, retried with split physical axes if it fails."""
  attempts = [{}]
  if "allow_split_physical_axes" in inspect.signature(
      mesh_utils.create_device_mesh).parameters:
    attempts.append({"allow_split_physical_axes": True})
  for kwargs in attempts:
    try:
      return mesh_utils.create_device_mesh(shape, devices=devices, **kwargs)
    except (ValueError, NotImplementedError, AssertionError) as e:
      error = e
  return fallback_device_mesh(devices[0].platform, shape, devices, error)


def make_mesh(config: MeshConfig = MeshConfig(),
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """Builds a `Mesh` with axes (data, fsdp, model) over `devices`.

  The device order comes from `mesh_utils.create_device_mesh` (topology
  aware on TPU); if it fails, see `fallback_device_mesh`.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = config.resolve(len(devices))
  return Mesh(_create_device_mesh(shape, devices), MESH_AXES)


def _mesh_axes_size(mesh: Mesh, axes: Any) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(mesh.shape[a] for a in axes)


_warned: set[tuple[Any, ...]] = set()


def logical_to_mesh_spec(logical_axes: Sequence[Optional[str]],
                         shape: Sequence[int], mesh: Mesh,
                         rules=LOGICAL_AXIS_RULES) -> P:
  """PartitionSpec for one array; indivisible dimensions are replicated."""
  mesh_axes = nn.logical_to_mesh_axes(tuple(logical_axes), rules)
  out = []
  used: set[str] = set()
  for dim, name, axes in zip(shape, logical_axes, mesh_axes):
    flat = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = _mesh_axes_size(mesh, axes)
    if axes is None or size == 1 or used & set(flat):
      out.append(None)
      continue
    if dim % size:
      key = (name, dim, size)
      if key not in _warned:
        _warned.add(key)
        logging.info("Replicating logical axis %r of size %d: mesh axes %s "
                     "(size %d) do not divide it.", name, dim, axes, size)
      out.append(None)
      continue
    used |= set(flat)
    out.append(axes)
  return P(*out)


def logical_shardings(abstract_boxed: Any, mesh: Mesh,
                      rules=LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings for a tree of (possibly logically boxed) abstract arrays.

  The result has the structure of `nn.unbox(abstract_boxed)`.
  """
  specs = nn.get_partition_spec(abstract_boxed)
  shapes = nn.unbox(abstract_boxed)

  def one(spec, leaf):
    logical = tuple(spec) + (None,) * (len(leaf.shape) - len(tuple(spec)))
    return NamedSharding(mesh, logical_to_mesh_spec(logical, leaf.shape,
                                                    mesh, rules))

  return jax.tree.map(one, specs, shapes,
                      is_leaf=lambda x: isinstance(x, P))


def sharded_init(init_fn: Callable[[], Any], mesh: Mesh,
                 rules=LOGICAL_AXIS_RULES) -> tuple[Any, Any]:
  """Initialises a tree already sharded: eval_shape, then jit(out_shardings).

  Args:
    init_fn: no-argument function returning (boxed) parameters; close over
      the rng.
    mesh: target mesh.
    rules: logical-axis rules.

  Returns:
    (params, shardings): unboxed parameters placed per `shardings`.
  """
  abstract = jax.eval_shape(init_fn)
  shardings = logical_shardings(abstract, mesh, rules)
  # No mesh context here: flax applies box constraints to the flat kernels it
  # reshapes in DenseGeneral; `out_shardings` alone places the result.
  params = jax.jit(lambda: nn.unbox(init_fn()), out_shardings=shardings)()
  return params, shardings


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying shardings (for restoring or lowering)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding for host batches: leading dim over (data, fsdp)."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


@contextlib.contextmanager
def activate(mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> Iterator[None]:
  """Context in which the models' logical activation constraints apply."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def parameter_report(params: Any, shardings: Any) -> str:
  """One line per parameter: path, global shape, per-device shard, spec."""
  lines = []
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  flat_sh = jax.tree.leaves(shardings,
                            is_leaf=lambda x: isinstance(x, NamedSharding))
  for (path, leaf), sh in zip(flat, flat_sh):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    shard = sh.shard_shape(leaf.shape)
    lines.append(f"{name}\tshape={tuple(leaf.shape)}\tshard={shard}\t"
                 f"spec={tuple(sh.spec)}")
  return "\n".join(lines)


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
  """Calls `jax.distributed.initialize` for multi-process runs.

  Flags win over the environment (`NLHF_COORDINATOR_ADDRESS`,
  `NLHF_NUM_PROCESSES`, `NLHF_PROCESS_ID`); on TPU pods and SLURM, JAX's own
  cluster detection fills in what is not given. Single-process runs without
  any of these are left alone.

  Returns:
    True if `jax.distributed.initialize` was called.
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get(
      "NLHF_COORDINATOR_ADDRESS")
  if num_processes is None and "NLHF_NUM_PROCESSES" in env:
    num_processes = int(env["NLHF_NUM_PROCESSES"])
  if process_id is None and "NLHF_PROCESS_ID" in env:
    process_id = int(env["NLHF_PROCESS_ID"])
  auto = any(k in env for k in ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID",
                                "MEGASCALE_COORDINATOR_ADDRESS"))
  if coordinator_address is None and not auto:
    return False
  if num_processes == 1:
    return False
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":
    # Cross-process collectives on CPU (tests, CPU clusters) go over gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
  return True
