"""An append-only on-disk cache of a remote judge's answers.

One JSON object per line, `{"key": ..., "p_first": ..., "answer": ...,
"soft": ...}`, appended and flushed as soon as an answer arrives, so a
process killed at any point (SIGKILL included) leaves every answer it had
received on disk; at worst the last line is cut short, and that line is
ignored (and counted) when the cache is read back. Keys are the SHA-256 of
the question (`question_key`), so two judges share an entry only when the
model, the template and the three texts are all the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from typing import Optional

from nlhf_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Answer:
  """One answered question: P(the first slot wins) and how it was read.

  Attributes:
    p_first: P(the summary shown first is better), in [0, 1].
    answer: the text the judge answered.
    soft: True when p_first came from the choice tokens' log-probabilities,
      False for a hard choice (0 or 1).
  """

  p_first: float
  answer: str
  soft: bool


def question_key(model: str, template: str, prompt: str, first: str,
                 second: str) -> str:
  """SHA-256 hex of the question (model, template text, the three texts)."""
  payload = json.dumps([model, template, prompt, first, second],
                       ensure_ascii=False, separators=(",", ":"))
  return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
  """Thread-safe {question key: Answer}, persisted to a JSONL file.

  Attributes:
    path: the file (None: in memory only).
    torn_lines: lines that could not be read back (a cut-short last line
      after a kill); they are ignored, and their questions asked again.
  """

  def __init__(self, path: Optional[str]):
    self.path = path
    self.torn_lines = 0
    self._answers: dict[str, Answer] = {}
    self._lock = threading.Lock()
    if path and os.path.exists(path):
      self._load(path)

  def _load(self, path: str) -> None:
    with open(path, encoding="utf-8") as f:
      lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        answer = Answer(float(record["p_first"]), str(record["answer"]),
                        bool(record["soft"]))
        key = str(record["key"])
      except (ValueError, KeyError, TypeError) as e:
        if number < len(lines) - 1:  # Not the last line: not a torn write.
          raise DataError(f"{path}:{number}: not a judge-cache record ({e}); "
                          "move the file away to start a fresh cache.") from e
        self.torn_lines += 1
        continue
      self._answers[key] = answer
    if self.torn_lines:  # Drop the torn tail so appends start a new line.
      with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"key": k, **dataclasses.asdict(a)}) + "\n"
                     for k, a in self._answers.items())

  def __len__(self) -> int:
    return len(self._answers)

  def get(self, key: str) -> Optional[Answer]:
    with self._lock:
      return self._answers.get(key)

  def put(self, key: str, answer: Answer) -> None:
    """Stores and (with a path) appends one line, flushed before returning."""
    line = json.dumps({"key": key, **dataclasses.asdict(answer)},
                      ensure_ascii=False) + "\n"
    with self._lock:
      self._answers[key] = answer
      if self.path:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)),
                    exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
          f.write(line)
          f.flush()
