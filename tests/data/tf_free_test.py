"""The TensorFlow-free data modules stay free of TensorFlow.

`nlhf_jax.data` itself, the iterators, the JSONL sources, the file parser
and the vocabulary tools must import without TensorFlow (TFDS and seqio are
imported only by `tldr_builders`, `tasks`, `preprocessors`,
`feature_converters` and `seqio_source`, or inside the functions that need
them). Checked in a fresh interpreter: other tests of this pytest process
may have imported TensorFlow already.
"""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TF_FREE = ("nlhf_jax.data", "nlhf_jax.data.iterators",
           "nlhf_jax.data.jsonl_sources", "nlhf_jax.data.tldr_files",
           "nlhf_jax.data.vocab", "nlhf_jax.tokens",
           "nlhf_jax.testing.toy_data")


@pytest.mark.parametrize("module", TF_FREE)
def test_module_imports_no_tensorflow(module):
  code = (f"import sys, {module}\n"
          "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', "
          "'seqio') if m in sys.modules))\n")
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep
             + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True, env=env, cwd=REPO)
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
