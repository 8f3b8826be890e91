#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One SLURM task of a slurm_gpu.sbatch job: runs the entry point as JAX process
# $SLURM_PROCID of $NUM_PROCESSES. Writes $LOG_DIR/task-N.log; task 0 also
# prints its output, so it lands in the job's output file.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "${LAUNCH_DIR}/lib.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--] MAIN_ARGS...

Started by srun from launch/slurm_gpu.sbatch, once per task. Runs
  \$PYTHON -m nlhf_jax.main --coordinator_address=\$COORDINATOR_ADDRESS \\
    --num_processes=\$NUM_PROCESSES --process_id=\$SLURM_PROCID MAIN_ARGS...
and writes its output to \$LOG_DIR/task-\$SLURM_PROCID.log (task 0: also to
stdout).
All five variables are required; slurm_gpu.sbatch sets them.
EOF
}

main() {
  is_dry_run || true  # Rejects a bad DRY_RUN value before anything else.
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --) shift; break ;;
      *) break ;;
    esac
    shift
  done
  require_main_args "$#" usage
  require_vars PYTHON COORDINATOR_ADDRESS NUM_PROCESSES SLURM_PROCID LOG_DIR
  require_int NUM_PROCESSES
  require_int SLURM_PROCID
  ((SLURM_PROCID < NUM_PROCESSES)) ||
    die "SLURM_PROCID=${SLURM_PROCID} is not below" \
      "NUM_PROCESSES=${NUM_PROCESSES}"

  local log_file="${LOG_DIR}/task-${SLURM_PROCID}.log"
  local cmd=("${PYTHON}" -m nlhf_jax.main
    --coordinator_address="${COORDINATOR_ADDRESS}"
    --num_processes="${NUM_PROCESSES}" --process_id="${SLURM_PROCID}" "$@")
  run mkdir -p "${LOG_DIR}"
  if is_dry_run; then
    run "${cmd[@]}"
  elif ((SLURM_PROCID == 0)); then
    run "${cmd[@]}" 2>&1 | tee "${log_file}"
  else
    run "${cmd[@]}" >"${log_file}" 2>&1 || {
      local status=$?
      echo "task ${SLURM_PROCID} ($(hostname)) failed with status" \
        "${status}; log ${log_file}:" >&2
      tail -n 20 "${log_file}" | sed "s/^/[task ${SLURM_PROCID}] /" >&2
      exit "${status}"
    }
  fi
}

main "$@"
