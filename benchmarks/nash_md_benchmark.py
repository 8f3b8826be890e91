"""Nash-MD-PG train-step throughput, split into sampling, judging and update.

  python -m benchmarks.nash_md_benchmark [--size matched|flops_matched|tiny|demo]
      [--batch 8 --prompt_len 64 --new_tokens 32]

Times the library step `nlhf_jax.algorithms.nash_md.make_train_step` as
the trainer runs it: the `program.Program` of that step (guarded, state
donated, frozen models as sharded arguments) on a mesh of the local
devices; it reports samples/s
(prompts per second; each prompt yields the pair y, y') and generated
tokens/s (2 · batch · new_tokens per step, the peer's definition). The
split times the library's pieces, each jitted on its own:

  sampling  `online.sample_policy_and_mixture` (y ~ π_θ and y' ~ π^{1−β}μ^β
            in one batched decode of [x; x]);
  judging   `judges.pairwise.preference` of the preference model (both orders);
  update    `nash_md.preference_update` (judging + teacher-forced log π,
            REINFORCE loss, optimizer step) minus the judging time, so
            `update_s` is derived, not timed on its own.

The pieces run one after another with the host in between; their sum is
reported next to the fused step. Weights are random (the reference is a
copy of the policy), prompts are random tokens without padding, and the
optimizer is AdamW (the peer's).

`--size matched` (default) is the T5 size whose policy parameter count is
within 15 % of the peer's GPT-2 (d_model 256, 4 layers, vocab 32128,
11.65 M parameters; see `benchmarks/peer_nash_md.py`): vocab 32128,
d_model 160, 4 heads × 40, d_ff 640, 2 + 2 layers, 12.13 M parameters.
The preference model is a `T5Scorer` of the same config (6.99 M: T5's
untied LM head is the difference). `--size demo` is the demo's online run
(`DEMO`: about 0.1 M parameters, batch 32, prompts 192, responses 32).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from benchmarks import common
from benchmarks import train_step_benchmark
from nlhf_jax import model_info
from nlhf_jax import optimizers
from nlhf_jax import partitioning
from nlhf_jax import program as program_lib
from nlhf_jax import train_state
from nlhf_jax.algorithms import nash_md
from nlhf_jax.algorithms import online
from nlhf_jax.models import init as model_init
from nlhf_jax.judges import pairwise
from nlhf_jax.models import t5

MATCHED = t5.T5Config(vocab_size=32128, d_model=160, num_heads=4, d_kv=40,
                      d_ff=640, num_encoder_layers=2, num_decoder_layers=2,
                      dropout_rate=0.0, dtype="float32")
# Matched on decode FLOPs per generated token instead (`benchmarks/flops.py`:
# 21.2 M against the peer GPT-2's 22.7 M, 0.93): d_model 256, 4 heads × 64,
# d_ff 1024, 2 + 2 layers; more parameters than the peer (21.2 M policy),
# most of them in the untied vocabulary head and the embedding.
FLOPS_MATCHED = t5.T5Config(vocab_size=32128, d_model=256, num_heads=4,
                            d_kv=64, d_ff=1024, num_encoder_layers=2,
                            num_decoder_layers=2, dropout_rate=0.0,
                            dtype="float32")
TINY = t5.T5Config(vocab_size=256, d_model=32, num_heads=2, d_kv=16,
                   d_ff=64, num_encoder_layers=1, num_decoder_layers=1,
                   dropout_rate=0.0, dtype="float32")
# The demo's online runs (`nlhf_jax.demo.DemoConfig`): vocab 640, d_model 32,
# 2 heads, d_ff 64, 2 + 2 layers; batch 32, prompts 192, responses 32.
DEMO = t5.T5Config(vocab_size=640, d_model=32, num_heads=2, d_kv=16,
                   d_ff=64, num_encoder_layers=2, num_decoder_layers=2,
                   dropout_rate=0.0, dtype="float32")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Shapes and hyper-parameters of the benchmarked step.

  Attributes:
    batch: prompts per step.
    prompt_len: prompt tokens (no padding).
    new_tokens: response length L (max_decode_length).
    beta: mixture coefficient β of y' ~ π^{1−β} μ^β.
    tau: KL regularisation τ.
    learning_rate: AdamW learning rate (the peer's 3e-5).
    judge_row_chunk: the preference model's `row_chunk` (None: all rows at
      once).
  """

  batch: int = 8
  prompt_len: int = 64
  new_tokens: int = 32
  beta: float = 0.125
  tau: float = 0.008
  learning_rate: float = 3e-5
  judge_row_chunk: Optional[int] = None

  def __post_init__(self):
    for name in ("batch", "prompt_len", "new_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"Settings.{name} must be >= 1, got "
                         f"{getattr(self, name)}.")
    if self.judge_row_chunk is not None and self.judge_row_chunk < 1:
      raise ValueError("Settings.judge_row_chunk must be >= 1 or None, got "
                       f"{self.judge_row_chunk}.")


