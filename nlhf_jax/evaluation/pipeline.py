"""The evaluation pipeline: finished runs in, a tournament report out.

  results = pipeline.evaluate({"MD1": md1_dir, "SP": sp_dir},
                              sft_dir=SFT, pm_dir=PM, out_dir=OUT,
                              num_prompts=500, p_star=True)
  pipeline.write_summary(OUT, results, title="...",
                         curves=pipeline.training_curves(runs, OUT + "/curves"))

or both at once with `report(...)`. Everything about the runs comes from
the run specs their jobs wrote (`<workdir>/run_spec.json`, read with
`nlhf_jax.run_spec`), never from gin:

* a policy's workdir (an online run, or the SFT run itself) gives its model,
  its data source (vocabulary, prompt length) and its response length
  (`responses.max_decode_length`);
* the SFT workdir gives the reference μ (model, vocabulary, prompt length).
  It is also a policy of the tournament ("SFT"), sampled at the longest
  response length of the other policies (its own target length when it is
  the only one);
* the preference-model workdir gives the judge's model, its input layout
  (packed length, markers) and its own data section's vocabulary and
  prompt / summary lengths, so the judge reads summaries as it was trained.

A workdir without a run spec (not a run, or one from before run specs) is a
ConfigError naming it. Generations are cached in `out_dir/generations/` and
reused when complete; each judge writes `out_dir/<judge>/` (report.md,
CSVs, heatmap) and `write_summary` joins them into `out_dir/report.md`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from nlhf_jax import run_spec
from nlhf_jax.data import jsonl_sources
from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import exploitability
from nlhf_jax.evaluation import generation
from nlhf_jax.judges import text as judges
from nlhf_jax.evaluation import metric_logs
from nlhf_jax.evaluation import plots
from nlhf_jax.evaluation import report as report_lib
from nlhf_jax.evaluation import significance
from nlhf_jax.evaluation import tournament
from nlhf_jax.models import preference
from nlhf_jax.models import t5

SFT_NAME = "SFT"
CURVE_METRICS = ("preference_vs_opponent", "reward", "kl_to_reference",
                 "response_length", "policy_entropy")
JUDGE_TITLES = {"p_star": "the synthetic world's exact P* (annotator "
                          "population)",
                "preference_model": "the learned preference model",
                "llm": "an LLM judge over HTTP (both orders)"}
POLICY_JOBS = ("sft", "online")
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class PolicyRun:
  """A policy to sample from, as its run spec describes it.

  Attributes:
    workdir: the run (its newest intact checkpoint is restored).
    model: the policy's architecture.
    data: its SFT data source (vocabulary, input_length of the prompts).
    response_length: sampled tokens, EOS included (an online run's
      `responses.max_decode_length`; the SFT run's target_length).
  """

  workdir: str
  model: t5.T5Config
  data: jsonl_sources.SftJsonlSource
  response_length: int


@dataclasses.dataclass(frozen=True)
class JudgeRun:
  """A preference-model run, as its run spec describes it.

  Attributes:
    workdir: the run.
    model: the T5Scorer's architecture.
    data: its comparison source (vocabulary, input and summary lengths).
    layout: its packed input layout (length and markers).
  """

  workdir: str
  model: t5.T5Config
  data: jsonl_sources.PreferenceJsonlSource
  layout: preference.LayoutConfig


def _spec(workdir: str, jobs: Sequence[str], what: str) -> run_spec.RunSpec:
  """The run spec of `workdir`, checked to be one of `jobs`."""
  try:
    spec = run_spec.read(workdir)
  except ConfigError as e:
    raise ConfigError(f"{what}: {e}") from e
  if spec.job not in jobs:
    raise ConfigError(f"{what}: {workdir!r} holds a {spec.job!r} run, not "
                      f"{' or '.join(repr(j) for j in jobs)}.")
  return spec


def policy_run(workdir: str, name: str = "policy") -> PolicyRun:
  """The PolicyRun of an SFT or online workdir (ConfigError if no spec)."""
  spec = _spec(workdir, POLICY_JOBS, f"Policy {name!r}")
  data = spec.value("data")
  length = (spec.field("responses", "max_decode_length")
            if spec.job == "online" else data.target_length)
  return PolicyRun(workdir, spec.model("policy"), data, length)


def judge_run(pm_dir: str) -> JudgeRun:
  """The JudgeRun of a preference-model workdir (ConfigError if no spec)."""
  spec = _spec(pm_dir, ("preference_model",), "Preference model")
  return JudgeRun(pm_dir, spec.model("judge"), spec.value("data"),
                  spec.value("layout"))


def _parameters_of(config: t5.T5Config) -> t5.T5Config:
  """`config` without what leaves the parameters alone (rematerialisation)."""
  return dataclasses.replace(config, remat_policy="none")


def policy_runs(policies: Mapping[str, str], sft_dir: str
                ) -> dict[str, PolicyRun]:
  """{SFT_NAME: the SFT run, **policies} with their specs.

  The SFT run is sampled at the policies' longest response length; every
  policy must share the SFT model's architecture (it is the reference μ of
  the KL estimates).
  """
  runs = {name: policy_run(path, name) for name, path in policies.items()}
  sft = policy_run(sft_dir, SFT_NAME)
  if runs:
    sft = dataclasses.replace(sft, response_length=max(
        r.response_length for r in runs.values()))
  for name, run in runs.items():
    if _parameters_of(run.model) != _parameters_of(sft.model):
      raise ConfigError(f"Policy {name!r} ({run.workdir}) has another model "
                        f"than the SFT run {sft_dir!r}; the reference must "
                        "share the policy's architecture.")
  return {SFT_NAME: sft, **runs}


def load_prompt_sets(runs: Mapping[str, PolicyRun], split: str,
                     num_prompts: int) -> dict[str, generation.PromptSet]:
  """{name: the prompts tokenised as that run's data source does}.

  Raises:
    ConfigError: the runs' data sources hold different prompts.
  """
  by_source: dict[tuple[str, str, int], generation.PromptSet] = {}
  out = {}
  for name, run in runs.items():
    key = (run.data.data_dir, run.data.vocabulary, run.data.input_length)
    if key not in by_source:
      by_source[key] = generation.load_prompts(run.data, split, num_prompts)
    out[name] = by_source[key]
  if len({p.texts for p in by_source.values()}) > 1:
    raise ConfigError(f"The runs read different {split!r} prompts "
                      f"(data dirs {sorted({k[0] for k in by_source})}); a "
                      "tournament needs one prompt set.")
  return out


def read_train_metrics(path: str) -> list[metric_logs.Record]:
  """Training records of a run's metrics.jsonl (evaluation lines dropped)."""
  records = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        obj = json.loads(line)
        if obj.get("split", "train") == "train":
          records.append(metric_logs.parse_record(obj, f"{path}:{number}"))
  return records


def training_curves(runs: Mapping[str, str], out_dir: str,
                    metrics: Sequence[str] = CURVE_METRICS
                    ) -> dict[str, str]:
  """PNG curves of the metrics present in the runs' metrics.jsonl files.

  Args:
    runs: {policy name: run directory}; runs without a log are left out.
    out_dir: folder of the PNGs.
    metrics: metric names to plot when some run has them.

  Returns:
    {metric: PNG path}.
  """
  records = {}
  for name, run_dir in runs.items():
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
      records[name] = read_train_metrics(path)
  present = set(metric_logs.metric_names(records)) if records else set()
  wanted = [m for m in metrics if m in present]
  if not wanted:
    return {}
  return plots.plot_training_curves(records, out_dir, metrics=wanted)


def _file_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _cached(path: str, size: int) -> Optional[generation.Generations]:
  """The generations at `path` when they cover all `size` prompts."""
  if not os.path.exists(path):
    return None
  cached = generation.Generations.from_jsonl(path)
  return cached if len(cached.summaries) == size else None


def generate_all(runs: Mapping[str, PolicyRun],
                 prompts: Mapping[str, generation.PromptSet], *,
                 reference: PolicyRun, out_dir: str, seed: int = 0,
                 log: Log = print) -> dict[str, generation.Generations]:
  """One summary per prompt from each policy, cached as JSON lines.

  Args:
    runs: {name: PolicyRun} (`policy_runs`).
    prompts: {name: its PromptSet} (`load_prompt_sets`).
    reference: the SFT run (reference μ of the KL estimates).
    out_dir: `out_dir/generations/<name>.jsonl` are written / reused.
    seed: sampling seed (shared by all policies).
    log: progress printer.

  Returns:
    {name: generation.Generations}.
  """
  reference_params = generation.restore_policy(reference.workdir,
                                               reference.model)
  out = {}
  for name, run in runs.items():
    path = os.path.join(out_dir, "generations", f"{_file_name(name)}.jsonl")
    cached = _cached(path, len(prompts[name].texts))
    if cached is not None:
      log(f"  {name}: {path} exists, reused.")
      out[name] = cached
      continue
    start = time.perf_counter()
    same = os.path.abspath(run.workdir) == os.path.abspath(reference.workdir)
    params = (reference_params if same else
              generation.restore_policy(run.workdir, run.model))
    gens = generation.generate(
        run.model, params, reference_params, prompts[name].tokens,
        vocabulary=run.data.vocabulary,
        max_decode_length=run.response_length, seed=seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    gens.to_jsonl(path)
    out[name] = gens
    log(f"  {name}: {len(gens.summaries)} summaries in "
        f"{time.perf_counter() - start:.0f}s (mean length "
        f"{gens.lengths.mean():.1f} tokens, KL to SFT {gens.kl.mean():.2f})")
  return out


def make_judges(pm: JudgeRun, p_star: bool) -> dict[str, tuple[Any, bool]]:
  """{key: (judge, average_orders)}: the learned PM, and P* if asked.

  The PM reads prompts and summaries with its own data section's
  vocabulary and lengths and its own layout. Both judges are exactly
  antisymmetric (the PM is symmetrised over presentation order by
  `preference_probability`, P* by construction), so the tournament's order
  averaging is only kept for P*, where it is free.
  """
  data = jsonl_sources.SftJsonlSource(
      pm.data.data_dir, pm.data.vocabulary,
      input_length=pm.data.input_length, target_length=pm.data.target_length)
  params = generation.restore_scorer(pm.workdir, pm.model)
  score_fn = generation.preference_model_score_fn(
      pm.model, params, data, preference.make_layout(pm.layout, data))
  out = {}
  if p_star:
    out["p_star"] = (judges.synthetic_judge(), True)
  out["preference_model"] = (judges.PreferenceModelJudge(
      score_fn, name="learned preference model"), False)
  return out


def evaluate(policies: Mapping[str, str], *, sft_dir: str,
             pm_dir: Optional[str] = None, out_dir: str, num_prompts: int,
             split: str = "test", p_star: bool = False, seed: int = 0,
             judge_list: Optional[Mapping[str, tuple[Any, bool]]] = None,
             log: Log = print) -> dict[str, tournament.TournamentResult]:
  """Generates, judges every pair and writes one report per judge.

  Args:
    policies: {name: run directory} in table order; "SFT" is added first.
    sft_dir: the SFT run (reference μ, and a policy of the tournament).
    pm_dir: the preference-model run (a judge; needed without `judge_list`).
    out_dir: generations/ and one folder per judge (report.md, CSVs, PNGs).
    num_prompts: prompts of `split` to use (0: all).
    split: 'test' (default) or 'valid'.
    p_star: also judge with the synthetic world's exact P* (without
      `judge_list`).
    seed: sampling seed.
    judge_list: {key: (judge, average_orders)} to use instead of the
      learned PM (and P*), e.g. an LLM judge (`nlhf_jax.evaluate`).
    log: progress printer.

  Returns:
    {judge key: tournament.TournamentResult}.

  Raises:
    ConfigError: a workdir without a run spec, or of the wrong kind; no
      judge.
  """
  runs = policy_runs(policies, sft_dir)
  if judge_list is None:
    if pm_dir is None:
      raise ConfigError("evaluate needs pm_dir or a judge_list.")
    judge_list = make_judges(judge_run(pm_dir), p_star)
  prompts = load_prompt_sets(runs, split, num_prompts)
  shared = prompts[SFT_NAME]
  log(f"Generating {len(shared.texts)} summaries per policy ({split} "
      "split, temperature 1).")
  gens = generate_all(runs, prompts, reference=runs[SFT_NAME],
                      out_dir=out_dir, seed=seed, log=log)
  results = {}
  sft_data = runs[SFT_NAME].data
  for key, (judge, average) in judge_list.items():
    start = time.perf_counter()
    title = JUDGE_TITLES.get(key, key)
    result = tournament.run_tournament(
        shared.texts, {n: gens[n].summaries for n in runs}, judge,
        references=shared.references, baseline=SFT_NAME,
        kl={n: gens[n].kl for n in runs},
        token_counter=lambda s: len(sft_data.encode(s)),
        average_orders=average, seed=seed)
    report_lib.write_report(os.path.join(out_dir, key), result,
                            title=f"Tournament judged by {title}")
    results[key] = result
    log(f"  tournament judged by {title}: "
        f"{time.perf_counter() - start:.0f}s")
  return results


def write_summary(out_dir: str, results: Mapping[str, Any], *, title: str,
                  intro: str = "", curves: Optional[Mapping[str, str]] = None,
                  notes: str = "") -> str:
  """Writes `out_dir/report.md` with every judge's tables and figures.

  Args:
    out_dir: folder holding the per-judge report folders (`evaluate`).
    results: {judge key: TournamentResult}.
    title: heading.
    intro: Markdown before the tables.
    curves: {metric: PNG path} of the training curves.
    notes: Markdown after the tables.

  Returns:
    The path of report.md.
  """
  parts = [f"# {title}", "", intro.strip(), ""]
  for key, result in results.items():
    parts += [f"## Judged by {JUDGE_TITLES.get(key, key)}", "",
              report_lib.win_rate_markdown(result),
              report_lib.unanswered_markdown(result),
              f"![heatmap]({key}/win_rates.png)", "",
              report_lib.policy_stats_markdown(result),
              f"CSV: [{key}/win_rates.csv]({key}/win_rates.csv), "
              f"[{key}/win_rate_cells.csv]({key}/win_rate_cells.csv), "
              f"[{key}/policy_stats.csv]({key}/policy_stats.csv).", ""]
    if len(result.policies) > 1:
      parts += [f"### Which differences are significant ({key})", "",
                significance.markdown(significance.pairwise_tests(result)),
                f"Data: [{key}/pair_tests.csv]({key}/pair_tests.csv).", ""]
      parts += report_lib.pooled_game_section(
          exploitability.pooled_game(result), f"{key}/pooled_game.csv",
          level="###")
  if curves:
    parts += ["## Training curves", ""]
    parts += [f"![{m}]({os.path.relpath(p, out_dir)})" for m, p in
              curves.items()] + [""]
  if notes.strip():
    parts += ["## Notes", "", notes.strip(), ""]
  path = os.path.join(out_dir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  return path


def report(policies: Mapping[str, str], *, sft_dir: str, pm_dir: str,
           out_dir: str, title: str, num_prompts: int, split: str = "test",
           p_star: bool = False, seed: int = 0, intro: str = "",
           notes: Callable[[Mapping[str, Any]], str] = lambda results: "",
           curve_runs: Optional[Mapping[str, str]] = None,
           curve_metrics: Sequence[str] = CURVE_METRICS,
           log: Log = print) -> str:
  """`evaluate`, the training curves and `write_summary`; returns report.md.

  Args:
    policies, sft_dir, pm_dir, out_dir, num_prompts, split, p_star, seed,
      log: as for `evaluate`.
    title, intro: as for `write_summary`.
    notes: Markdown after the tables, from the results.
    curve_runs: {name: run directory} whose metrics.jsonl are plotted
      (default: `policies`) into `out_dir/curves/`.
    curve_metrics: the metrics to plot when present.
  """
  results = evaluate(policies, sft_dir=sft_dir, pm_dir=pm_dir,
                     out_dir=out_dir, num_prompts=num_prompts, split=split,
                     p_star=p_star, seed=seed, log=log)
  curves = training_curves(policies if curve_runs is None else curve_runs,
                           os.path.join(out_dir, "curves"), curve_metrics)
  return write_summary(out_dir, results, title=title, intro=intro,
                       curves=curves, notes=notes(results))
