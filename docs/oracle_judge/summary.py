"""The README's oracle-judge table from the sweeps of docs/oracle_judge/run.sh.

  python docs/oracle_judge/summary.py OUT_DIR > docs/oracle_judge/summary.md

For every OUT_DIR/lr_<lr>_seed_<seed>/report, judged by P* and by the
learned PM: each policy's win rate against SFT, the P*-trained policy's
win rate against the PM-trained one (95% Clopper-Pearson intervals on the
fractional win count, n = the test prompts), and each policy's KL to SFT
(mean of the per-sample estimate Σ log π − log μ, ± standard error).
"""

import csv
import pathlib
import re
import sys

P_STAR, PM = "nash_md_beta_0125_p_star", "nash_md_beta_0125_pm"


def _cells(path: pathlib.Path) -> dict[tuple[str, str], dict[str, str]]:
  with open(path, encoding="utf-8") as f:
    return {(r["row"], r["column"]): r for r in csv.DictReader(f)}


def _stats(path: pathlib.Path) -> dict[str, dict[str, str]]:
  with open(path, encoding="utf-8") as f:
    return {r["policy"]: r for r in csv.DictReader(f)}


def _rate(cell: dict[str, str]) -> str:
  return (f"{float(cell['win_rate']):.3f} [{float(cell['ci_low']):.3f}, "
          f"{float(cell['ci_high']):.3f}]")


def rows(out_dir: pathlib.Path):
  """One Markdown table row per (sweep, judge of the tournament)."""
  for sweep in sorted(out_dir.glob("lr_*_seed_*")):
    lr, seed = re.match(r"lr_(.+)_seed_(\d+)", sweep.name).groups()
    for judge in ("p_star", "preference_model"):
      report = sweep / "report" / judge
      if not (report / "win_rate_cells.csv").exists():
        continue
      cells, stats = _cells(report / "win_rate_cells.csv"), _stats(
          report / "policy_stats.csv")
      kl = lambda p: (f"{float(stats[p]['kl_mean']):.2f} ± "
                      f"{float(stats[p]['kl_stderr']):.2f}")
      n = cells[("SFT", P_STAR)]["num_samples"]
      yield (f"| {lr} | {seed} | {'P*' if judge == 'p_star' else 'PM'} | "
             f"{_rate(cells[('SFT', P_STAR)])} | {_rate(cells[('SFT', PM)])} "
             f"| {_rate(cells[(PM, P_STAR)])} | {kl(P_STAR)} | {kl(PM)} | "
             f"{n} |")


def main(out_dir: str) -> None:
  print("| lr | seed | judged by | P*-trained vs SFT | PM-trained vs SFT | "
        "P*-trained vs PM-trained | KL P*-trained | KL PM-trained | n |")
  print("|---|---|---|---|---|---|---|---|---|")
  for row in rows(pathlib.Path(out_dir)):
    print(row)


if __name__ == "__main__":
  main(sys.argv[1])
