"""A learnable toy task in the SFT feature layout, for trainer tests.

`ToySeq2SeqSource` is a `DataSource` of random token sequences with a
deterministic target (a copy / reverse task), for tests and smoke runs that
need batches but no files. Gin files load it with
`from nlhf_jax.testing import toy_data` and `@toy_data.ToySeq2SeqSource()`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nlhf_jax.data import iterators as di

# A complete tiny SFT configuration on this task (with runs/sft.gin and a
# mesh file): the process and fault tests and docs/fault_table.py run it.
TOY_SFT_GIN = """
from __gin__ import dynamic_registration
from nlhf_jax.jobs import supervised
from nlhf_jax.models import t5
from nlhf_jax.testing import toy_data

MODEL = @t5.T5Config()
t5.T5Config:
  vocab_size = 64
  d_model = 16
  num_heads = 2
  d_kv = 8
  d_ff = 32
  num_encoder_layers = 1
  num_decoder_layers = 1
supervised.sft_job.data = @toy_data.ToySeq2SeqSource()
toy_data.ToySeq2SeqSource:
  num_examples = 128
  num_eval_examples = 16
  vocab_size = 64
"""


def toy_sft_command(python: str, gin_file: str, workdir: str, *, steps: int,
                    every: int = 10, extra: tuple[str, ...] = ()) -> list[str]:
  """The entry-point command of the toy SFT run on the cpu8 mesh.

  Args:
    python: the interpreter.
    gin_file: a file holding TOY_SFT_GIN.
    workdir: the run's WORKDIR.
    steps: TRAIN_STEPS.
    every: CHECKPOINT_EVERY.
    extra: more flags (e.g. `--gin.NAME=VALUE`).
  """
  return [python, "-m", "nlhf_jax.main",
          "--gin_file=gin_configs/runs/sft.gin", f"--gin_file={gin_file}",
          "--gin_file=gin_configs/mesh/cpu8.gin",
          f"--gin.WORKDIR='{workdir}'", f"--gin.TRAIN_STEPS={steps}",
          "--gin.BATCH_SIZE=8", f"--gin.CHECKPOINT_EVERY={every}",
          "--gin.KEEP_CHECKPOINTS=10", "--gin.LOG_EVERY=5",
          "--gin.EVAL_EVERY=0", "--gin.LEARNING_RATE=0.01", *extra]


@dataclasses.dataclass(frozen=True)
class ToySeq2SeqSource(di.InMemorySplits):
  """Random token sequences with a deterministic target: a learnable toy task.

  Inputs are `input_length - 1` random ids in [3, vocab_size); the target is
  the first `target_length - 1` input tokens, reversed when `reverse`.
  Train and eval rows come from disjoint seeds.
  """

  num_examples: int = 256
  num_eval_examples: int = 64
  input_length: int = 16
  target_length: int = 8
  vocab_size: int = 64
  reverse: bool = True
  seed: int = 0

  eval_split = "eval"

  def __post_init__(self):
    if self.vocab_size < 4:
      raise ValueError(f"ToySeq2SeqSource.vocab_size must be >= 4, got "
                       f"{self.vocab_size}.")
    if self.target_length > self.input_length:
      raise ValueError("ToySeq2SeqSource.target_length must be <= "
                       "input_length.")

  def arrays(self, split: str) -> di.Batch:
    """The whole split as SFT features ('train' or 'eval')."""
    n = self.num_examples if split == "train" else self.num_eval_examples
    rng = np.random.default_rng([self.seed, 0 if split == "train" else 1])
    tokens = rng.integers(3, self.vocab_size, (n, self.input_length - 1))
    targets = tokens[:, :self.target_length - 1]
    if self.reverse:
      targets = targets[:, ::-1]
    return di.seq2seq_features(
        di.pad_token_rows(tokens, self.input_length),
        di.pad_token_rows(targets, self.target_length))

  def encode(self, text: str) -> list[int]:
    """Maps characters to ids in [3, vocab_size) (for layout markers)."""
    return [3 + ord(c) % (self.vocab_size - 3) for c in text]
