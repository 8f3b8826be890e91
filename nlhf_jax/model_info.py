"""Parameter counts (from shapes only) and the per-parameter sharding report."""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp

from nlhf_jax import partitioning
from nlhf_jax.models import t5


def abstract_params(config: t5.T5Config, scorer: bool = False,
                    batch: int = 1, length: int = 8) -> Any:
  """Parameter ShapeDtypeStructs (logically boxed) without allocating."""
  tokens = jnp.ones((batch, length), jnp.int32)
  if scorer:
    model = t5.T5Scorer(config)
    init = lambda: model.init(jax.random.PRNGKey(0), tokens)["params"]
  else:
    model = t5.T5(config)
    init = lambda: model.init(jax.random.PRNGKey(0), tokens, tokens)["params"]
  return jax.eval_shape(init)


def count_params(config: t5.T5Config, scorer: bool = False) -> int:
  """Number of parameters of `T5` (or `T5Scorer`), computed with eval_shape."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  leaves = jax.tree.leaves(nn.unbox(abstract_params(config, scorer)))
  return sum(math.prod(x.shape) for x in leaves)


def describe(model: t5.T5Config, mesh: partitioning.MeshConfig,
             workdir: Optional[str] = None) -> dict[str, Any]:
  """Reports how `model`'s parameters are laid out on `mesh`.

  Shapes only (`jax.eval_shape`): nothing is initialised or allocated, so
  any size can be described on any machine with the mesh's device count.
  Prints the parameter count and mesh, and writes `model_info.txt` (one line
  per parameter: shape, per-device shard shape, mesh axes) into `workdir`
  from process 0.

  Returns:
    {'num_params': int, 'mesh': {axis: size}, 'report': str}.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  device_mesh = partitioning.make_mesh(mesh)
  boxed = abstract_params(model)
  shardings = partitioning.logical_shardings(boxed, device_mesh)
  params = nn.unbox(boxed)
  report = partitioning.parameter_report(params, shardings)
  num = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  info = {"num_params": num, "mesh": dict(device_mesh.shape),
          "report": report}
  if jax.process_index() == 0:
    print(f"model: {num:,} parameters; mesh {dict(device_mesh.shape)}")
    if workdir:
      os.makedirs(workdir, exist_ok=True)
      path = os.path.join(workdir, "model_info.txt")
      with open(path, "w", encoding="utf-8") as f:
        f.write(report + "\n")
      print(f"wrote {path}")
  return info
