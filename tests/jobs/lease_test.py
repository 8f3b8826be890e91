"""The lease's heartbeat really refreshes the lease file."""

import json
import os
import time

from nlhf_jax.jobs import lease


def test_heartbeats_update_the_lease_and_leave_no_temporary_file(tmp_path):
  held = lease.Lease(str(tmp_path), heartbeat_s=0.05)
  with held:
    path = tmp_path / lease.FILE_NAME
    first = json.loads(path.read_text())["heartbeat"]
    deadline = time.time() + 10
    while json.loads(path.read_text())["heartbeat"] == first:
      assert time.time() < deadline, "the heartbeat never reached the file"
      time.sleep(0.02)
  assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
