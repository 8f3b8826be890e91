"""The price of the judge: a Nash-MD-PG step with the learned preference
model against the same step with the host P* judge.

  python -m benchmarks.judge_benchmark [--smoke] [--posts 300]

At the demo's sizes (`nlhf_jax.demo.DemoConfig`: T5 d_model 32, 2 + 2
layers, a 640-piece vocabulary, prompts of 192 tokens, responses of 32,
the preference model's packed input 256, batch 32) on a freshly generated
synthetic world, the library step `nash_md.make_train_step` runs once with
`judges.pairwise.PreferenceModelJudge` (random weights) and once with
`jobs.judges.SyntheticPStar` (the exact P*, decoded text judged on the
host through `jax.pure_callback`). Each is timed fused (the Program's
step) and split into sampling / judging / update as
`benchmarks.nash_md_benchmark` does; the record holds both and the ratios
host / learned of the fused step and of the judging time. The policy has
random weights, so its responses are mostly full-length garbage text: the
host judge's per-row cost (decoding 2 × 2 × batch responses and P*'s
features) is that of the longest responses.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from typing import Any, Optional, Sequence

from benchmarks import common
from benchmarks import nash_md_benchmark as nmb

DEMO_SIZES = dict(vocab=640, d_model=32, num_heads=2, d_ff=64, layers=2,
                  input_length=192, target_length=40, new_tokens=32,
                  packed_length=256, batch=32)
SMOKE_SIZES = dict(vocab=400, d_model=32, num_heads=2, d_ff=64, layers=1,
                   input_length=48, target_length=8, new_tokens=4,
                   packed_length=64, batch=4)


def make_world(out_dir: str, posts: int, vocab_size: int) -> tuple[str, str]:
  """(data_dir, vocabulary) of a generated synthetic world."""
  from nlhf_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from nlhf_jax.data import vocab  # pylint: disable=g-import-not-at-top
  synthetic.generate(out_dir, seed=0, size=posts)
  return out_dir, vocab.train_from_data_dir(out_dir, f"{out_dir}/sp",
                                            vocab_size)


def judges_of(data: Any, model: Any, sizes: dict[str, int]) -> dict[str, Any]:
  """{name: in-step pairwise judge}: the learned PM and the host P*."""
  from nlhf_jax import partitioning  # pylint: disable=g-import-not-at-top
  from nlhf_jax.jobs import judges  # pylint: disable=g-import-not-at-top
  from nlhf_jax.judges import pairwise  # pylint: disable=g-import-not-at-top
  from nlhf_jax.models import preference  # pylint: disable=g-import-not-at-top
  from nlhf_jax.models import t5  # pylint: disable=g-import-not-at-top
  layout = preference.make_layout(
      preference.LayoutConfig(length=sizes["packed_length"]), data)
  mesh = partitioning.make_mesh(partitioning.MeshConfig(-1, 1, 1))
  return {
      "preference_model": pairwise.PreferenceModelJudge(t5.T5Scorer(model),
                                                        layout),
      "host_p_star": judges.SyntheticPStar().build(data, mesh, "pairwise"),
  }


def measure(sizes: dict[str, int], posts: int, warmup: int,
            repeats: int) -> dict[str, Any]:
  """Both steps on one world; their timings and the ratios."""
  from nlhf_jax.data import jsonl_sources  # pylint: disable=g-import-not-at-top
  from nlhf_jax.models import t5  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as root:
    data_dir, vocabulary = make_world(root, posts, sizes["vocab"])
    data = jsonl_sources.SftJsonlSource(
        data_dir, vocabulary, input_length=sizes["input_length"],
        target_length=sizes["target_length"])
    prompts = data.arrays("train")["encoder_input_tokens"][:sizes["batch"]]
    model = t5.T5Config(
        vocab_size=sizes["vocab"], d_model=sizes["d_model"],
        num_heads=sizes["num_heads"], d_kv=16, d_ff=sizes["d_ff"],
        num_encoder_layers=sizes["layers"],
        num_decoder_layers=sizes["layers"], dropout_rate=0.0,
        dtype="float32")
    settings = nmb.Settings(batch=sizes["batch"],
                            prompt_len=sizes["input_length"],
                            new_tokens=sizes["new_tokens"])
    out = {}
    for name, judge in judges_of(data, model, sizes).items():
      pieces = nmb.build(model, settings, judge=judge, prompts=prompts)
      fused, metrics = nmb.time_fused(pieces, warmup, repeats)
      out[name] = nmb.summarize(model, settings, fused, metrics)
      out[name]["split"] = nmb.time_split(pieces, warmup, repeats)
  learned, host = out["preference_model"], out["host_p_star"]
  out["ratio_step_host_over_learned"] = (host["median_step_s"] /
                                         learned["median_step_s"])
  out["ratio_judging_host_over_learned"] = (host["split"]["judging_s"] /
                                            learned["split"]["judging_s"])
  out["model"] = dataclasses.asdict(model)
  return out


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the benchmark, prints and returns its JSON record."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(parser, warmup=2, repeats=5)
  parser.add_argument("--posts", type=int, default=300,
                      help="posts of the generated world (prompts, vocab)")
  args = parser.parse_args(argv)
  sizes = DEMO_SIZES
  if args.smoke:
    sizes, args.warmup, args.repeats, args.posts = SMOKE_SIZES, 1, 1, 200
  common.configure_platform(args.platform, fast_compile=args.smoke)
  run_config = {"sizes": sizes, "posts": args.posts, "warmup": args.warmup,
                "repeats": args.repeats, "smoke": args.smoke,
                "train_step": "nlhf_jax.algorithms.nash_md.make_train_step"}
  record = common.base_record("judge_price_nash_md", run_config)
  record.update(measure(sizes, args.posts, args.warmup, args.repeats))
  record["memory"] = common.peak_memory()
  common.emit(record)
  return record


if __name__ == "__main__":
  main()
