r"""Gin-driven entry point.

  python -m nlhf_jax.main --gin_file=gin_configs/runs/describe.gin \
      --gin_file=gin_configs/models/small.gin \
      --gin_file=gin_configs/mesh/data_parallel.gin

Flags:
  --gin_file=PATH         a gin file (repeatable; later files win). Paths are
                          relative to the working directory or the repo root.
  --gin.NAME=VALUE        one binding, e.g. --gin.TRAIN_STEPS=100 or
                          --gin.WORKDIR=\"/tmp/run\" (strings need quotes).
  --coordinator_address, --num_processes, --process_id
                          multi-process runs (else from NLHF_* variables or
                          the TPU/SLURM environment; see partitioning.py).
  --platform=cpu|gpu|tpu  force a JAX platform (useful with libtpu installed).

The gin files bind `nlhf_jax.main.run.job`, the function to run (e.g.
`@model_info.describe`), and that function's arguments. Every configuration
error (missing file or directory, unknown binding, unset macro, unparsable
or out-of-range value, mesh or batch that does not fit the devices) stops
the program before any compute with exit code 2 and one line naming the
file or binding. `run_config(gin_files, bindings)` is the same as a library
call: it raises `ConfigError` instead of exiting.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence

import gin

from nlhf_jax import cli
from nlhf_jax.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(job: Callable[[], Any] = gin.REQUIRED,
        workdir: Optional[str] = None) -> Any:
  """Runs the configured job and records the operative gin config.

  Args:
    job: the function to call (its own arguments are gin-bound).
    workdir: where `config.gin` (the operative configuration) is written.
  """
  result = job()
  if workdir:
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "config.gin"), "w",
                encoding="utf-8") as f:
        f.write(gin.operative_config_str())
  return result


def split_gin_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Separates `--gin.NAME=VALUE` flags (as bindings) from the other flags."""
  bindings, rest = [], []
  for arg in argv:
    if arg.startswith("--gin."):
      name, sep, value = arg[len("--gin."):].partition("=")
      if not sep or not name:
        raise ConfigError(f"Flag {arg!r} must look like --gin.NAME=VALUE.")
      bindings.append(f"{name} = {value}")
    else:
      rest.append(arg)
  return bindings, rest


def resolve_gin_file(path: str) -> str:
  """Finds a gin file relative to the working directory or the repo root."""
  for candidate in (path, os.path.join(REPO_ROOT, path)):
    if os.path.isfile(candidate):
      return candidate
  raise ConfigError(
      f"Gin file {path!r} not found (looked in {os.getcwd()!r} and "
      f"{REPO_ROOT!r}).")


def parse_config(gin_files: Sequence[str], bindings: Sequence[str]) -> None:
  """Parses gin files then bindings; errors name the file or binding."""
  gin.clear_config()
  gin.add_config_file_search_path(REPO_ROOT)
  for path in gin_files:
    resolved = resolve_gin_file(path)
    try:
      gin.parse_config_file(resolved)
    except Exception as e:  # gin raises several types; all are config errors.
      raise ConfigError(f"In gin file {path!r}: {e}") from e
  for binding in bindings:
    try:
      gin.parse_config(binding)
    except Exception as e:
      hint = ""
      if isinstance(e, SyntaxError):
        hint = " (string values need quotes: --gin.NAME=\\\"value\\\")"
      raise ConfigError(f"In binding {binding!r}: {e}{hint}") from e


_UNBOUND = "No values supplied by Gin or caller for arguments"
_SCOPE = re.compile(r"in scope '([^']+)'")


def _unbound_gin_argument(error: Exception) -> Optional[ConfigError]:
  """A ConfigError for gin's "argument has no value" error, else None.

  gin reports an unset macro (e.g. MODEL when no model file is included)
  or an unbound required argument as a TypeError from the configurable's
  call; only errors carrying gin's own wording are converted, so a
  TypeError from inside a job keeps its traceback.
  """
  text = str(error)
  if not isinstance(error, TypeError) or _UNBOUND not in text:
    return None
  missing = re.search(re.escape(_UNBOUND) + r": (\[[^\]]*\])", text)
  scopes = _SCOPE.findall(text)
  where = (f"macro {scopes[0]} is not set (bind it, e.g. include a "
           "gin_configs/models/*.gin file or pass --gin.NAME=VALUE)"
           if scopes and "'macro'" in text else
           f"no value for {missing.group(1) if missing else 'an argument'}")
  return ConfigError(where + ".")


def _one_line(error: Exception) -> str:
  """The error's own message, without the call chain gin appends to it.

  The innermost gin scope of that chain (e.g. `t5_tiny` for a size file's
  T5Config) is kept, since it says which binding to fix.
  """
  message, _, chain = str(error).partition("\n  In call to configurable")
  scopes = _SCOPE.findall(chain)
  suffix = f" (gin scope {scopes[0]})" if scopes else ""
  return message.strip() + suffix


def run_config(gin_files: Sequence[str], bindings: Sequence[str]) -> Any:
  """Parses gin files and bindings, then runs the bound `run` (library call).

  Raises:
    ConfigError: any configuration problem found before compute (missing
      file, bad binding, unset macro, out-of-range value, mesh mismatch).
  """
  parse_config(gin_files, bindings)
  return _run_parsed()


def _run_parsed() -> Any:
  """Calls the `run` bound by the parsed gin config (see `run_config`)."""
  # Under `python -m` this file is `__main__`; gin files bind the copy
  # imported as `nlhf_jax.main`.
  from nlhf_jax import main as main_lib  # pylint: disable=g-import-not-at-top,import-self
  try:
    return gin.get_configurable(main_lib.run)()
  except TypeError as e:
    config_error = _unbound_gin_argument(e)
    if config_error is None:
      raise
    raise config_error from e


def _flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.main", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin_bindings", action="append", default=[])
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)
  parser.add_argument("--platform", default=None,
                      choices=("cpu", "gpu", "cuda", "tpu"))
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Any:
  """Parses flags and gin, initialises multi-process JAX, runs the job.

  A ConfigError (or DataError) is printed as one line and exits with 2
  (`nlhf_jax.cli`): while parsing, while gin builds the bound arguments
  (config dataclasses validate in __post_init__) or while a job checks
  mesh, batch and vocabulary, all before compute.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  with cli.exit_on_config_error(describe=_one_line):
    bindings, rest = split_gin_args(argv)
    flags = _flags(rest)
    gin_files = [f for arg in flags.gin_file for f in arg.split(",") if f]
    if not gin_files:
      raise ConfigError("No --gin_file given.")
    parse_config(gin_files, list(flags.gin_bindings) + bindings)

    if flags.platform:
      os.environ["JAX_PLATFORMS"] = flags.platform
    from nlhf_jax import partitioning  # pylint: disable=g-import-not-at-top
    partitioning.initialize_distributed(
        flags.coordinator_address, flags.num_processes, flags.process_id)
    return _run_parsed()  # The config was parsed above, before JAX started.

if __name__ == "__main__":
  main()
