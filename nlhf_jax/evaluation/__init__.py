"""Evaluation: judges, pairwise tournaments, confidence intervals, reports.

Modules (import the ones you need; importing this package loads nothing,
so `rouge` or `intervals` do not pull in matplotlib):

  judges       the `Judge` protocol; the synthetic P* judge, callable (LLM)
               and preference-model adapters; `order_averaged`
  intervals    Clopper–Pearson intervals and `WinRate` cells
  rouge        ROUGE-1/2/L F1
  tournament   `run_tournament` -> `TournamentResult` (win-rate matrix in
               the paper's P(column ≻ row) convention + per-policy stats)
  metric_logs  the JSON-lines training-metric format
  plots        heatmap and training-curve PNGs (matplotlib Agg)
  report       CSV / Markdown tables and `report.md`

No TensorFlow anywhere in this package; numpy, scipy and matplotlib only.

Typical use:

  from nlhf_jax.evaluation import judges, report, tournament
  result = tournament.run_tournament(
      prompts, {"SFT": sft, "RLHF": rlhf, "MD1": md1},
      judges.synthetic_judge(), references=refs, baseline="SFT")
  report.write_report("eval_out", result, notes="...")
"""
