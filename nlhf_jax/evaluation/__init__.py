"""Evaluation: pairwise tournaments, confidence intervals, reports.

Modules (import the ones you need; importing this package loads nothing,
so `rouge` or `intervals` do not pull in matplotlib):

  generation   samples and the preference-model judge from checkpoints
  pipeline     generate, judge and report a set of runs from their specs
  intervals    Clopper–Pearson intervals and `WinRate` cells
  rouge        ROUGE-1/2/L F1
  tournament   `run_tournament` -> `TournamentResult` (win-rate matrix in
               the paper's P(column ≻ row) convention + per-policy stats)
  metric_logs  the JSON-lines training-metric format
  plots        heatmap and training-curve PNGs (matplotlib Agg)
  report       CSV / Markdown tables and `report.md`

The judges themselves (the `Judge` protocol, the synthetic P* judge, the
callable (LLM) adapter, `order_averaged`) are `nlhf_jax.judges.text`.
No TensorFlow anywhere in this package; the tournament, intervals, ROUGE,
logs, plots and report need numpy, scipy and matplotlib only
(`generation` and `pipeline` run JAX models).

Typical use:

  from nlhf_jax.evaluation import report, tournament
  from nlhf_jax.judges import text
  result = tournament.run_tournament(
      prompts, {"SFT": sft, "RLHF": rlhf, "MD1": md1},
      text.synthetic_judge(), references=refs, baseline="SFT")
  report.write_report("eval_out", result, notes="...")
"""
