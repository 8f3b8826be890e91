"""The config-error contract: validators, gin-bound dataclasses, the CLI line.

The dataclasses checked are the ones the files under gin_configs/ bind
(found by reading them, so a newly bound dataclass is checked too): each is
built with a bad value for every numeric or string field and must raise a
ConfigError naming `<Class>.<field>`.
"""

import dataclasses
import importlib
import math
import os
import re
import types
import typing

import pytest

from nlhf_jax import cli
from nlhf_jax import errors
from nlhf_jax import main as main_lib
from nlhf_jax.finite_world import population
from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import examples
from nlhf_jax.models import preference
from nlhf_jax.models import t5

GIN_ROOT = os.path.join(main_lib.REPO_ROOT, "gin_configs")
GIN_FILES = sorted(os.path.join(d, f) for d, _, files in os.walk(GIN_ROOT)
                   for f in files if f.endswith(".gin"))

# --- Which dataclasses the gin files bind ----------------------------------

_IMPORT = re.compile(r"^from\s+([\w.]+)\s+import\s+(\w+)(?:\s+as\s+(\w+))?$"
                     r"|^import\s+([\w.]+)(?:\s+as\s+(\w+))?$")
_REFERENCE = re.compile(r"@(?:[\w.]+/)*([\w.]+)")      # @scope/alias.Name()
_SELECTOR = re.compile(r"^(?:[\w.]+/)*([\w.]+)\s*(=|:$)")  # alias.Name.arg =


def _configurables(path):
  """(dotted name as written, resolved object) of each configurable named.

  Raises AssertionError for a configurable whose module the file does not
  import (the files use dynamic registration: `from MODULE import ALIAS`).
  """
  aliases, names = {}, set()
  with open(path, encoding="utf-8") as f:
    lines = [l.split("#")[0].rstrip() for l in f]
  for line in lines:
    found = _IMPORT.match(line.strip())
    if found:
      package, name, alias, module, module_alias = found.groups()
      if module:
        aliases[module_alias or module.split(".")[0]] = (
            module if module_alias else module.split(".")[0])
      elif package != "__gin__":
        aliases[alias or name] = f"{package}.{name}"
      continue
    names.update(_REFERENCE.findall(line))
    selector = _SELECTOR.match(line)  # Top-level binding or block header.
    if selector and "." in selector.group(1):
      dotted = selector.group(1)
      # `alias.Name.arg = v` binds an argument; `alias.Name:` opens a block.
      names.add(dotted.rsplit(".", 1)[0] if selector.group(2) == "="
                else dotted)
  resolved = []
  for dotted in sorted(names):
    alias, *attributes = dotted.split(".")
    assert alias in aliases, (f"{path}: {dotted!r} names no imported module "
                              f"(imports: {sorted(aliases)})")
    obj = importlib.import_module(aliases[alias])
    for attribute in attributes:
      obj = getattr(obj, attribute)
    resolved.append((dotted, obj))
  return resolved


def _gin_dataclasses():
  found = {}
  for path in GIN_FILES:
    for _, obj in _configurables(path):
      if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        found[f"{obj.__module__}.{obj.__qualname__}"] = obj
  return [found[k] for k in sorted(found)]


GIN_DATACLASSES = _gin_dataclasses()

# --- What a bad value is -----------------------------------------------------

# By field type (Optional[X] counts as X). Every int field of these configs
# is a count, size or id, and every float a rate, scale or temperature, so
# negatives are invalid; NaN slips through `x < 0` tests, so it is tried
# too. A str field is a choice, a path or a dtype name. Other types (bool,
# tuples of prefixes, nested configs) accept every value of their type.
BAD_BY_TYPE = {
    int: (-1,),
    float: (-1.0, math.nan),
    str: ("not_a_choice",),
}
# Fields whose range ends at 1 (probabilities, mixture and decay rates).
UNIT_INTERVAL = {"NashMDConfig.beta", "NashEMAConfig.decay",
                 "T5Config.dropout_rate", "OptimizerConfig.b1",
                 "OptimizerConfig.b2", "ResponseConfig.top_p"}
