"""Exception types shared across the package."""


class ConfigError(ValueError):
  """A configuration problem (bad value, missing file, impossible mesh).

  Config dataclasses raise it from `__post_init__`, so under gin it surfaces
  while the entry point builds its arguments, before any compute; the entry
  point reports it with exit code 2.
  """
