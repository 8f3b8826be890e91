# shellcheck shell=bash
# Settings shared by the TPU launch scripts. Sourced, never executed; it only
# sets defaults, so `source launch/env.sh` in your own shell is safe too.
#
# Every value can be overridden by exporting it first, e.g.
#   export PROJECT=my-project TPU_NAME=nlhf-v5e-16
# or by putting the exports in a file named by LAUNCH_ENV_FILE, which is
# sourced before the defaults below. No secrets belong here: gcloud uses your
# own credentials (`gcloud auth login`).

if [[ -n "${LAUNCH_ENV_FILE:-}" ]]; then
  [[ -r "${LAUNCH_ENV_FILE}" ]] || {
    echo "error: LAUNCH_ENV_FILE='${LAUNCH_ENV_FILE}' is not readable" >&2
    return 1
  }
  # shellcheck disable=SC1090  # A user-chosen file.
  source "${LAUNCH_ENV_FILE}"
fi

# Google Cloud project; required, no default.
export PROJECT="${PROJECT:-}"
# Zone that offers the accelerator type (v5e: us-west4-a, us-east5-b, ...).
export ZONE="${ZONE:-us-west4-a}"
# TPU VM (node) name, and the queued resource that requests it.
export TPU_NAME="${TPU_NAME:-nlhf-${USER:-user}}"
export QUEUED_RESOURCE="${QUEUED_RESOURCE:-${TPU_NAME}}"
# Slice type and TPU VM image; they must match (v5e: v2-alpha-tpuv5-lite,
# v6e: v2-alpha-tpuv6e, v4: tpu-ubuntu2204-base).
export ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5litepod-16}"
export RUNTIME_VERSION="${RUNTIME_VERSION:-v2-alpha-tpuv5-lite}"
# on-demand, spot (preemptible, cheaper) or reserved (needs a reservation).
export CAPACITY="${CAPACITY:-on-demand}"
# Seconds create_tpu.sh waits for the queued resource to become ACTIVE, and
# seconds between two state checks.
export CREATE_TIMEOUT_S="${CREATE_TIMEOUT_S:-7200}"
export POLL_INTERVAL_S="${POLL_INTERVAL_S:-30}"

# Code installed on the workers: a git URL the workers can clone, and the ref
# (commit, tag or branch) to pin. setup_worker.sh defaults them to this
# checkout's `origin` remote and its HEAD commit, which must be pushed.
export REPO_URL="${REPO_URL:-}"
export REPO_REF="${REPO_REF:-}"
# Checkout directory on each worker, relative to the remote home directory
# (or absolute). The virtual environment lives in ${REMOTE_DIR}/.venv.
export REMOTE_DIR="${REMOTE_DIR:-nlhf_jax}"
# Python used on the workers to create the venv (setup.py needs 3.11);
# setup_worker.sh apt-installs it when missing.
export PYTHON_BIN="${PYTHON_BIN:-python3.11}"
# Per-worker logs of run_on_pod.sh, relative to REMOTE_DIR (or absolute).
export LOG_DIR="${LOG_DIR:-logs}"

# Storage for run outputs. Multi-host checkpoints need storage every worker
# can reach, so point the workdir at a bucket, e.g. BUCKET=gs://my-bucket.
export BUCKET="${BUCKET:-}"
export WORKDIR="${WORKDIR:-${BUCKET:+${BUCKET}/nlhf_jax}}"

# XLA/libtpu flags exported on every worker before the entry point starts
# (space-separated, e.g. "--xla_tpu_enable_async_collective_fusion=true").
export LIBTPU_INIT_ARGS="${LIBTPU_INIT_ARGS:-}"
# Extra flags for every `gcloud compute tpus tpu-vm ssh`, space-separated,
# e.g. "--internal-ip" or "--tunnel-through-iap".
export GCLOUD_SSH_FLAGS="${GCLOUD_SSH_FLAGS:-}"
