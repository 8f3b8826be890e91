r"""Ahead-of-time compilation of the real train steps for a TPU topology.

From a CPU machine with libtpu installed (`pip install -e '.[tpu]'`):

  python -m nlhf_jax.aot --gin_file=gin_configs/models/large.gin \
      --gin_file=gin_configs/mesh/v5e_16.gin --topology=v5e:4x4

compiles the SFT step, the preference-model step and the Nash-MD-PG step
(policy + reference + preference model, sampling included; `--programs`
also takes ipo_md, egpo, nash_prox and mpo, the follow-up online steps) for the slice's
devices with the mesh from gin, and prints per-device memory (arguments,
outputs, temporaries) from the compiled memory analysis with a verdict
against the chip's HBM. No TPU is needed and nothing is allocated. Each
step is the trainer's own: `trainer.build_program` makes the Program
(state layout, frozen models, guarded and donated step) that a run of the
same configuration executes, and `Program.lower` compiles exactly it.

Models: POLICY_MODEL and PREFERENCE_MODEL macros if bound, else MODEL for
both (include two model files and bind them for a policy/PM size pair).
Mesh: MESH. Activation checkpointing is the models' `remat_policy`
(`--gin.t5_xl/t5.T5Config.remat_policy=\"full\"`); parameter and optimizer
sharding is the mesh's `fsdp` axis. Shapes: --batch_size, --input_length,
--target_length (defaults 32 / 512 / 64, the paper's batch and TL;DR
lengths). --json appends the reports as JSON lines; --table=FILE prints a
Markdown table of such a file (the README's table comes from it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from nlhf_jax import aot_memory
from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax import train_state
from nlhf_jax import trainer
from nlhf_jax.algorithms import egpo
from nlhf_jax.algorithms import ipo_md
from nlhf_jax.algorithms import mpo
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import nash_prox
from nlhf_jax.algorithms import online
from nlhf_jax.algorithms import preference_model
from nlhf_jax.algorithms import sft
from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import pairwise
from nlhf_jax.models import init as model_init
from nlhf_jax.models import preference
from nlhf_jax.models import t5

PROGRAMS = ("sft", "preference_model", "nash_md", "ipo_md", "egpo",
            "nash_prox", "mpo")


@dataclasses.dataclass(frozen=True)
class Shapes:
  """Global batch and sequence lengths of the compiled steps."""

  batch_size: int = 32
  input_length: int = 512
  target_length: int = 64

  @property
  def pair_length(self) -> int:
    return self.input_length + 2 * self.target_length + 8


def _tokens(batch: int, length: int) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((batch, length), jnp.int32)


def _compile(program: program_lib.Program,
             batch: dict[str, jax.ShapeDtypeStruct]) -> Any:
  return program.lower(batch).compile()


def compile_sft(policy_cfg: t5.T5Config, mesh, shapes: Shapes,
                config: trainer.TrainConfig):
  net = t5.T5(policy_cfg)
  program = trainer.build_program(config, mesh, model_init.init_fn(net, 0),
                                  sft.make_train_step(net))
  b, lx, ly = shapes.batch_size, shapes.input_length, shapes.target_length
  return _compile(program, {"encoder_input_tokens": _tokens(b, lx),
                            "decoder_input_tokens": _tokens(b, ly),
                            "decoder_target_tokens": _tokens(b, ly),
                            "decoder_loss_weights": _tokens(b, ly)})


def _pair_layout(shapes: Shapes) -> preference.PairLayout:
  # Marker ids do not change shapes or memory; these stand in for the
  # tokenisation of " Summary 1:" / " Summary 2:".
  return preference.PairLayout(shapes.pair_length, (3, 4, 5), (3, 4, 6))


def compile_preference_model(pm_cfg: t5.T5Config, mesh, shapes: Shapes,
                             config: trainer.TrainConfig):
  net = t5.T5Scorer(pm_cfg)
  program = trainer.build_program(
      config, mesh, model_init.scorer_init_fn(net, 0),
      preference_model.make_train_step(net, _pair_layout(shapes)))
  b, lx, ly = shapes.batch_size, shapes.input_length, shapes.target_length
  return _compile(program, {
      "encoder_input_tokens": _tokens(b, lx),
      "decoder_target_tokens_a": _tokens(b, ly),
      "decoder_target_tokens_b": _tokens(b, ly),
      "label": jax.ShapeDtypeStruct((b,), jnp.int32)})


# Online programs: (algorithm module, its default config) by program name.
ONLINE = {"nash_md": (nash_md, nash_md.NashMDConfig()),
          "ipo_md": (ipo_md, ipo_md.IPOMDConfig()),
          "egpo": (egpo, egpo.EGPOConfig()),
          "nash_prox": (nash_prox, nash_prox.NashProxConfig()),
          "mpo": (mpo, mpo.MPOConfig())}


def compile_online(name: str, policy_cfg: t5.T5Config, pm_cfg: t5.T5Config,
                   mesh, shapes: Shapes, config: trainer.TrainConfig):
  """An online step (`ONLINE[name]`): policy, reference and PM, sampling."""
  module, algorithm = ONLINE[name]
  policy = t5.T5(policy_cfg)
  judge = pairwise.PreferenceModelJudge(t5.T5Scorer(pm_cfg),
                                        _pair_layout(shapes))
  step = module.make_train_step(
      policy, policy, judge, algorithm,
      online.ResponseConfig(max_decode_length=shapes.target_length))
  program = trainer.build_program(
      config, mesh, model_init.init_fn(policy, 0), step,
      with_anchor=bool(getattr(algorithm, "keeps_anchor", False)),
      frozen_init=train_state.Frozen(
          reference=model_init.init_fn(policy, 0), judge=judge.init_params))
  return _compile(program, {"encoder_input_tokens": _tokens(
      shapes.batch_size, shapes.input_length)})


def compile_programs(topology: str, policy_cfg: t5.T5Config,
                     pm_cfg: t5.T5Config,
                     mesh_cfg: partitioning.MeshConfig,
                     shapes: Shapes = Shapes(),
                     programs: Sequence[str] = PROGRAMS,
                     log: Callable[[str], None] = print,
                     on_report: Optional[Callable[[Any], None]] = None,
                     train: Optional[trainer.TrainConfig] = None
                     ) -> list[aot_memory.MemoryReport]:
  """Compiles the named train steps for `topology`; one report each.

  `train` supplies the optimizer and NaN policy (default: the trainer's
  defaults); its batch size is replaced by `shapes.batch_size`.
  `on_report` is called with each report as soon as it exists (so a long
  series of compilations keeps what it measured if interrupted).
  """
  unknown = set(programs) - set(PROGRAMS)
  if unknown:
    raise ConfigError(f"Unknown programs {sorted(unknown)}; choose from "
                      f"{PROGRAMS}.")
  for role, cfg in (("policy", policy_cfg), ("preference model", pm_cfg)):
    for option in ("lm_head_backward", "position_bias_backward"):
      if getattr(cfg, option) != "xla":
        raise ConfigError(
            f"The {role}'s T5Config.{option}={getattr(cfg, option)!r} is an "
            "XLA:CPU option (gin_configs/backends/cpu.gin); TPU programs use "
            "the portable 'xla' (docs/cpu_speedups.md).")
  config = dataclasses.replace(train or trainer.TrainConfig(),
                               batch_size=shapes.batch_size,
                               eval_batch_size=0)
  if config.optimizer.name == "adafactor_fused":
    raise ConfigError("OptimizerConfig.name='adafactor_fused' is the XLA:CPU "
                      "variant; TPU programs use 'adafactor'.")
  devices = aot_memory.topology_devices(topology)
  mesh = partitioning.make_mesh(mesh_cfg, devices)
  batch_shards = math.prod(mesh.shape[a] for a in partitioning.BATCH_AXES)
  if shapes.batch_size % batch_shards:
    raise ConfigError(
        f"--batch_size={shapes.batch_size} does not split over the batch "
        f"axes {partitioning.BATCH_AXES} of the {topology} mesh "
        f"({batch_shards} shards); use a multiple of {batch_shards}.")
  builders = {
      "sft": lambda: compile_sft(policy_cfg, mesh, shapes, config),
      "preference_model": lambda: compile_preference_model(
          pm_cfg, mesh, shapes, config),
      **{name: functools.partial(compile_online, name, policy_cfg, pm_cfg,
                                 mesh, shapes, config) for name in ONLINE},
  }
  reports = []
  for name in programs:
    log(f"compiling {name} for {topology} (mesh {dict(mesh.shape)}) ...")
    try:
      report = aot_memory.memory_report(builders[name](), name, topology,
                                        devices)
    except jax.errors.JaxRuntimeError as e:
      report = aot_memory.report_from_oom(e, name, topology, devices)
      if report is None:
        raise
    log("  " + report.summary())
    reports.append(report)
    if on_report is not None:
      on_report(report)
  return reports


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """README table from the JSON lines written with --json."""
  gib = lambda b: f"{b / aot_memory.GIB:.2f}"
  lines = ["| policy / PM d_model | program | topology | mesh (data, fsdp, "
           "model) | batch | remat | args GiB | temps GiB | total GiB/device "
           "| HBM GiB | fits |", "|" + "---|" * 11]
  for r in rows:
    mesh = r["mesh"]
    lines.append(
        f"| {r['policy_d_model']} / {r['pm_d_model']} | {r['program']} | "
        f"{r['topology']} | {mesh['data']}, {mesh['fsdp']}, {mesh['model']} "
        f"| {r.get('batch_size', '?')} | {r['remat']} | "
        f"{gib(r['argument_bytes'])} | "
        f"{gib(r['temp_bytes'])} | {gib(r['total_bytes'])} | "
        f"{gib(r['hbm_bytes']) if r['hbm_bytes'] else '?'} | "
        f"{'yes' if r['fits'] else 'no'} |")
  return "\n".join(lines)


def _macro(name: str) -> Optional[Any]:
  import gin  # pylint: disable=g-import-not-at-top
  try:
    return gin.query_parameter(f"%{name}").scoped_configurable_fn()
  except ValueError:
    return None


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
  """CLI entry point (see the module docstring)."""
  from nlhf_jax import main as main_lib  # pylint: disable=g-import-not-at-top
  argv = list(sys.argv[1:] if argv is None else argv)
  if not os.environ.get("JAX_PLATFORMS"):
    # Compile for TPU from a CPU host: the local backend stays the CPU.
    jax.config.update("jax_platforms", "cpu")
  parser = argparse.ArgumentParser(prog="python -m nlhf_jax.aot",
                                   description=__doc__,
                                   formatter_class=(
                                       argparse.RawDescriptionHelpFormatter))
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--topology", default=None)
  parser.add_argument("--table", default=None,
                      help="print the Markdown table of a --json file; "
                      "compiles nothing")
  parser.add_argument("--programs", default=",".join(PROGRAMS))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--input_length", type=int, default=512)
  parser.add_argument("--target_length", type=int, default=64)
  parser.add_argument("--json", default=None)
  from nlhf_jax import cli  # pylint: disable=g-import-not-at-top
  with cli.exit_on_config_error():  # One line on stderr, exit 2.
    bindings, rest = main_lib.split_gin_args(argv)
    flags = parser.parse_args(rest)
    if flags.table:
      with open(flags.table, encoding="utf-8") as f:
        print(markdown_table([json.loads(line) for line in f if line.strip()]))
      return []
    if not flags.topology:
      raise ConfigError("--topology is required (e.g. v5e:4x4 or v5e-16).")
    main_lib.parse_config(flags.gin_file, bindings)
    model = _macro("MODEL")
    policy_cfg = _macro("POLICY_MODEL") or model
    pm_cfg = _macro("PREFERENCE_MODEL") or model
    mesh_cfg = _macro("MESH") or partitioning.MeshConfig()
    if policy_cfg is None or pm_cfg is None:
      raise ConfigError("No model bound: include a gin_configs/models/*.gin "
                        "file (MODEL) or bind POLICY_MODEL/PREFERENCE_MODEL.")
    rows = []

    def record(report):
      row = dict(report.as_dict(), policy_d_model=policy_cfg.d_model,
                 pm_d_model=pm_cfg.d_model, remat=policy_cfg.remat_policy,
                 optimizer=trainer.TrainConfig().optimizer.name,
                 batch_size=flags.batch_size,
                 input_length=flags.input_length,
                 target_length=flags.target_length,
                 mesh=dict(zip(partitioning.MESH_AXES,
                               mesh_cfg.resolve(report.num_devices))))
      rows.append(row)
      if flags.json:
        with open(flags.json, "a", encoding="utf-8") as f:
          f.write(json.dumps(row) + "\n")

    compile_programs(
        flags.topology, policy_cfg, pm_cfg, mesh_cfg,
        Shapes(flags.batch_size, flags.input_length, flags.target_length),
        [p for p in flags.programs.split(",") if p], on_report=record)
  return rows


if __name__ == "__main__":
  main()
