"""Test fixtures that the library's entry points can load (e.g. from gin)."""
