#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs nlhf_jax at a pinned git ref on every worker of the TPU VM slice:
# clone (or fetch), check out the ref, create a venv, pip install -e '.[tpu]'.
# Safe to re-run: it updates the checkout and reinstalls.
set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "${LAUNCH_DIR}/lib.sh"
# shellcheck source=env.sh
source "${LAUNCH_DIR}/env.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [--dry-run] [--worker=all|N]

On each worker of \$TPU_NAME: clones \$REPO_URL into ~/\$REMOTE_DIR (or
fetches), checks out \$REPO_REF, creates \$REMOTE_DIR/.venv with \$PYTHON_BIN
(apt-installing it when missing) and runs pip install -e '.[tpu]'.

REPO_URL defaults to this checkout's 'origin' remote and REPO_REF to its HEAD
commit: push first, or set REPO_REF to a pushed branch, tag or commit.

Options:
  --dry-run     print the gcloud command instead of running it (or DRY_RUN=1)
  --worker=W    only set up worker W (default: all)
  -h, --help    show this help

Required: PROJECT. Other settings and their defaults: launch/env.sh.
EOF
}

# Prints the bash script that each worker runs.
remote_setup_script() {
  local py dir url ref
  py="$(quote_word "${PYTHON_BIN}")"
  dir="$(quote_word "${REMOTE_DIR}")"
  url="$(quote_word "${REPO_URL}")"
  ref="$(quote_word "${REPO_REF}")"
  local install_python="echo \"error: \$(hostname): no ${py}\" >&2; exit 1"
  if [[ "${PYTHON_BIN}" =~ ^python3\.[0-9]+$ ]]; then
    install_python="sudo apt-get update -q &&"
    install_python+=" sudo apt-get install -y -q ${py} ${py}-venv"
  fi
  cat <<EOF
set -euo pipefail
if ! command -v ${py} >/dev/null; then ${install_python}; fi
if [ ! -d ${dir}/.git ]; then git clone --quiet ${url} ${dir}; fi
cd ${dir}
git remote set-url origin ${url}
if git fetch --quiet origin ${ref} 2>/dev/null; then
  git checkout --quiet --detach FETCH_HEAD
else  # Servers that refuse to fetch a bare commit id.
  git fetch --quiet --tags origin && git checkout --quiet --detach ${ref}
fi
echo "\$(hostname): nlhf_jax at \$(git rev-parse HEAD)"
[ -x .venv/bin/python ] || ${py} -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[tpu]'
.venv/bin/python -c 'import jax, nlhf_jax; print("jax", jax.__version__)'
EOF
}

# Warns when the local checkout has changes the workers will not get; with
# argument 1, also when REPO_REF (the local HEAD) is on no remote branch.
warn_if_not_pushed() {
  local check_ref="$1"
  local changes branches
  changes="$(git -C "${LAUNCH_DIR}" status --porcelain --untracked-files=no \
    2>/dev/null || true)"
  if [[ -n "${changes}" ]]; then
    log "warning: uncommitted changes in this checkout are not installed" \
      "on the workers"
  fi
  if [[ "${check_ref}" == 1 ]]; then
    branches="$(git -C "${LAUNCH_DIR}" branch -r --contains "${REPO_REF}" \
      2>/dev/null || true)"
    [[ -n "${branches}" ]] || log "warning: HEAD ${REPO_REF} is on no" \
      "remote-tracking branch; push it or the workers cannot fetch it"
  fi
}

main() {
  local worker="all" ref_is_local_head=0
  is_dry_run || true  # Rejects a bad DRY_RUN value before anything else.
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --dry-run) export DRY_RUN=1 ;;
      --worker=*) worker="${1#--worker=}" ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
  require_worker "${worker}"
  if [[ -z "${REPO_URL}" ]]; then
    REPO_URL="$(git -C "${LAUNCH_DIR}" remote get-url origin 2>/dev/null)" ||
      die "REPO_URL is not set and this checkout has no 'origin' remote"
  fi
  if [[ -z "${REPO_REF}" ]]; then
    REPO_REF="$(git -C "${LAUNCH_DIR}" rev-parse HEAD 2>/dev/null)" ||
      die "REPO_REF is not set and the HEAD commit of this checkout is unknown"
    ref_is_local_head=1
  fi
  require_vars PROJECT ZONE TPU_NAME REPO_URL REPO_REF REMOTE_DIR PYTHON_BIN
  warn_if_not_pushed "${ref_is_local_head}"
  log "installing ${REPO_URL} at ${REPO_REF} on worker(s) ${worker}" \
    "of ${TPU_NAME}"
  local script
  script="$(remote_setup_script)"
  show_script_if_dry_run "script each worker runs with bash:" "${script}"
  tpu_ssh "${worker}" "bash -c $(quote_word "${script}")"
}

main "$@"
