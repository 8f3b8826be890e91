#!/usr/bin/env bash
# Nash-MD-PG (beta 0.125) trained against the exact P* vs against the learned
# preference model, on the demo's world, SFT and PM (run `make demo` first, or
# `python -m nlhf_jax.demo --methods MD1`). For each online learning rate
# (the demo's 3e-4 and 3e-3) and online seed (0, 1), one sweep of the two
# experiments in gin_configs/experiments/oracle with the demo's sizes,
# judged by P* and by the PM on the 300 test prompts.
#   bash docs/oracle_judge/run.sh [DEMO_DIR] [OUT_DIR]
set -euo pipefail
DEMO=${1:-demo_out}
OUT=${2:-oracle_out}
PY=${PY:-.venv/bin/python}
SIZES=(--gin.t5_tiny/t5.T5Config.vocab_size=640 --gin.t5_tiny/t5.T5Config.d_model=32
       --gin.t5_tiny/t5.T5Config.num_heads=2 --gin.t5_tiny/t5.T5Config.d_kv=16
       --gin.t5_tiny/t5.T5Config.d_ff=64 --gin.t5_tiny/t5.T5Config.num_encoder_layers=2
       --gin.t5_tiny/t5.T5Config.num_decoder_layers=2 --gin.INPUT_LENGTH=192
       --gin.TARGET_LENGTH=40 --gin.LOG_EVERY=25 --gin.TRAIN_STEPS=150 --gin.BATCH_SIZE=32
       --gin.RESPONSE_LENGTH=32 --gin.PACKED_LENGTH=256 --gin.CHECKPOINT_EVERY=50)
for LR in ${LRS:-3e-4 3e-3}; do
  for SEED in ${SEEDS:-0 1}; do
    JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3 "$PY" -m nlhf_jax.sweep \
      --experiments gin_configs/experiments/oracle \
      --model_gin gin_configs/models/tiny.gin --model_gin gin_configs/backends/cpu.gin \
      --data_dir "$DEMO/world" --vocabulary "$DEMO/world/sp640.model" \
      --sft_dir "$DEMO/runs/sft" --pm_dir "$DEMO/runs/pm" \
      --workdir "$OUT/lr_${LR}_seed_${SEED}" --eval_prompts 300 --p_star \
      "${SIZES[@]}" --gin.LEARNING_RATE="$LR" --gin.SEED="$SEED"
  done
done