TINY_SETTINGS = Settings(batch=2, prompt_len=8, new_tokens=4)
DEMO_SETTINGS = Settings(batch=32, prompt_len=192, new_tokens=32)
SIZES = {"matched": (MATCHED, Settings()),
         "flops_matched": (FLOPS_MATCHED, Settings()),
         "tiny": (TINY, TINY_SETTINGS), "demo": (DEMO, DEMO_SETTINGS)}


@dataclasses.dataclass
class Pieces:
  """The fused step, the pieces for the split and their fixed inputs."""
  program: program_lib.Program    # step(state, batch, base_rng, frozen)
  sample: Callable[..., Any]      # (params, ref, prompts, rng) -> (y, y')
  judge: Callable[..., Any]       # (pref, prompts, y, y') -> P [b]
  judge_update: Callable[..., Any]  # (state, prompts, y, y', frozen)
  state: train_state.TrainState
  frozen: train_state.Frozen
  prompts: jax.Array


def build(config: t5.T5Config, settings: Settings, seed: int = 0, *,
          judge: Optional[pairwise.PairJudge] = None,
          prompts: Optional[jax.Array] = None,
          make_step: Optional[Callable[..., Any]] = None,
          with_anchor: bool = False) -> Pieces:
  """Random-weight policy, reference (= policy copy) and judge.

  Args:
    config: T5 config of the policy, reference and preference model.
    settings: shapes and hyper-parameters.
    seed: seed of the weights and the random prompts.
    judge: the step's pairwise judge; None: a random-weight preference
      model of `config` (its parameters are then the frozen judge's).
    prompts: int32 [batch, prompt_len] prompt tokens; None: random tokens.
    make_step: (policy, reference, judge, responses) -> the Program's step;
      None: Nash-MD-PG with the settings' β and τ (the split's pieces are
      Nash-MD-PG's whatever the step).
    with_anchor: the state keeps an anchor copy (Nash Prox, MPO).
  """
  policy = t5.T5(config)
  # Options passed only when set, so that `alternate --same_benchmark` can
  # time libraries from before them (which lack the keywords).
  chunk = ({} if settings.judge_row_chunk is None else
           {"row_chunk": settings.judge_row_chunk})
  anchor = {"with_anchor": True} if with_anchor else {}
  if judge is None:
    judge = pairwise.PreferenceModelJudge(
        t5.T5Scorer(config),
        train_step_benchmark.pair_layout(settings.prompt_len,
                                         settings.new_tokens), **chunk)
  if prompts is None:
    prompts = jax.random.randint(
        jax.random.PRNGKey(seed + 1), (settings.batch, settings.prompt_len),
        2, config.vocab_size, jnp.int32)
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig(
      name="adamw", learning_rate=settings.learning_rate), 1000)
  policy_init = model_init.init_fn(policy, seed)
  if isinstance(judge, pairwise.PreferenceModelJudge):
    judge_init = model_init.scorer_init_fn(judge.model, seed + 2)
  else:
    judge_init = judge.init_params
  nash_config = nash_md.NashMDConfig(beta=settings.beta, tau=settings.tau)
  responses = online.ResponseConfig(max_decode_length=settings.new_tokens)
  scfg = responses.sampling_config()

  def sample(params, ref_params, x, rng):
    return online.sample_policy_and_mixture(policy, params, policy,
                                            ref_params, x, rng,
                                            settings.beta, scfg)

  def judge_pair(judge_params, x, y, y2):
    return pairwise.preference(judge, judge_params, x, y.tokens, y2.tokens)

  def judge_update(st, x, y, y2, frozen):
    return nash_md.preference_update(policy, judge, settings.tau, st, x, y,
                                     y2, frozen)

  program = program_lib.build(
      mesh=partitioning.make_mesh(partitioning.MeshConfig(-1, 1, 1)),
      init_fn=policy_init, tx=tx, **anchor,
      step_fn=(make_step or functools.partial(
          _nash_md_step, config=nash_config))(policy, policy, judge,
                                              responses),
      frozen_init=train_state.Frozen(reference=policy_init, judge=judge_init))
  state = program.create_state(program.fresh_params())
  frozen = train_state.Frozen(
      reference=jax.tree.map(jnp.copy, state.params),
      judge=partitioning.sharded_init(judge_init, program.mesh)[0])
  return Pieces(program=program, sample=sample, judge=judge_pair,
                judge_update=judge_update, state=state, frozen=frozen,
                prompts=jax.device_put(prompts, program.batch_sharding))