# Fields that document a value the type table would call bad, and what is
# bad for them instead. (Keys name the class that declares the field.)
BAD_OVERRIDES = {
    # -1: "the devices left".
    "MeshConfig.data": (-2, 0), "MeshConfig.fsdp": (-2, 0),
    "MeshConfig.model": (-2, 0),
    # TFDS directories may be remote and the vocabulary may be "byte", so
    # only a missing value is detectable before reading.
    "_SeqioSource.data_dir": ("",), "_SeqioSource.vocabulary": ("",),
    # A judge's function must be callable.
    "_OfFunction.fn": ("not_callable",),
}
# Fields for which any value of their type is valid.
ANY_VALUE = {
    "TrainConfig.seed",  # Any int seeds the run.
    # Free text placed before the summaries.
    "LayoutConfig.first_marker", "LayoutConfig.second_marker",
    "RewardLayoutConfig.marker",
    # Labels in error messages.
    "_OfFunction.name",
}


def _declaring_class(cls, name):
  return next(c for c in cls.__mro__
              if name in c.__dict__.get("__annotations__", {}))


def _key(cls, name):
  return f"{_declaring_class(cls, name).__name__}.{name}"


def _base_type(annotation):
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  if typing.get_origin(annotation) in (typing.Union, types.UnionType) and (
      len(args) == 1):
    return args[0]
  return annotation


def _bad_values(cls, field, hints):
  key = _key(cls, field.name)
  if key in ANY_VALUE:
    return ()
  if key in BAD_OVERRIDES:
    return BAD_OVERRIDES[key]
  bad = BAD_BY_TYPE.get(_base_type(hints[field.name]), ())
  return bad + ((1.5,) if key in UNIT_INTERVAL else ())


def _cases():
  for cls in GIN_DATACLASSES:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
      for bad in _bad_values(cls, field, hints):
        yield pytest.param(cls, field.name, bad,
                           id=f"{cls.__name__}.{field.name}={bad!r}")


CASES = list(_cases())


@pytest.fixture(name="valid")
def fixture_valid(tmp_path):
  """cls -> keyword arguments that build it (required fields and paths)."""
  vocabulary = tmp_path / "sp.model"
  vocabulary.write_text("")
  paths = {
      "_TldrFiles.data_dir": str(tmp_path),
      "_TldrFiles.vocabulary": str(vocabulary),
      "_SeqioSource.data_dir": str(tmp_path),
      "_SeqioSource.vocabulary": "byte",
      "LearnedJudge.checkpoint": str(tmp_path),
      "LearnedJudge.model": t5.T5Config(),
      "LearnedJudge.layout": preference.LayoutConfig(),
      "_OfFunction.fn": examples.prefer_shorter,
      "FiniteWorldSource.world": population.ready_world("iia"),
      "FiniteWorldComparisons.world": population.ready_world("iia"),
  }

  def kwargs(cls):
    return {f.name: paths[_key(cls, f.name)] for f in dataclasses.fields(cls)
            if _key(cls, f.name) in paths}

  return kwargs


def test_the_gin_files_bind_the_known_configs():
  names = {cls.__name__ for cls in GIN_DATACLASSES}
  assert names >= {"T5Config", "MeshConfig", "TrainConfig", "OptimizerConfig",
                   "CheckpointConfig", "InitConfig", "SftJsonlSource",
                   "PreferenceJsonlSource", "SeqioSftSource", "NashMDConfig",
                   "NashEMAConfig", "RLHFConfig", "OnlineIPOConfig",
                   "ResponseConfig", "LayoutConfig", "RewardLayoutConfig",
                   "LearnedJudge", "SyntheticPStar", "HostJudge",
                   "JaxJudge"}, names


def test_the_tables_name_existing_fields():
  keys = {_key(cls, f.name) for cls in GIN_DATACLASSES
          for f in dataclasses.fields(cls)}
  stale = (ANY_VALUE | UNIT_INTERVAL | set(BAD_OVERRIDES)) - keys
  assert not stale, f"table entries for fields no gin file binds: {stale}"


@pytest.mark.parametrize("cls", GIN_DATACLASSES, ids=lambda c: c.__name__)
def test_gin_dataclass_builds_with_valid_values_and_checks_a_field(cls,
                                                                   valid):
  cls(**valid(cls))
  assert any(c.values[0] is cls for c in CASES), (
      f"{cls.__name__} has no field to validate; add its fields to the "
      "tables above")


