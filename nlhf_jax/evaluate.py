r"""A tournament over finished runs, judged by a judge chosen by name.

  python -m nlhf_jax.evaluate --out eval_out --sft demo_out/runs/sft \
      --policy RLHF=demo_out/runs/rlhf_tau_005 \
      --policy MD1=demo_out/runs/nash_md_beta_0125 \
      --judge llm --llm_base_url http://127.0.0.1:8000/v1 \
      --llm_model Qwen/Qwen2.5-7B-Instruct

Everything about the runs comes from their run specs (as for the demo's
report, `evaluation.pipeline`): SFT is the reference and a policy of the
tournament. Judges (`--judge`, repeatable):

  p_star            the synthetic world's exact P* (synthetic worlds only)
  preference_model  the learned preference model of `--pm`
  llm               an OpenAI-compatible chat-completions server
                    (`judges.chat`: both orders, retries, an answer cache)

Writes `out/generations/` (reused when complete), `out/<judge>/` (report.md,
CSVs, heatmap), `out/report.md` and, for the LLM judge,
`out/llm/judge_stats.json` (requests, faults retried by kind, unanswered
comparisons, cache hits, position bias, wall time, and with
`--agreement_with_p_star` its agreement with P* on the same pairs). The LLM
judge's answers are cached in `out/llm/answers.jsonl` as they arrive:
re-running the same command after an interruption asks only the questions
that were not answered. The API key is read from the environment variable
named by `--llm_api_key_env` (default OPENAI_API_KEY), never from a flag.
Configuration errors exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Optional, Sequence

from nlhf_jax import cli
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import agreement as agreement_lib
from nlhf_jax.evaluation import pipeline
from nlhf_jax.judges import text as judges_text

JUDGES = ("p_star", "preference_model", "llm")


def parse_policies(values: Sequence[str]) -> dict[str, str]:
  """{name: run directory} from NAME=DIR flags, in order.

  Raises:
    ConfigError: a value without '=', an empty part, a repeated name or a
      missing directory.
  """
  out = {}
  for value in values:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
      raise ConfigError(f"--policy {value!r} must be NAME=DIR.")
    if name in out or name == pipeline.SFT_NAME:
      raise ConfigError(f"--policy name {name!r} is used twice (SFT is "
                        "always in the tournament).")
    if not os.path.isdir(path):
      raise ConfigError(f"--policy {name}: {path!r} is not a directory.")
    out[name] = path
  return out


def chat_config(flags: argparse.Namespace) -> Any:
  """The ChatJudgeConfig of the --llm_* flags."""
  from nlhf_jax.judges import chat  # pylint: disable=g-import-not-at-top
  if not flags.llm_base_url or not flags.llm_model:
    raise ConfigError("--judge llm needs --llm_base_url and --llm_model.")
  return chat.ChatJudgeConfig(
      base_url=flags.llm_base_url, model=flags.llm_model,
      api_key_env=flags.llm_api_key_env, template=flags.llm_template,
      max_concurrency=flags.llm_concurrency, timeout_s=flags.llm_timeout_s,
      max_retries=flags.llm_max_retries, parse_retries=flags.llm_parse_retries,
      use_logprobs=not flags.llm_no_logprobs,
      cache_path=flags.llm_cache or os.path.join(flags.out, "llm",
                                                 "answers.jsonl"))


def make_judges(flags: argparse.Namespace) -> dict[str, tuple[Any, bool]]:
  """{key: (judge, average_orders)} for the chosen judges."""
  judge_list = {}
  names = list(dict.fromkeys(flags.judge))
  if flags.agreement_with_p_star and "p_star" not in names:
    names.append("p_star")
  for name in names:
    if name == "p_star":
      judge_list[name] = (judges_text.synthetic_judge(), True)
    elif name == "preference_model":
      if not flags.pm:
        raise ConfigError("--judge preference_model needs --pm PM_DIR.")
      judge_list.update(pipeline.make_judges(pipeline.judge_run(flags.pm),
                                             p_star=False))
    else:
      from nlhf_jax.judges import chat  # pylint: disable=g-import-not-at-top
      judge_list[name] = (chat.ChatCompletionsJudge(chat_config(flags)),
                          False)  # It asks both orders itself.
  return judge_list


def llm_summary(judge: Any, results: dict[str, Any]) -> dict[str, Any]:
  """The LLM judge's counts, unanswered pairs and agreement with P*."""
  out = {"model": judge.config.model, "base_url": judge.config.base_url,
         **judge.stats.as_dict(),
         "unanswered_by_pair": {f"{r} vs {c}": k for (r, c), k in
                                results["llm"].unanswered.items()}}
  if "p_star" in results:
    out["agreement_with_p_star"] = dataclasses.asdict(
        agreement_lib.agreement(results["llm"], results["p_star"]))
  return out


