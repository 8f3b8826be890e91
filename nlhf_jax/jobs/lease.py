"""One writer per workdir: an exclusive lease file with a heartbeat.

A job takes `<workdir>/lease.json` before it writes anything (run spec,
checkpoints, metrics) and gives it back when it ends; in a multi-process
job only process 0 holds it. The file records the holder's host, pid,
start time and a heartbeat that a background thread refreshes every
`heartbeat_s` seconds. A second job into the same workdir is refused with a
ConfigError naming the holder, unless the lease is stale:

* the holder ran on this host and its pid no longer exists, or
* its heartbeat is older than `stale_after_s` (default 600 s, 20
  heartbeats; covers a holder on another host that died without
  cleaning up),

in which case the lease is taken over with a message. Taking over renames
the stale file away first (only one of several racing takers can rename
it), then creates the new lease with an exclusive create, so two jobs never
both win on a local or NFS disk.

Remote storage (gs://…): object stores have no exclusive create through
`etils.epath`, so there the lease is advisory: a second job started after
the first one's lease exists is refused, but two jobs started within the
same second may both proceed. Start one job per workdir on buckets.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
from typing import Any, Optional

from etils import epath

from nlhf_jax.errors import ConfigError

FILE_NAME = "lease.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def _now() -> float:
  return time.time()


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Exists, owned by another user.
  return True


def _describe(holder: dict[str, Any]) -> str:
  started = datetime.datetime.fromtimestamp(
      holder.get("started", 0)).isoformat(timespec="seconds")
  beat = _now() - holder.get("heartbeat", 0)
  return (f"pid {holder.get('pid')} on host {holder.get('host')!r} "
          f"(started {started}, last heartbeat {beat:.0f} s ago)")


class Lease:
  """The exclusive lease of one workdir (a context manager).

  Args:
    workdir: the job's workdir (created if absent).
    heartbeat_s: seconds between heartbeats.
    stale_after_s: a heartbeat older than this marks the lease stale.
  """

  def __init__(self, workdir: str, heartbeat_s: float = HEARTBEAT_S,
               stale_after_s: float = STALE_AFTER_S):
    self.path = epath.Path(workdir) / FILE_NAME
    self._heartbeat_s = heartbeat_s
    self._stale_after_s = stale_after_s
    self._record = {"host": socket.gethostname(), "pid": os.getpid(),
                    "started": _now(), "heartbeat": _now()}
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def _read(self) -> Optional[dict[str, Any]]:
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (json.JSONDecodeError, OSError):
      return {}  # Half-written by a holder that died mid-write: stale.

  def _stale_reason(self, holder: dict[str, Any]) -> Optional[str]:
    if not holder:
      return "its lease file is unreadable"
    if holder.get("host") == self._record["host"] and not _pid_alive(
        int(holder.get("pid", -1))):
      return "that process no longer exists"
    age = _now() - float(holder.get("heartbeat", 0))
    if age > self._stale_after_s:
      return (f"its heartbeat is {age:.0f} s old (> {self._stale_after_s:.0f}"
              " s)")
    return None

  def _create(self) -> bool:
    """Exclusive create of the lease file; False if it already exists."""
    text = json.dumps(self._record)
    if "://" in str(self.path):
      if self.path.exists():
        return False
      self.path.write_text(text)
      return True
    try:
      fd = os.open(str(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                   0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    return True

  def acquire(self) -> None:
    """Takes the lease (or a stale one over); ConfigError if it is held."""
    self.path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
      if self._create():
        self._start_heartbeat()
        return
      holder = self._read()
      if holder is None:
        continue  # Released between our create and read: try again.
      reason = self._stale_reason(holder)
      if reason is None:
        raise ConfigError(
            f"Workdir {str(self.path.parent)!r} is in use by "
            f"{_describe(holder)}: one job per workdir. Wait for it, stop "
            f"it, or choose another WORKDIR. (A lease whose holder died is "
            f"taken over automatically; see {FILE_NAME}.)")
      print(f"Taking over the lease of {str(self.path.parent)!r} from "
            f"{_describe(holder) if holder else 'an unknown holder'}: "
            f"{reason}.", flush=True)
      stale = self.path.parent / f"{FILE_NAME}.stale.{os.getpid()}"
      try:
        self.path.rename(stale)
        stale.unlink()
      except (FileNotFoundError, OSError):
        pass  # Another taker renamed it first; the create decides.
    raise ConfigError(f"Could not take the lease {str(self.path)!r} "
                      "(other jobs keep taking it); try again.")

  def _start_heartbeat(self) -> None:
    self._thread = threading.Thread(target=self._beat, daemon=True,
                                    name="nlhf-lease-heartbeat")
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(self._heartbeat_s):
      self._record["heartbeat"] = _now()
      tmp = self.path.parent / f"{FILE_NAME}.tmp.{os.getpid()}"
      try:
        tmp.write_text(json.dumps(self._record))
        # `replace`, not `rename`: epath's rename refuses to overwrite, so
        # every heartbeat used to fail and left the temporary file behind.
        tmp.replace(self.path)
      except OSError:
        pass  # A missed heartbeat only ages the lease.

  def release(self) -> None:
    """Stops the heartbeat and removes the lease if it is still ours."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
      holder = self._read()
      if holder and holder.get("pid") == self._record["pid"] and holder.get(
          "host") == self._record["host"]:
        self.path.unlink()

  def __enter__(self) -> "Lease":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