def _nash_md_step(policy: t5.T5, reference: t5.T5,
                  judge: pairwise.PairJudge, responses: online.ResponseConfig,
                  config: nash_md.NashMDConfig) -> Any:
  return nash_md.make_train_step(policy, reference, judge, config, responses)


def _copy(tree: Any) -> Any:
  return jax.tree.map(jnp.copy, tree)


def time_fused(pieces: Pieces, warmup: int,
               repeats: int) -> tuple[dict[str, Any], dict[str, Any]]:
  """Median time of the Program's step; also its last metrics."""
  program = pieces.program
  batch = {"encoder_input_tokens": pieces.prompts}
  box = {"state": _copy(pieces.state), "metrics": None}
  base = jax.device_put(jax.random.PRNGKey(7),
                        partitioning.replicated(program.mesh))

  def run():
    with partitioning.activate(program.mesh):
      box["state"], box["metrics"] = program.step(box["state"], batch, base,
                                                  pieces.frozen)
    return box["metrics"]

  timing = common.time_calls(run, warmup, repeats)
  return timing, box["metrics"]


def time_split(pieces: Pieces, warmup: int, repeats: int) -> dict[str, Any]:
  """Times sampling, judging and judging + update, each jitted alone."""
  sample, judge = jax.jit(pieces.sample), jax.jit(pieces.judge)
  judge_update = jax.jit(pieces.judge_update, donate_argnums=0)
  ref, pref = pieces.frozen.reference, pieces.frozen.judge
  x, rng = pieces.prompts, jax.random.PRNGKey(3)
  y, y2 = sample(pieces.state.params, ref, x, rng)
  box = {"state": _copy(pieces.state)}

  def update():
    box["state"], metrics = judge_update(box["state"], x, y, y2,
                                         pieces.frozen)
    return metrics["loss"]

  timed = {
      "sampling": common.time_calls(
          lambda: sample(pieces.state.params, ref, x, rng), warmup, repeats),
      "judging": common.time_calls(lambda: judge(pref, x, y, y2), warmup,
                                   repeats),
      "judging_and_update": common.time_calls(update, warmup, repeats),
  }
  med = {k: v["median_s"] for k, v in timed.items()}
  update_s = max(med["judging_and_update"] - med["judging"], 0.0)
  total = med["sampling"] + med["judging_and_update"]
  # Shares of the three reported parts (update_s is clamped at 0 when
  # judging alone timed slower than judging + update).
  parts = med["sampling"] + med["judging"] + update_s
  return {
      "sampling_s": med["sampling"], "judging_s": med["judging"],
      "update_s": update_s, "sum_of_parts_s": total,
      "fraction": {"sampling": med["sampling"] / parts,
                   "judging": med["judging"] / parts,
                   "update": update_s / parts},
      "timings": timed,
  }


