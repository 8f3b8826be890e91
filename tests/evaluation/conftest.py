"""Fixtures for the evaluation tests: a small synthetic TL;DR world.

`synthetic_world` generates real posts with `nlhf_jax.data.synthetic` and
one summary per post from each of the world's five summary policies
(`synthetic_text.POLICIES`), drawn with generators independent of the
posts' own reference TL;DRs. Pure Python/numpy (no TensorFlow).
"""

import dataclasses

import numpy as np
import pytest

from nlhf_jax.data import annotators
from nlhf_jax.data import synthetic
from nlhf_jax.data import synthetic_text as st


@dataclasses.dataclass(frozen=True)
class World:
  prompts: list[str]
  references: list[str]
  summaries: dict[str, list[str]]


def make_world(num_posts: int, seed: int = 0) -> World:
  """`num_posts` canonical prompts, their reference TL;DRs, policy samples."""
  taken = set()
  posts = [synthetic.make_post(seed, i, taken) for i in range(num_posts)]
  prompts = [annotators.canonical_prompt(p.situation.subreddit, p.title,
                                         p.post) for p in posts]
  summaries = {}
  for j, policy in enumerate(st.POLICIES):
    summaries[policy] = [
        st.write_summary(np.random.default_rng([seed, 100 + j, i]),
                         p.situation, policy, post=p.post)
        for i, p in enumerate(posts)]
  return World(prompts, [p.summary for p in posts], summaries)


@pytest.fixture(scope="session")
def synthetic_world() -> World:
  return make_world(48)
