"""SFT and preference-model train-step throughput and MFU.

  python -m benchmarks.train_step_benchmark --task sft
  python -m benchmarks.train_step_benchmark --task preference

Times the library's own steps, `nlhf_jax.algorithms.sft.make_train_step`
and `nlhf_jax.algorithms.preference_model.make_train_step`, jitted with the
state donated as the trainer does (one device, Adafactor, the project
default). `--optimizer` and `--lm_head_backward` select the backend-specific
variants (docs/cpu_speedups.md): compare e.g. `--optimizer adafactor` with
`--optimizer adafactor_fused`. One JSON line per command: examples/s, tokens/s, the step time
(median of `--repeats` steps after `--warmup` untimed ones; compilation is
done before), the analytic model FLOPs per step (formula in
`benchmarks/flops.py`) next to XLA's cost analysis of the compiled step,
and the MFU = model FLOP/s / measured matmul peak for the model's dtype
(`benchmarks/matmul_peak.py`). The peak is measured in the same process
right before and right after the timed steps and the larger of the two is
used, so a machine shared with other work cannot inflate the MFU.

The "small benchmark size" (`--size small`, the default) has T5 1.1
small's dimensions (d_model 512, 6 heads × 64, d_ff 1024, 8 + 8 layers,
vocab 32128; 76.9 M parameters with the LM head, 60.5 M as a scorer) in
float32, dropout 0:
  * SFT: batch 8, encoder 64 tokens, decoder 32 tokens;
  * preference model: batch 4 comparisons, prompt 64 tokens, responses of
    32 tokens, packed as [x; M1 y; M2 y'; EOS] (135 tokens) in both orders,
    i.e. 8 sequences through the scorer.
On the 2-core CPU an SFT step takes about 1-1.2 s and a preference-model
step about 1.4 s when the machine is otherwise idle. `--size tiny` is for
smoke tests. Batches are random tokens without padding, created once and
kept on the device: input pipelines are not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from benchmarks import common
from benchmarks import flops as flops_lib
from benchmarks import matmul_peak
from nlhf_jax import model_info
from nlhf_jax import optimizers
from nlhf_jax import train_state
from nlhf_jax.models import packing
from nlhf_jax.algorithms import preference_model as pm_lib
from nlhf_jax.models import preference
from nlhf_jax.algorithms import sft
from nlhf_jax.models import init as model_init
from nlhf_jax.models import t5

SMALL = t5.T5Config(vocab_size=32128, d_model=512, num_heads=6, d_kv=64,
                    d_ff=1024, num_encoder_layers=8, num_decoder_layers=8,
                    dropout_rate=0.0, dtype="float32")
TINY = t5.T5Config(vocab_size=256, d_model=32, num_heads=2, d_kv=16,
                   d_ff=64, num_encoder_layers=1, num_decoder_layers=1,
                   dropout_rate=0.0, dtype="float32")

# (batch, input length, target length) per task and size. Preference:
# comparisons, prompt length, length of each response.
SHAPES = {
    ("sft", "small"): (8, 64, 32),
    ("preference", "small"): (4, 64, 32),
    ("sft", "tiny"): (2, 16, 8),
    ("preference", "tiny"): (2, 8, 4),
}


@dataclasses.dataclass
class Bench:
  """A library train step `step(state, batch, rng)` and its fixed inputs."""
  step: Callable[..., Any]
  state: Any
  data: Any
  model_flops: float
  num_params: int
  tokens_per_step: int

  def compile(self) -> tuple[Callable[[], Any], Optional[float]]:
    """Jits (state donated) and compiles once.

    Returns:
      (run one step on the fixed batch, XLA's FLOP count or None).
    """
    rng = jax.random.PRNGKey(1)
    jitted = jax.jit(self.step, donate_argnums=0)
    compiled = jitted.lower(self.state, self.data, rng).compile()
    box = {"state": self.state}

    def run():
      box["state"], metrics = compiled(box["state"], self.data, rng)
      return metrics["loss"]

    return run, common.cost_flops(compiled)


def _random_tokens(key: jax.Array, shape: tuple[int, ...],
                   vocab: int) -> jax.Array:
  """Token ids in [2, vocab): no pad (0) and no EOS (1)."""
  return jax.random.randint(key, shape, 2, vocab, jnp.int32)


OPTIMIZERS = ("adafactor", "adafactor_fused", "optax_adafactor")


def _make_state(init_fn: Callable[[], Any],
                optimizer: str = "adafactor") -> train_state.TrainState:
  """Optimizer state from a jitted initialiser.

  'adafactor' (the portable default) and 'adafactor_fused' (its XLA:CPU
  variant) are `optimizers.make_optimizer` with that `OptimizerConfig.name`;
  'optax_adafactor' is `optax.adafactor` with the same settings, the
  baseline `nlhf_jax/adafactor.py` was measured against.
  """
  if optimizer == "optax_adafactor":
    config = optimizers.OptimizerConfig()
    tx = optax.adafactor(config.learning_rate,
                         decay_rate=config.adafactor_decay_rate)
  else:
    tx = optimizers.make_optimizer(
        optimizers.OptimizerConfig(name=optimizer), 1000)
  # One jitted program: eager initialisation compiles every op separately.
  return jax.jit(
      lambda: train_state.TrainState.create(nn.unbox(init_fn()), tx))()


def build_sft(config: t5.T5Config, batch: int, enc_len: int,
              dec_len: int, optimizer: str = "adafactor") -> Bench:
  """`sft.make_train_step` on a random batch in the SFT layout."""
  model = t5.T5(config)
  k_in, k_out = jax.random.split(jax.random.PRNGKey(0))
  targets = _random_tokens(k_out, (batch, dec_len), config.vocab_size)
  data = {"encoder_input_tokens": _random_tokens(
              k_in, (batch, enc_len), config.vocab_size),
          "decoder_input_tokens": t5.shift_right(targets),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": jnp.ones((batch, dec_len), jnp.float32)}
  return Bench(step=sft.make_train_step(model),
               state=_make_state(model_init.init_fn(model, 0), optimizer),
               data=data,
               model_flops=flops_lib.lm_train_flops(config, batch, enc_len,
                                                    dec_len),
               num_params=model_info.count_params(config),
               tokens_per_step=batch * (enc_len + dec_len))


def pair_layout(prompt_len: int, response_len: int) -> preference.PairLayout:
  """Packed [x; M1 y; M2 y'; EOS] layout with 3-token markers (as aot.py)."""
  markers = ((3, 4, 5), (3, 4, 6))
  length = prompt_len + packing.min_length([response_len] * 2, markers)
  return preference.PairLayout(length, *markers)


def build_preference(config: t5.T5Config, batch: int, prompt_len: int,
                     response_len: int, optimizer: str = "adafactor") -> Bench:
  """`preference_model.make_train_step`: both orders of each pair."""
  model = t5.T5Scorer(config)
  layout = pair_layout(prompt_len, response_len)
  k_x, k_a, k_b, k_l = jax.random.split(jax.random.PRNGKey(0), 4)
  v = config.vocab_size
  data = {"encoder_input_tokens": _random_tokens(k_x, (batch, prompt_len), v),
          "decoder_target_tokens_a": _random_tokens(
              k_a, (batch, response_len), v),
          "decoder_target_tokens_b": _random_tokens(
              k_b, (batch, response_len), v),
          "label": jax.random.bernoulli(k_l, 0.5, (batch,)).astype(
              jnp.int32)}
  # Both presentation orders: 2 * batch sequences of layout.length tokens.
  sequences = 2 * batch
  return Bench(step=pm_lib.make_train_step(model, layout),
               state=_make_state(model_init.scorer_init_fn(model, 0), optimizer),
               data=data,
               model_flops=flops_lib.scorer_train_flops(config, sequences,
                                                        layout.length),
               num_params=model_info.count_params(config, scorer=True),
               tokens_per_step=sequences * layout.length)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=5)
  parser.add_argument("--task", choices=("sft", "preference"), default="sft")
  parser.add_argument("--size", choices=("small", "tiny"), default="small")
  parser.add_argument("--batch", type=int, default=None,
                      help="examples (SFT) or comparisons (preference)")
  parser.add_argument("--input_len", type=int, default=None,
                      help="encoder input (SFT) / prompt (preference) tokens")
  parser.add_argument("--target_len", type=int, default=None,
                      help="target (SFT) / each response (preference) tokens")
  parser.add_argument("--dtype", default="float32",
                      help="activation dtype (parameters stay float32)")
  parser.add_argument("--optimizer", choices=OPTIMIZERS,
                      default="adafactor",
                      help="the project's Adafactor (portable), its XLA:CPU "
                      "variant, or optax.adafactor (same settings; the "
                      "baseline of the optimizer work)")
  parser.add_argument("--lm_head_backward", choices=t5.LM_HEAD_BACKWARDS,
                      default="xla",
                      help="T5Config.lm_head_backward (SFT: the LM head; the "
                      "preference model's scorer has none)")
  parser.add_argument("--position_bias_backward",
                      choices=t5.POSITION_BIAS_BACKWARDS, default="xla",
                      help="T5Config.position_bias_backward (the encoder's "
                      "position-bias gradient; cpu.gin: batch_dot)")
  parser.add_argument("--skip_peak", action="store_true",
                      help="do not measure the matmul peak (MFU -> null)")
  args = parser.parse_args(argv)
  if args.smoke:
    args.size, args.repeats, args.warmup = "tiny", 1, 1
  for name in ("batch", "input_len", "target_len"):
    value = getattr(args, name)
    if value is not None and value < 1:
      raise ValueError(f"--{name} must be >= 1, got {value}.")
  return args


def _peak(args: argparse.Namespace) -> Optional[float]:
  if args.skip_peak:
    return None
  return matmul_peak.measure_peak(args.dtype, smoke=args.smoke)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs one train-step benchmark, prints and returns its JSON record."""
  args = _parse(argv)
  common.configure_platform(args.platform, fast_compile=args.smoke)
  config = dataclasses.replace(SMALL if args.size == "small" else TINY,
                               dtype=args.dtype,
                               lm_head_backward=args.lm_head_backward,
                               position_bias_backward=(
                                   args.position_bias_backward))
  batch, input_len, target_len = SHAPES[(args.task, args.size)]
  batch = args.batch or batch
  input_len = args.input_len or input_len
  target_len = args.target_len or target_len
  if args.task == "sft":
    bench = build_sft(config, batch, input_len, target_len, args.optimizer)
  else:
    bench = build_preference(config, batch, input_len, target_len,
                             args.optimizer)
  run_config = {
      "task": args.task, "size": args.size,
      "model": dataclasses.asdict(config), "batch": batch,
      "input_len": input_len, "target_len": target_len,
      "optimizer": args.optimizer, "num_params": bench.num_params,
      "warmup": args.warmup, "repeats": args.repeats, "smoke": args.smoke,
      "train_step": f"nlhf_jax.algorithms."
                    f"{'sft' if args.task == 'sft' else 'preference_model'}"
                    ".make_train_step"}
  record = common.base_record(f"train_step_{args.task}", run_config)
  run, xla_flops = bench.compile()
  peak_before = _peak(args)
  timing = common.time_calls(run, args.warmup, args.repeats)
  peak_after = _peak(args)
  peaks = [p for p in (peak_before, peak_after) if p]
  peak = max(peaks) if peaks else None
  step_s = timing["median_s"]
  achieved = bench.model_flops / step_s
  record.update({
      "timing": timing,
      "examples_per_s": batch / step_s,
      "tokens_per_s": bench.tokens_per_step / step_s,
      "model_flops_per_step": bench.model_flops,
      "xla_flops_per_step": xla_flops,
      "model_flops_per_s": achieved,
      "matmul_peak_flops_per_s": peak,
      "matmul_peak_before_after": [peak_before, peak_after],
      "mfu": achieved / peak if peak else None,
      "memory": common.peak_memory(),
  })
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