def summarize(config: t5.T5Config, settings: Settings,
              fused: dict[str, Any], metrics: dict[str, Any]
              ) -> dict[str, Any]:
  """Throughput fields from a fused-step timing and its last metrics."""
  step_s = fused["median_s"]
  return {
      "params_policy": model_info.count_params(config),
      "params_preference_model": model_info.count_params(config,
                                                         scorer=True),
      "fused": fused,
      "median_step_s": step_s,
      "samples_per_s": settings.batch / step_s,
      "generated_tokens_per_s":
          2 * settings.batch * settings.new_tokens / step_s,
      "mean_response_length": {
          "policy": float(metrics["response_length"]),
          "mixture": float(metrics["opponent_length"])},
  }


def measure(config: t5.T5Config, settings: Settings, warmup: int,
            repeats: int, split: bool = True) -> dict[str, Any]:
  """Builds and times the step.

  Args:
    config: T5 config of policy, reference and preference model.
    settings: shapes and hyper-parameters.
    warmup: untimed calls per timed function (the first compiles).
    repeats: timed calls per timed function.
    split: also time the separately jitted pieces.

  Returns:
    params_policy, params_preference_model, fused (timing), median_step_s,
    samples_per_s, generated_tokens_per_s, mean_response_length
    {policy, mixture} of the last step, split (or None).
  """
  pieces = build(config, settings)
  out = summarize(config, settings, *time_fused(pieces, warmup, repeats))
  out["split"] = time_split(pieces, warmup, repeats) if split else None
  return out


def add_size_flags(parser: argparse.ArgumentParser) -> None:
  """Model-size and shape flags shared with the peer comparison."""
  parser.add_argument("--size", choices=tuple(SIZES), default="matched")
  parser.add_argument("--batch", type=int, default=None)
  parser.add_argument("--prompt_len", type=int, default=None)
  parser.add_argument("--new_tokens", type=int, default=None)
  parser.add_argument("--beta", type=float, default=0.125)
  parser.add_argument("--judge_row_chunk", type=int, default=None,
                      help="score the preference model's rows this many at "
                      "a time (default: all at once)")
  parser.add_argument("--lm_head_backward", default=None,
                      help="T5Config.lm_head_backward (default: the config's)")
  parser.add_argument("--position_bias_backward", default=None,
                      help="T5Config.position_bias_backward (default: the "
                      "config's)")


def config_from_args(args: argparse.Namespace
                     ) -> tuple[t5.T5Config, Settings]:
  """The model config and step settings selected by the flags."""
  config, base = SIZES[args.size]
  # Only flags that are set reach the config, so that `alternate
  # --same_benchmark` can time libraries whose T5Config lacks a field.
  options = {name: getattr(args, name)
             for name in ("lm_head_backward", "position_bias_backward")
             if getattr(args, name) is not None}
  config = dataclasses.replace(config, **options)
  settings = dataclasses.replace(
      base, batch=args.batch or base.batch,
      prompt_len=args.prompt_len or base.prompt_len,
      new_tokens=args.new_tokens or base.new_tokens, beta=args.beta,
      judge_row_chunk=args.judge_row_chunk)
  return config, settings


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the benchmark, prints and returns its JSON record."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=5)
  add_size_flags(parser)
  parser.add_argument("--no_split", action="store_true",
                      help="time only the fused step")
  args = parser.parse_args(argv)
  if args.smoke:
    args.size, args.warmup, args.repeats = "tiny", 1, 1
  common.configure_platform(args.platform, fast_compile=args.smoke)
  config, settings = config_from_args(args)
  run_config = {"model": dataclasses.asdict(config),
                "settings": dataclasses.asdict(settings),
                "optimizer": "adamw", "warmup": args.warmup,
                "repeats": args.repeats, "smoke": args.smoke,
                "train_step": "nlhf_jax.algorithms.nash_md.make_train_step"}
  record = common.base_record("nash_md_pg_train_step", run_config)
  record.update(measure(config, settings, args.warmup, args.repeats,
                        split=not args.no_split))
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