def llm_markdown(summary: dict[str, Any]) -> str:
  """The LLM judge's summary as report notes."""
  faults = ", ".join(f"{k} {v}" for k, v in summary["faults"].items())
  lines = [f"LLM judge {summary['model']} at {summary['base_url']}: "
           f"{summary['questions']} questions (both orders), "
           f"{summary['cache_hits']} from the cache, {summary['requests']} "
           f"requests in {summary['seconds']:.1f} s; faults retried: "
           f"{faults}; unanswered after retries: {summary['unanswered']}. "
           f"The first slot won {summary['position_bias']:.3f} of the time "
           "before averaging the two orders."]
  if "agreement_with_p_star" in summary:
    a = summary["agreement_with_p_star"]
    lines.append(f"Agreement with P* on the same {a['comparisons']} "
                 f"comparisons: {a['comparison_agreement']:.3f} of the "
                 f"decided ones on the same side of ½, correlation "
                 f"{a['correlation']:.3f}, pairs on the same side "
                 f"{a['cell_agreement']:.3f}.")
  return "\n\n".join(lines)


def _flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.evaluate", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True)
  parser.add_argument("--sft", required=True, help="the SFT run directory")
  parser.add_argument("--policy", action="append", default=[],
                      help="NAME=RUN_DIR (repeatable)")
  parser.add_argument("--judge", action="append", choices=JUDGES,
                      required=True, help="repeatable")
  parser.add_argument("--pm", default=None, help="preference-model run")
  parser.add_argument("--split", default="test", choices=("test", "valid"))
  parser.add_argument("--num_prompts", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--agreement_with_p_star", action="store_true")
  parser.add_argument("--llm_base_url", default=None)
  parser.add_argument("--llm_model", default=None)
  parser.add_argument("--llm_api_key_env", default="OPENAI_API_KEY")
  parser.add_argument("--llm_template", default="tldr")
  parser.add_argument("--llm_concurrency", type=int, default=8)
  parser.add_argument("--llm_timeout_s", type=float, default=60.0)
  parser.add_argument("--llm_max_retries", type=int, default=6)
  parser.add_argument("--llm_parse_retries", type=int, default=2)
  parser.add_argument("--llm_no_logprobs", action="store_true",
                      help="read hard choices only")
  parser.add_argument("--llm_cache", default=None,
                      help="default: OUT/llm/answers.jsonl")
  return parser.parse_args(argv)


def run(flags: argparse.Namespace) -> str:
  """Judges and writes everything (module docstring); returns report.md."""
  policies = parse_policies(flags.policy)
  judge_list = make_judges(flags)
  results = pipeline.evaluate(
      policies, sft_dir=flags.sft, out_dir=flags.out,
      num_prompts=flags.num_prompts, split=flags.split, seed=flags.seed,
      judge_list=judge_list)
  notes = ""
  if "llm" in judge_list:
    judge = judge_list["llm"][0]
    judge.close()
    summary = llm_summary(judge, results)
    with open(os.path.join(flags.out, "llm", "judge_stats.json"), "w",
              encoding="utf-8") as f:
      json.dump(summary, f, indent=1)
    notes = llm_markdown(summary)
    print(notes)
    if summary["unanswered"]:
      print(f"{summary['unanswered']} questions are unanswered; re-run the "
            "same command to ask them again (answers are cached).")
  return pipeline.write_summary(
      flags.out, results, title="Tournament",
      intro=f"{len(policies) + 1} policies on {flags.split} prompts; "
      "P(column ≻ row).", notes=notes)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Command-line entry point; returns 0 (2 on a configuration error)."""
  flags = _flags(sys.argv[1:] if argv is None else argv)
  with cli.exit_on_config_error():
    print(f"Report: {run(flags)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
