#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Runs `python -m nlhf_jax.main ARGS...` on every worker of the TPU VM slice at
# once (the same command everywhere; jax.distributed.initialize() inside the
# entry point finds the other workers). Each worker logs to its own file;
# worker 0's log streams to this console.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "${LAUNCH_DIR}/lib.sh"
# shellcheck source=env.sh
source "${LAUNCH_DIR}/env.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [OPTIONS] [--] MAIN_ARGS...

Runs '.venv/bin/python -m nlhf_jax.main MAIN_ARGS...' in ~/\$REMOTE_DIR on all
workers of \$TPU_NAME (install first with launch/setup_worker.sh). Worker N
writes \$REMOTE_DIR/\$LOG_DIR/RUN_NAME-workerN.log; worker 0's log is also
streamed here, and a failing worker's last lines are printed.

Options (before MAIN_ARGS; the first other argument starts MAIN_ARGS):
  --dry-run          print the gcloud command, do not run it (or DRY_RUN=1)
  --detach           start in the background (nohup) and return; logs as above
  --name=RUN_NAME    log file prefix (default: \$RUN_NAME or run-DATE-TIME)
  --env=NAME=VALUE   export NAME=VALUE on the workers (repeatable)
  --worker=all|N     run on all workers (default) or only worker N (debugging)
  -h, --help         show this help

Example:
  $(basename "$0") --gin_file=gin_configs/experiments/nash_md.gin \\
    --gin.NUM_STEPS=1000

Required: PROJECT. Other settings and their defaults: launch/env.sh.
EOF
}

# Prints the bash script each worker runs. Arguments: run name, detach (0/1),
# the NAME=VALUE exports (newline-separated), then the entry point arguments.
remote_run_script() {
  local run_name="$1" detach="$2" exports="$3"
  shift 3
  local metadata_url="http://metadata.google.internal/computeMetadata/v1"
  metadata_url+="/instance/attributes/agent-worker-number"
  local assignment
  echo "set -euo pipefail"
  echo "cd $(quote_word "${REMOTE_DIR}")"
  # The worker index comes from the TPU VM metadata server.
  echo "worker=\"\${TPU_WORKER_ID:-\$(curl -sf -m 10" \
    "-H 'Metadata-Flavor: Google' ${metadata_url} || hostname)}\""
  echo "mkdir -p $(quote_word "${LOG_DIR}")"
  echo "log=$(quote_word "${LOG_DIR}/${run_name}")-worker\${worker}.log"
  if [[ -n "${LIBTPU_INIT_ARGS}" ]]; then
    echo "export $(quote_word "LIBTPU_INIT_ARGS=${LIBTPU_INIT_ARGS}")"
  fi
  while IFS= read -r assignment; do
    [[ -z "${assignment}" ]] || echo "export $(quote_word "${assignment}")"
  done <<<"${exports}"
  echo "cmd=($(quote_cmd .venv/bin/python -m nlhf_jax.main "$@"))"
  if [[ "${detach}" == 1 ]]; then
    cat <<'EOF'
setsid nohup "${cmd[@]}" >"${log}" 2>&1 </dev/null &
echo "$!" >"${log%.log}.pid"
echo "worker ${worker} ($(hostname)): started pid $!," \
  "log $(readlink -f "${log}")"
EOF
  else
    cat <<'EOF'
if [ "${worker}" = 0 ]; then
  "${cmd[@]}" 2>&1 | tee "${log}"
else
  "${cmd[@]}" >"${log}" 2>&1 || {
    status=$?
    echo "worker ${worker} ($(hostname)) failed with status ${status};" \
      "log $(readlink -f "${log}"):" >&2
    tail -n 20 "${log}" | sed "s/^/[worker ${worker}] /" >&2
    exit "${status}"
  }
fi
EOF
  fi
}

main() {
  local detach=0 worker="all" run_name="${RUN_NAME:-}" exports=""
  is_dry_run || true  # Rejects a bad DRY_RUN value before anything else.
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --detach) detach=1 ;;
      --name=*) run_name="${1#--name=}" ;;
      --env=*)
        [[ "${1#--env=}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] ||
          die "--env needs NAME=VALUE, got '${1#--env=}'"
        exports+="${1#--env=}"$'\n'
        ;;
      --worker=*) worker="${1#--worker=}" ;;
      --) shift; break ;;
      *) break ;;
    esac
    shift
  done
  require_main_args "$#" usage
  require_worker "${worker}"
  run_name="${run_name:-run-$(date +%Y%m%d-%H%M%S)}"
  [[ "${run_name}" =~ ^[A-Za-z0-9_.-]+$ ]] ||
    die "run name may only hold letters, digits, '_', '.' and '-'," \
      "got '${run_name}'"
  require_vars PROJECT ZONE TPU_NAME REMOTE_DIR LOG_DIR

  local script
  script="$(remote_run_script "${run_name}" "${detach}" "${exports}" "$@")"
  log "running on worker(s) ${worker} of ${TPU_NAME}:" \
    "nlhf_jax.main $(quote_cmd "$@")"
  show_script_if_dry_run "script each worker runs with bash:" "${script}"
  tpu_ssh "${worker}" "bash -c $(quote_word "${script}")"
  if [[ "${detach}" == 1 ]]; then
    log "follow worker 0 with: gcloud compute tpus tpu-vm ssh ${TPU_NAME}" \
      "--project=${PROJECT} --zone=${ZONE} --worker=0" \
      "--command='tail -f ${REMOTE_DIR}/${LOG_DIR}/${run_name}-worker0.log'"
  fi
}

main "$@"
