"""The command-line contract shared by the entry points.

`nlhf_jax.main`, `nlhf_jax.sweep`, `nlhf_jax.demo`, `nlhf_jax.aot`,
`nlhf_jax.finite_worlds` and `nlhf_jax.evaluate` run
their work inside `exit_on_config_error()`: a `ConfigError` (bad setting,
missing file, impossible mesh) or a `DataError` (unusable user data) is
printed as one line on stderr,

  Config error: TrainConfig.steps must be >= 1, got 0.

with no traceback, and the program exits with status 2 (`EXIT_CODE`). So
does a full disk (`OSError` ENOSPC, e.g. during a checkpoint write: the
checkpoints before it are intact, and the same command resumes once there
is room). Any other exception keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from typing import Callable, Iterator

from nlhf_jax.errors import ConfigError
from nlhf_jax.errors import DataError

EXIT_CODE = 2
_PREFIXES = ((ConfigError, "Config error"), (DataError, "Data error"))


def one_line(error: Exception, describe: Callable[[Exception], str] = str
             ) -> str:
  """`Config error: <message>` (or `Data error: ...`) on a single line."""
  prefix = next(p for kind, p in _PREFIXES if isinstance(error, kind))
  message = " ".join(line.strip() for line in describe(error).splitlines())
  return f"{prefix}: {message.strip()}"


@contextlib.contextmanager
def exit_on_config_error(
    describe: Callable[[Exception], str] = str) -> Iterator[None]:
  """Reports a ConfigError or DataError raised inside and exits with 2.

  Args:
    describe: error -> message (e.g. one that drops gin's call chain);
      the message is joined onto one line.

  Raises:
    SystemExit: with code `EXIT_CODE`, after printing the line to stderr.
  """
  try:
    yield
  except (ConfigError, DataError) as e:
    print(one_line(e, describe), file=sys.stderr)
    raise SystemExit(EXIT_CODE) from None
  except OSError as e:
    # gin re-raises with an augmented message, which can drop `errno`.
    if e.errno != errno.ENOSPC and "No space left" not in str(e):
      raise
    print(f"Disk full: {str(e).splitlines()[0]}. Checkpoints written before "
          "this point are intact; free space (or move the workdir) and run "
          "the same command again to resume.", file=sys.stderr)
    raise SystemExit(EXIT_CODE) from None