@pytest.mark.parametrize("cls,name,bad", CASES)
def test_gin_dataclass_rejects_bad_value(cls, name, bad, valid):
  with pytest.raises(ConfigError) as error:
    cls(**dict(valid(cls), **{name: bad}))
  assert f"{cls.__name__}.{name}" in str(error.value)


# --- The validators -----------------------------------------------------------


@pytest.mark.parametrize("check,args,message", [
    (errors.check_positive, (0,), "C.f must be > 0, got 0."),
    (errors.check_positive, (1.5,), None),
    (errors.check_non_negative, (-1,), "C.f must be >= 0, got -1."),
    (errors.check_non_negative, (math.nan,), "C.f must be >= 0, got nan."),
    (errors.check_non_negative, ("3",), "C.f must be >= 0, got '3'."),
    (errors.check_at_least, (1, 2), "C.f must be >= 2, got 1."),
    (errors.check_choice, ("c", ("a", "b")),
     "C.f must be one of ('a', 'b'), got 'c'."),
    (errors.check_choice, (1, (True,)), "C.f must be one of (True,), got 1."),
    (errors.check_in_range, (1.0, 0, 1), None),
    (errors.check_in_range, (-0.5, 0, 1), "C.f must be in [0, 1], got -0.5."),
])
def test_validator_messages(check, args, message):
  if message is None:
    check("C", "f", *args)
  else:
    with pytest.raises(ConfigError) as error:
      check("C", "f", *args)
    assert str(error.value) == message


def test_validator_options():
  errors.check_positive("C", "f", None, integer=True, also=(None,))
  errors.check_positive("C", "f", -1, integer=True, also=(-1,))
  with pytest.raises(ConfigError, match=r"^C.f must be a positive int or -1 "
                     r"\(-1: all\), got 2.5\.$"):
    errors.check_positive("C", "f", 2.5, integer=True, also=(-1,),
                          hint="-1: all")
  with pytest.raises(ConfigError, match="must be an int >= 1, got True"):
    errors.check_at_least("C", "f", True, 1, integer=True)
  with pytest.raises(ConfigError, match=r"must be in \(0, 1\), got 1"):
    errors.check_in_range("C", "f", 1, 0, 1, low_inclusive=False,
                          high_inclusive=False)

  class Owner:
    pass

  with pytest.raises(ConfigError, match="^Owner.f must be >= 0"):
    errors.check_non_negative(Owner(), "f", -1)


def test_path_checks(tmp_path):
  (tmp_path / "file").write_text("")
  errors.check_path_exists("C", "p", str(tmp_path), kind="dir")
  errors.check_path_exists("C", "p", str(tmp_path / "file"), kind="file")
  with pytest.raises(ConfigError, match=r"^C.p '.*nope' does not exist "
                     r"\(train it\)\.$"):
    errors.check_path_exists("C", "p", str(tmp_path / "nope"),
                             hint="train it")
  with pytest.raises(ConfigError, match="'.*file' is not a directory"):
    errors.check_path_exists("C", "p", str(tmp_path / "file"), kind="dir")
  with pytest.raises(ConfigError, match=r"C.p must be a path string \(gin "
                     r"macro X\), got None"):
    errors.check_path_exists("C", "p", None, hint="gin macro X")


# --- The CLI line -------------------------------------------------------------


@pytest.mark.parametrize("error,line", [
    (ConfigError("A.b must be >= 1,\n  got 0."),
     "Config error: A.b must be >= 1, got 0."),
    (errors.DataError("x.jsonl:3: not JSON."),
     "Data error: x.jsonl:3: not JSON."),
])
def test_exit_on_config_error_prints_one_line_and_exits_2(error, line, capsys):
  with pytest.raises(SystemExit) as exit_info:
    with cli.exit_on_config_error():
      raise error
  assert exit_info.value.code == cli.EXIT_CODE == 2
  assert capsys.readouterr().err == line + "\n"


def test_exit_on_config_error_passes_other_errors_and_results(capsys):
  with pytest.raises(KeyError):
    with cli.exit_on_config_error():
      raise KeyError("a bug keeps its traceback")
  with cli.exit_on_config_error():
    pass
  assert not capsys.readouterr().err
