"""TensorBoard scalar summaries written without TensorFlow.

An event file is a TFRecord stream of `Event` protos: one header record
(`file_version: "brain.Event:2"`), then one record per step holding a
`Summary` of scalar tensors tagged for the scalars plugin, the same records
`tf.summary.scalar` writes (TensorBoard and its `EventAccumulator` read them
as tensors). Only the `tensorboard` package's protos and record framing are
used: importing TensorFlow costs about 5 s per process, which every training
process paid for its summaries before.

Local directories only (plain `open`); `MetricWriter` uses clu's
TensorFlow writer for remote ones (gs://...).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer import record_writer
from tensorboard.util import tensor_util


class ScalarEventWriter:
  """Appends scalar summaries to a new event file in `logdir`.

  The file is `events.out.tfevents.<time>.<host>.<pid>`, the name
  TensorBoard looks for; a resumed run starts a second file in the same
  directory, and TensorBoard merges them.
  """

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    name = (f"events.out.tfevents.{int(now)}.{socket.gethostname()}."
            f"{os.getpid()}")
    self.path = os.path.join(logdir, name)
    self._records = record_writer.RecordWriter(open(self.path, "ab"))
    self._write(event_pb2.Event(wall_time=now, file_version="brain.Event:2"))
    self._metadata = scalar_metadata.create_summary_metadata(
        display_name=None, description=None)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """One event at `step` with a float32 scalar per tag; flushed."""
    values = [summary_pb2.Summary.Value(
        tag=tag, metadata=self._metadata,
        tensor=tensor_util.make_tensor_proto(np.float32(value)))
              for tag, value in scalars.items()]
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=summary_pb2.Summary(value=values)))
    self._records.flush()

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())
