#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Requests a TPU VM slice through a queued resource and waits until it is
# ACTIVE (or fails, or CREATE_TIMEOUT_S passes).
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "${LAUNCH_DIR}/lib.sh"
# shellcheck source=env.sh
source "${LAUNCH_DIR}/env.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--no-wait | --wait-only]

Creates queued resource \$QUEUED_RESOURCE for TPU VM \$TPU_NAME
(\$ACCELERATOR_TYPE, runtime \$RUNTIME_VERSION) in \$PROJECT/\$ZONE, then polls
its state every \$POLL_INTERVAL_S s until ACTIVE, for at most
\$CREATE_TIMEOUT_S s.

Options:
  --dry-run    print the gcloud commands instead of running them (or DRY_RUN=1)
  --no-wait    return right after the request is queued
  --wait-only  do not create anything; wait for an existing request
  -h, --help   show this help

Required: PROJECT. Other settings and their defaults: launch/env.sh.
EOF
}

main() {
  local mode="create_and_wait"
  is_dry_run || true  # Rejects a bad DRY_RUN value before anything else.
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --no-wait) mode="create" ;;
      --wait-only) mode="wait" ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
  require_vars PROJECT ZONE TPU_NAME QUEUED_RESOURCE ACCELERATOR_TYPE \
    RUNTIME_VERSION
  require_int CREATE_TIMEOUT_S
  require_number POLL_INTERVAL_S

  if [[ "${mode}" != "wait" ]]; then
    create_queued_resource
  fi
  if [[ "${mode}" != "create" ]]; then
    wait_until_active
  fi
}

create_queued_resource() {
  local capacity_flags=()
  case "${CAPACITY}" in
    on-demand) ;;
    spot) capacity_flags=(--spot) ;;
    reserved) capacity_flags=(--reserved) ;;
    *) die "CAPACITY must be on-demand, spot or reserved, got '${CAPACITY}'" ;;
  esac
  log "requesting ${ACCELERATOR_TYPE} as ${TPU_NAME}" \
    "(queued resource ${QUEUED_RESOURCE})"
  run gcloud compute tpus queued-resources create "${QUEUED_RESOURCE}" \
    --project="${PROJECT}" --zone="${ZONE}" --node-id="${TPU_NAME}" \
    --accelerator-type="${ACCELERATOR_TYPE}" \
    --runtime-version="${RUNTIME_VERSION}" "${capacity_flags[@]}"
}

# Polls the queued resource state until ACTIVE; fails on FAILED/SUSPENDED or
# after CREATE_TIMEOUT_S seconds (the request then stays queued).
wait_until_active() {
  local describe=(gcloud compute tpus queued-resources describe
    "${QUEUED_RESOURCE}" --project="${PROJECT}" --zone="${ZONE}"
    --format=value\(state.state\))
  if is_dry_run; then
    run "${describe[@]}"
    log "dry run: would repeat this every ${POLL_INTERVAL_S} s until ACTIVE" \
      "(timeout ${CREATE_TIMEOUT_S} s)"
    return 0
  fi
  echo "+ $(quote_cmd "${describe[@]}")  # every ${POLL_INTERVAL_S} s" >&2
  local start="${SECONDS}" state
  while true; do
    state="$("${describe[@]}")" ||
      die "could not read the state of queued resource '${QUEUED_RESOURCE}'"
    case "${state}" in
      ACTIVE)
        log "${TPU_NAME} is ACTIVE after $((SECONDS - start)) s"
        return 0
        ;;
      FAILED | SUSPENDING | SUSPENDED)
        die "queued resource '${QUEUED_RESOURCE}' is ${state}; see" \
          "'gcloud compute tpus queued-resources describe ${QUEUED_RESOURCE}" \
          "--zone=${ZONE}', then delete it with launch/teardown.sh"
        ;;
    esac
    if ((SECONDS - start >= CREATE_TIMEOUT_S)); then
      die "queued resource '${QUEUED_RESOURCE}' is still" \
        "${state:-in an unknown state} after ${CREATE_TIMEOUT_S} s" \
        "(CREATE_TIMEOUT_S); it stays queued: wait again with" \
        "'$(basename "$0") --wait-only' or delete it with launch/teardown.sh"
    fi
    log "state ${state:-unknown} after $((SECONDS - start)) s; waiting"
    sleep "${POLL_INTERVAL_S}"
  done
}

main "$@"
