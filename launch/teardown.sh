#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Deletes the queued resource and, with it, the TPU VM slice it holds.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "${LAUNCH_DIR}/lib.sh"
# shellcheck source=env.sh
source "${LAUNCH_DIR}/env.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--yes] [--async]

Deletes queued resource \$QUEUED_RESOURCE in \$PROJECT/\$ZONE together with
its TPU VM \$TPU_NAME (gcloud ... queued-resources delete --force). Anything
stored only on the workers (e.g. \$REMOTE_DIR/\$LOG_DIR) is lost; outputs in
\$BUCKET stay.

Options:
  --dry-run   print the gcloud command instead of running it (or DRY_RUN=1)
  --yes       do not ask gcloud for confirmation
  --async     return without waiting for the deletion to finish
  -h, --help  show this help

Required: PROJECT. Other settings and their defaults: launch/env.sh.
EOF
}

main() {
  local extra_flags=()
  is_dry_run || true  # Rejects a bad DRY_RUN value before anything else.
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --yes) extra_flags+=(--quiet) ;;
      --async) extra_flags+=(--async) ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
  require_vars PROJECT ZONE QUEUED_RESOURCE
  log "deleting queued resource ${QUEUED_RESOURCE} and its TPU VM ${TPU_NAME}"
  run gcloud compute tpus queued-resources delete "${QUEUED_RESOURCE}" \
    --project="${PROJECT}" --zone="${ZONE}" --force "${extra_flags[@]}"
}

main "$@"
