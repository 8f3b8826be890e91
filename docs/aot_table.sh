#!/usr/bin/env bash
# Produces the README's ahead-of-time memory table (CPU machine + libtpu).
# Each line compiles one configuration; results are appended to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/aot_table.jsonl}
PY=${PY:-.venv/bin/python}
aot() { "$PY" -m nlhf_jax.aot --json="$OUT" "$@"; }
L=(--gin_file=gin_configs/models/large.gin --gin_file=gin_configs/models/xl.gin
   --gin.POLICY_MODEL=@t5_large/t5.T5Config\(\) --gin.PREFERENCE_MODEL=@t5_xl/t5.T5Config\(\)
   --gin.t5_large/t5.T5Config.scan_layers=True --gin.t5_xl/t5.T5Config.scan_layers=True)
X=(--gin_file=gin_configs/models/xl.gin --gin_file=gin_configs/models/xxl.gin
   --gin.POLICY_MODEL=@t5_xl/t5.T5Config\(\) --gin.PREFERENCE_MODEL=@t5_xxl/t5.T5Config\(\)
   --gin.t5_xl/t5.T5Config.scan_layers=True --gin.t5_xxl/t5.T5Config.scan_layers=True)
FULL_L=(--gin.t5_large/t5.T5Config.remat_policy=\"full\" --gin.t5_xl/t5.T5Config.remat_policy=\"full\")
FULL_X=(--gin.t5_xl/t5.T5Config.remat_policy=\"full\" --gin.t5_xxl/t5.T5Config.remat_policy=\"full\")
# Policy L / preference model XL (the paper's pair) on v5e-16, without and with remat.
aot "${L[@]}" --gin_file=gin_configs/mesh/v5e_16.gin --topology=v5e-16
aot "${L[@]}" "${FULL_L[@]}" --gin_file=gin_configs/mesh/v5e_16.gin --topology=v5e-16
aot "${L[@]}" "${FULL_L[@]}" --gin_file=gin_configs/mesh/v4_32.gin --topology=v4-32 --programs=nash_md
# Policy XL / preference model XXL.
aot "${X[@]}" "${FULL_X[@]}" --gin_file=gin_configs/mesh/v5e_64.gin --topology=v5e-64 --programs=nash_md
aot "${X[@]}" "${FULL_X[@]}" --gin_file=gin_configs/mesh/v5e_256.gin --topology=v5e-256 --programs=nash_md
"$PY" -m nlhf_jax.aot --table="$OUT"
