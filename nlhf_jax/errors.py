"""Exception types shared across the package, and the config validators.

Config dataclasses validate in `__post_init__` with the `check_*` functions
below, so every bad value is reported the same way: a `ConfigError` whose
message reads "<Class>.<field> must be <requirement>, got <value>." (path
checks: "<Class>.<field> '<path>' does not exist (...)."). `owner` is the
class name or the instance itself (its class name is used, so a subclass
reports its own name).

Entry points report `ConfigError` and `DataError` with `nlhf_jax.cli`.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Iterable, Sequence


class ConfigError(ValueError):
  """A configuration problem (bad value, missing file, impossible mesh).

  Config dataclasses raise it from `__post_init__`, so under gin it surfaces
  while the entry point builds its arguments, before any compute; the entry
  point reports it with exit code 2.
  """


class DataError(ValueError):
  """User data that cannot be used (e.g. a malformed line or row).

  Entry points report it like a `ConfigError`: one line, exit code 2.
  """


def _owner_name(owner: Any) -> str:
  return owner if isinstance(owner, str) else type(owner).__name__


def _is_exempt(value: Any, also: Sequence[Any]) -> bool:
  """Whether `value` is one of the extra allowed values (e.g. None, -1)."""
  return any(value is a or (not isinstance(value, bool) and a is not None
                            and value == a) for a in also)


def _alternatives(also: Sequence[Any]) -> str:
  return "".join(f" or {a!r}" for a in also)


def _fail(owner: Any, name: str, requirement: str, value: Any, hint: str,
          also: Sequence[Any] = ()) -> ConfigError:
  hint = f" ({hint})" if hint else ""
  return ConfigError(f"{_owner_name(owner)}.{name} must be {requirement}"
                     f"{_alternatives(also)}{hint}, got {value!r}.")


def _is_number(value: Any, integer: bool) -> bool:
  if isinstance(value, bool):
    return False
  return isinstance(value, numbers.Integral if integer else numbers.Real)


def check_at_least(owner: Any, name: str, value: Any, minimum: float, *,
                   integer: bool = False, also: Sequence[Any] = (),
                   hint: str = "") -> None:
  """ConfigError unless `value >= minimum` (an int when `integer`).

  `also` lists extra allowed values (e.g. `None` or a sentinel -1). NaN
  and non-numbers (e.g. a quoted gin value) are rejected.
  """
  if _is_exempt(value, also):
    return
  if not (_is_number(value, integer) and value >= minimum):
    # "an int" only when that is what is wrong: "steps must be >= 1, got 0".
    kind = "an int " if integer and not _is_number(value, True) else ""
    raise _fail(owner, name, f"{kind}>= {minimum}", value, hint, also)


def check_positive(owner: Any, name: str, value: Any, *,
                   integer: bool = False, also: Sequence[Any] = (),
                   hint: str = "") -> None:
  """ConfigError unless `value > 0` (a positive int when `integer`)."""
  if _is_exempt(value, also):
    return
  if not (_is_number(value, integer) and value > 0):
    requirement = "a positive int" if integer else "> 0"
    raise _fail(owner, name, requirement, value, hint, also)


def check_non_negative(owner: Any, name: str, value: Any, *,
                       integer: bool = False, also: Sequence[Any] = (),
                       hint: str = "") -> None:
  """ConfigError unless `value >= 0` (an int when `integer`)."""
  check_at_least(owner, name, value, 0, integer=integer, also=also,
                 hint=hint)


def check_in_range(owner: Any, name: str, value: Any, low: float,
                   high: float, *, low_inclusive: bool = True,
                   high_inclusive: bool = True, also: Sequence[Any] = (),
                   hint: str = "") -> None:
  """ConfigError unless `value` lies in the interval from `low` to `high`.

  The interval is closed by default; e.g. `high_inclusive=False` is
  [low, high).
  """
  if _is_exempt(value, also):
    return
  ok = _is_number(value, integer=False) and (
      (low <= value if low_inclusive else low < value) and
      (value <= high if high_inclusive else value < high))
  if not ok:
    interval = (f"{'[' if low_inclusive else '('}{low:g}, {high:g}"
                f"{']' if high_inclusive else ')'}")
    raise _fail(owner, name, f"in {interval}", value, hint, also)


def check_choice(owner: Any, name: str, value: Any, choices: Iterable[Any],
                 *, hint: str = "") -> None:
  """ConfigError unless `value` is one of `choices`."""
  choices = tuple(choices)
  if not any(value == c and type(value) is type(c) for c in choices):
    raise _fail(owner, name, f"one of {choices}", value, hint)


_PATH_KINDS = {"any": (os.path.exists, "does not exist"),
               "dir": (os.path.isdir, "is not a directory"),
               "file": (os.path.isfile, "is not a file")}


def check_path_exists(owner: Any, name: str, path: Any, *, kind: str = "any",
                      hint: str = "", exists=None) -> None:
  """ConfigError unless `path` is a string naming an existing path.

  Args:
    kind: 'any', 'dir' (a directory) or 'file' (a regular file).
    hint: what the path should be or how to make it, e.g. the gin macro.
    exists: test to use instead of the local file system's (e.g. an
      `epath` test for remote storage); only with kind 'any'.
  """
  test, problem = _PATH_KINDS[kind]
  if exists is not None:
    test = exists
  if not isinstance(path, (str, os.PathLike)) or not str(path):
    raise _fail(owner, name, "a path string", path, hint)
  if not test(path):
    hint = f" ({hint})" if hint else ""
    raise ConfigError(f"{_owner_name(owner)}.{name} {str(path)!r} {problem}"
                      f"{hint}.")
