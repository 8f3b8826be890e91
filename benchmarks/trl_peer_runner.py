"""The peer baseline: training-step throughput of TRL's NashMDTrainer.

This script runs under the peer's own Python environment (torch + TRL; see
`benchmarks/peer_requirements.txt`), not under the library's: it imports
neither `nlhf_jax` nor JAX, only the standard library, torch, transformers,
tokenizers, datasets and TRL. `benchmarks/peer_nash_md.py` starts it in a
subprocess and reads the JSON line it prints.

  $NLHF_PEER_PYTHON benchmarks/trl_peer_runner.py --d_model 256 --layers 4 \
      --heads 4 --vocab 32128 --prompt_len 64 --new_tokens 32 --batch 8 \
      --steps 6

Everything is built locally from random weights, so nothing is downloaded:

* a word-level tokenizer whose words are `w3 ... w{vocab-1}` after the
  special tokens `<pad>` (0), `</s>` (1) and `<unk>` (2), padding on the left;
* a GPT-2 policy, its reference (an exact copy of the policy's initial
  weights) and a GPT-2 sequence-classification reward model with one label,
  all of the same width and depth;
* `batch * (steps + 1)` prompts of `prompt_len` random words.

TRL 1.12.0 is the last release that ships NashMDTrainer (in
`trl.experimental.nash_md`). One trainer step generates a response from the
policy and one from the token-level geometric mixture of policy and
reference (mixture coefficient `--beta_mixture`), scores both with the
reward model, computes log-probabilities under policy and reference, and
takes one AdamW step (learning rate 3e-5, KL coefficient 0.008). Generation
is forced to produce exactly `new_tokens` tokens (no early EOS) so every step
does the same work.

A TrainerCallback times each step from `on_step_begin` to `on_step_end`. The
first step is an untimed warm-up; the reported step time is the upper median
(`statistics.median_high`) of the remaining `--steps` steps.

Prints one JSON line with the fields `impl`, `params_policy`, `batch`,
`prompt_len`, `new_tokens`, `median_step_s`, `samples_per_s`,
`generated_tokens_per_s` (two responses per prompt), `threads`, `step_s`
(every timed step) and `versions`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from typing import Any, Optional, Sequence

# Set before TRL / transformers are imported: no network, no notice that the
# experimental trainer may change.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
import tokenizers  # pylint: disable=g-import-not-at-top,wrong-import-position
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
import transformers  # pylint: disable=g-import-not-at-top,wrong-import-position
import trl  # pylint: disable=g-import-not-at-top,wrong-import-position
from trl.experimental import nash_md  # pylint: disable=g-import-not-at-top,wrong-import-position

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
PAD_ID, EOS_ID = 0, 1
KL_BETA = 0.008
LEARNING_RATE = 3e-5


def make_tokenizer(vocab_size: int) -> transformers.PreTrainedTokenizerFast:
  """A whitespace word-level tokenizer over `vocab_size` synthetic words.

  Args:
    vocab_size: total vocabulary, special tokens included.

  Returns:
    A fast tokenizer padding on the left (as generation needs).
  """
  if vocab_size <= len(SPECIAL_TOKENS):
    raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got "
                     f"{vocab_size}.")
  vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
  vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
  model = tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>")
  backend = tokenizers.Tokenizer(model)
  backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
      unk_token="<unk>", padding_side="left")


def make_models(
    vocab_size: int, d_model: int, layers: int, heads: int,
    max_positions: int
) -> tuple[transformers.GPT2LMHeadModel, transformers.GPT2LMHeadModel,
           transformers.GPT2ForSequenceClassification]:
  """Random-weight policy, reference (a copy of it) and reward model."""
  config = transformers.GPT2Config(
      vocab_size=vocab_size, n_positions=max_positions, n_embd=d_model,
      n_layer=layers, n_head=heads, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
      bos_token_id=EOS_ID)
  policy = transformers.GPT2LMHeadModel(config)
  reference = transformers.GPT2LMHeadModel(config)
  reference.load_state_dict(policy.state_dict())
  reward_config = transformers.GPT2Config(**config.to_dict())
  reward_config.num_labels = 1
  reward = transformers.GPT2ForSequenceClassification(reward_config)
  return policy, reference, reward


def random_prompts(count: int, length: int, vocab_size: int,
                   seed: int = 0) -> list[str]:
  """`count` prompts of `length` words drawn uniformly from the vocabulary."""
  generator = torch.Generator().manual_seed(seed)
  ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, (count, length),
                      generator=generator)
  return [" ".join(f"w{int(i)}" for i in row) for row in ids]


class StepTimer(transformers.TrainerCallback):
  """Records the wall time of every trainer step."""

  def __init__(self) -> None:
    super().__init__()
    self.step_s: list[float] = []
    self._start = 0.0

  def on_step_begin(self, args, state, control, **kwargs) -> None:
    del args, state, control, kwargs
    self._start = time.perf_counter()

  def on_step_end(self, args, state, control, **kwargs) -> None:
    del args, state, control, kwargs
    self.step_s.append(time.perf_counter() - self._start)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=32128)
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--new_tokens", type=int, default=32)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=6,
                      help="timed steps (one untimed warm-up step is added)")
  parser.add_argument("--beta_mixture", type=float, default=0.125,
                      help="mixture coefficient of policy and reference")
  parser.add_argument("--threads", type=int, default=0,
                      help="torch intra-op threads (0: torch's default)")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error(f"--steps must be >= 1, got {args.steps}.")
  return args


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Builds the models and trainer, trains `steps + 1` steps, times them."""
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  tokenizer = make_tokenizer(args.vocab)
  total_len = args.prompt_len + args.new_tokens
  policy, reference, reward = make_models(
      args.vocab, args.d_model, args.layers, args.heads,
      max_positions=max(1024, 4 * total_len))
  train_set = datasets.Dataset.from_dict({"prompt": random_prompts(
      args.batch * (args.steps + 1), args.prompt_len, args.vocab)})
  config = nash_md.NashMDConfig(
      output_dir=tempfile.mkdtemp(prefix="nlhf_trl_peer_"),
      per_device_train_batch_size=args.batch, max_steps=args.steps + 1,
      max_new_tokens=args.new_tokens, max_length=total_len,
      mixture_coef=args.beta_mixture, beta=KL_BETA,
      learning_rate=LEARNING_RATE, temperature=1.0, missing_eos_penalty=None,
      use_cpu=True, bf16=False, gradient_checkpointing=False,
      dataloader_num_workers=0, logging_steps=1000, save_strategy="no",
      report_to=[], seed=0)
  trainer = nash_md.NashMDTrainer(
      model=policy, ref_model=reference, reward_funcs=reward, args=config,
      train_dataset=train_set, processing_class=tokenizer)
  # No early EOS: every response is exactly new_tokens long.
  trainer.generation_config.min_new_tokens = args.new_tokens
  timer = StepTimer()
  trainer.add_callback(timer)
  trainer.train()
  timed = timer.step_s[1:]
  if not timed:
    raise RuntimeError(f"No timed step recorded ({len(timer.step_s)} in all).")
  step_s = statistics.median_high(timed)
  return {
      "impl": f"trl-{trl.__version__}-NashMDTrainer",
      "params_policy": sum(p.numel() for p in policy.parameters()),
      "batch": args.batch,
      "prompt_len": args.prompt_len,
      "new_tokens": args.new_tokens,
      "median_step_s": step_s,
      "samples_per_s": args.batch / step_s,
      "generated_tokens_per_s": 2 * args.batch * args.new_tokens / step_s,
      "threads": torch.get_num_threads(),
      "step_s": [round(t, 6) for t in timed],
      "versions": {"torch": torch.__version__, "trl": trl.__version__,
                   "transformers": transformers.__version__},
  }


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Prints the peer's JSON record as the last line of stdout."""
  print(json.dumps(run(_parse(argv))), flush=True)


if __name__ == "__main__":
  main()
