# shellcheck shell=bash
# Shared helpers for the launch scripts; sourced, never executed.
#
# Every external command (gcloud, srun, python, ...) goes through `run`, which
# prints it as "+ cmd" on stderr (quoted so it can be pasted back into a shell)
# and runs it unless dry-run mode is on (DRY_RUN=1 or a script's --dry-run).

# Prints an error naming the calling script and exits with status 1.
die() {
  echo "error: $(basename "${0}"): $*" >&2
  exit 1
}

# Prints a progress message on stderr.
log() {
  echo "[$(basename "${0}")] $*" >&2
}

# Succeeds when dry-run mode is on. DRY_RUN accepts 1/true/yes and 0/false/no
# (or empty); anything else is an error rather than a silent live run.
is_dry_run() {
  case "${DRY_RUN:-0}" in
    1 | true | yes) return 0 ;;
    0 | false | no | "") return 1 ;;
    *) die "DRY_RUN must be 1/true/yes or 0/false/no, got '${DRY_RUN}'" ;;
  esac
}

# Quotes one word for a POSIX shell: plain words stay as they are, anything
# else is single-quoted (an embedded ' becomes '\'').
quote_word() {
  local word="$1"
  local escaped_quote="'\\''"
  if [[ "${word}" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "${word}"
  else
    printf "'%s'" "${word//\'/${escaped_quote}}"
  fi
}

# Quotes a whole command line word by word (see quote_word).
quote_cmd() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote_word "${word}")"
  done
  printf '%s' "${out}"
}

# Prints "+ cmd" on stderr, then runs cmd unless dry-run mode is on.
run() {
  echo "+ $(quote_cmd "$@")" >&2
  if is_dry_run; then
    return 0
  fi
  "$@"
}

# Fails with one message listing every named variable that is unset or empty.
require_vars() {
  local name missing=()
  for name in "$@"; do
    if [[ -z "${!name:-}" ]]; then
      missing+=("${name}")
    fi
  done
  if ((${#missing[@]} > 0)); then
    die "required setting(s) not set: ${missing[*]}" \
      "(export them, or see launch/README.md)"
  fi
}

# Fails unless the named variable holds a non-negative integer.
require_int() {
  local name="$1"
  if ! [[ "${!name:-}" =~ ^[0-9]+$ ]]; then
    die "${name} must be a non-negative integer, got '${!name:-}'"
  fi
}

# Fails unless the worker selector is "all" or a worker index.
require_worker() {
  [[ "$1" =~ ^(all|[0-9]+)$ ]] ||
    die "--worker must be 'all' or a worker index, got '$1'"
}

# Fails with the usage text unless arguments for the entry point were given.
# Arguments: the number of arguments, the usage function.
require_main_args() {
  if (($1 == 0)); then
    "$2" >&2
    die "no arguments for nlhf_jax.main (e.g. --gin_file=...)"
  fi
}

# Fails unless the named variable holds a non-negative number (e.g. 0.5).
require_number() {
  local name="$1"
  if ! [[ "${!name:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    die "${name} must be a non-negative number, got '${!name:-}'"
  fi
}

# Prints the first host name of a SLURM hostlist such as "gpu[003-010],cpu1".
# Uses `scontrol show hostnames` when available (override the binary with
# SCONTROL); otherwise a small parser that takes the first entry of each
# bracket: "gpu[003-010]" -> "gpu003", "rack[2-3]-n[08,11]" -> "rack2-n08".
first_host_of_nodelist() {
  local nodelist="$1" scontrol="${SCONTROL:-scontrol}" hosts
  [[ -n "${nodelist}" ]] || die "empty SLURM node list"
  if command -v "${scontrol}" >/dev/null 2>&1; then
    hosts="$("${scontrol}" show hostnames "${nodelist}")" ||
      die "'${scontrol} show hostnames ${nodelist}' failed"
    [[ -n "${hosts}" ]] ||
      die "'${scontrol} show hostnames ${nodelist}' printed nothing"
    printf '%s\n' "${hosts%%$'\n'*}"
    return 0
  fi
  local rest="${nodelist}" host="" chunk inner
  while true; do
    chunk="${rest%%[\[,]*}"
    host+="${chunk}"
    rest="${rest:${#chunk}}"
    if [[ -z "${rest}" || "${rest}" == ,* ]]; then
      break
    fi
    # rest starts with '[': take the first number of the bracketed ranges.
    [[ "${rest}" == *\]* ]] ||
      die "malformed SLURM node list '${nodelist}' (unclosed '[')"
    inner="${rest#\[}"
    inner="${inner%%\]*}"
    host+="${inner%%[,-]*}"
    rest="${rest#*\]}"
  done
  [[ -n "${host}" ]] || die "malformed SLURM node list '${nodelist}'"
  printf '%s\n' "${host}"
}

# In dry-run mode, prints a multi-line script readably (indented) on stderr,
# since the quoted copy inside the printed command is hard to read.
show_script_if_dry_run() {
  local title="$1" script="$2"
  if is_dry_run; then
    log "${title}"
    printf '    %s\n' "${script//$'\n'/$'\n'    }" >&2
  fi
}

# Runs a shell command on TPU VM workers of ${TPU_NAME} ("all" or an index)
# through `gcloud compute tpus tpu-vm ssh`, adding ${GCLOUD_SSH_FLAGS}.
tpu_ssh() {
  local worker="$1" command="$2" extra_flags=()
  read -r -a extra_flags <<<"${GCLOUD_SSH_FLAGS:-}"
  run gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --project="${PROJECT}" \
    --zone="${ZONE}" --worker="${worker}" "${extra_flags[@]}" \
    --command="${command}"
}
