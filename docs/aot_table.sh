#!/usr/bin/env bash
# Produces the README's ahead-of-time memory table (CPU machine + libtpu).
# Each row compiles one configuration (6-15 min each on a 2-core machine) and
# appends its reports to $OUT; ROWS="2 5" runs only those rows (default: all 13).
#   OUT=docs/aot_table.jsonl ROWS="1 2" bash docs/aot_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/aot_table.jsonl}
PY=${PY:-.venv/bin/python}
ROWS=${ROWS:-1 2 3 4 5 6 7 8 9 10 11 12 13}
aot() { "$PY" -m nlhf_jax.aot --json="$OUT" "$@"; }
L=(--gin_file=gin_configs/models/large.gin --gin_file=gin_configs/models/xl.gin
   --gin.POLICY_MODEL=@t5_large/t5.T5Config\(\) --gin.PREFERENCE_MODEL=@t5_xl/t5.T5Config\(\)
   --gin.t5_large/t5.T5Config.scan_layers=True --gin.t5_xl/t5.T5Config.scan_layers=True)
X=(--gin_file=gin_configs/models/xl.gin --gin_file=gin_configs/models/xxl.gin
   --gin.POLICY_MODEL=@t5_xl/t5.T5Config\(\) --gin.PREFERENCE_MODEL=@t5_xxl/t5.T5Config\(\)
   --gin.t5_xl/t5.T5Config.scan_layers=True --gin.t5_xxl/t5.T5Config.scan_layers=True)
FULL_L=(--gin.t5_large/t5.T5Config.remat_policy=\"full\" --gin.t5_xl/t5.T5Config.remat_policy=\"full\")
DOTS_L=(--gin.t5_large/t5.T5Config.remat_policy=\"dots\" --gin.t5_xl/t5.T5Config.remat_policy=\"dots\")
FULL_X=(--gin.t5_xl/t5.T5Config.remat_policy=\"full\" --gin.t5_xxl/t5.T5Config.remat_policy=\"full\")
V5E16=(--gin_file=gin_configs/mesh/v5e_16.gin --topology=v5e-16)
row() {
  case $1 in
    # Policy L / preference model XL (the paper's pair) on v5e-16: no remat, then
    # remat. The PM step uses "dots" (save matmul outputs): "full" crashes the
    # compiler of libtpu 0.0.42.1 (stack overflow) for this program.
    1) aot "${L[@]}" "${V5E16[@]}" ;;
    2) aot "${L[@]}" "${DOTS_L[@]}" "${V5E16[@]}" --programs=preference_model ;;
    3) aot "${L[@]}" "${FULL_L[@]}" "${V5E16[@]}" --programs=sft,nash_md ;;
    # The fsdp axis: the same slice with parameters replicated over the batch axis.
    4) aot "${L[@]}" "${DOTS_L[@]}" "${V5E16[@]}" --gin.partitioning.MeshConfig.data=4 \
         --gin.partitioning.MeshConfig.fsdp=1 --programs=preference_model ;;
    5) aot "${L[@]}" "${FULL_L[@]}" --gin_file=gin_configs/mesh/v4_32.gin --topology=v4-32 --programs=nash_md ;;
    # Policy XL / preference model XXL.
    6) aot "${X[@]}" "${FULL_X[@]}" --gin_file=gin_configs/mesh/v5e_64.gin --topology=v5e-64 --programs=nash_md ;;
    # v5e-256 splits the batch 128 ways (data 16 x fsdp 8): the global batch grows to 128.
    7) aot "${X[@]}" "${FULL_X[@]}" --gin_file=gin_configs/mesh/v5e_256.gin --topology=v5e-256 --programs=nash_md \
         --batch_size=128 ;;
    # The rest of the grid: L/XL on the larger slices, XL/XXL on the smaller ones.
    8) aot "${L[@]}" "${FULL_L[@]}" --gin_file=gin_configs/mesh/v5e_64.gin --topology=v5e-64 --programs=nash_md ;;
    9) aot "${L[@]}" "${FULL_L[@]}" --gin_file=gin_configs/mesh/v5e_256.gin --topology=v5e-256 --programs=nash_md \
         --batch_size=128 ;;
    10) aot "${X[@]}" "${FULL_X[@]}" "${V5E16[@]}" --programs=nash_md ;;
    11) aot "${X[@]}" "${FULL_X[@]}" --gin_file=gin_configs/mesh/v4_32.gin --topology=v4-32 --programs=nash_md ;;
    # The follow-up online steps (IPO-MD, EGPO) beside row 3's nash_md.
    12) aot "${L[@]}" "${FULL_L[@]}" "${V5E16[@]}" --programs=ipo_md,egpo ;;
    13) aot "${L[@]}" "${FULL_L[@]}" "${V5E16[@]}" --programs=nash_prox,mpo ;;
    *) echo "unknown row $1 (1-13)" >&2; return 2 ;;
  esac
}
for r in $ROWS; do
  echo "[aot_table] row $r" >&2
  row "$r"
done
"$PY" -m nlhf_jax.aot --table="$OUT"
