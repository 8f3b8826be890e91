"""A loopback chat-completions server with a rule judge and injected faults.

It speaks the part of the OpenAI chat-completions API that
`nlhf_jax.judges.chat` uses (`POST /v1/chat/completions`, answer text and
top log-probabilities of the first token), listens on 127.0.0.1 only, and
stands in for an LLM judge in tests and in the README's figure. Behind it is
a deterministic rule (`rule_preference`) with a position bias, so that the
both-orders protocol has something to cancel:

  q(x, a, b) = σ(4 (s(x, a) − s(x, b)) + FIRST_SLOT_LOGIT),
  s(x, y) = |words(y) ∩ words(x)| / √(1 + |words(y)|)

(the summary's word overlap with the post, per square-root length). The
answer is the likelier letter, and the two letters' log-probabilities are
log q and log(1 − q).

Faults (`FaultPlan`) are chosen per question by a hash of its user message:
a question drawn for fault kind k meets k on its first request only (the
retry then succeeds), except "never_parsable", met on every request:

  rate_limited    429 with Retry-After: 1
  server_error    500
  timeout         the reply is held past the client's timeout
  connection      the connection is dropped mid-body
  malformed       200 with a body that is not JSON
  wrong_choice    200 answering "C" (neither choice)
  never_parsable  as wrong_choice, every time

The server counts requests, answers per question and the most requests in
flight at once (`ServerStats`, also at `GET /stats`). Run it by hand with
`python -m nlhf_jax.testing.chat_server --port 8123 --fault_rate 0.2`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import http.server
import json
import math
import re
import socket
import threading
import time
from typing import Any, Optional

from nlhf_jax.judges import chat

FAULTS = ("rate_limited", "server_error", "timeout", "connection",
          "malformed", "wrong_choice", "never_parsable")
FIRST_SLOT_LOGIT = 0.4


def rule_preference(post: str, first: str, second: str) -> float:
  """q(x, first, second), the rule judge's P(first slot wins) (docstring)."""
  words = set(re.findall(r"\w+", post.lower()))

  def score(summary: str) -> float:
    tokens = re.findall(r"\w+", summary.lower())
    return len(words.intersection(tokens)) / math.sqrt(1 + len(tokens))

  logit = 4.0 * (score(first) - score(second)) + FIRST_SLOT_LOGIT
  return 1.0 / (1.0 + math.exp(-logit))


@dataclasses.dataclass(frozen=True)
class FaultPlan:
  """Which questions meet which fault (module docstring).

  Attributes:
    rate: fraction of questions drawn for a fault.
    kinds: the kinds drawn among, uniformly by hash.
    timeout_delay_s: how long a "timeout" reply is held.
    seed: changes which questions are drawn.
  """

  rate: float = 0.0
  kinds: tuple[str, ...] = FAULTS
  timeout_delay_s: float = 1.0
  seed: int = 0

  def __post_init__(self):
    unknown = sorted(set(self.kinds) - set(FAULTS))
    if unknown or not self.kinds:
      raise ValueError(f"fault kinds {unknown or '()'} not in {FAULTS}")
    if not 0.0 <= self.rate <= 1.0:
      raise ValueError(f"fault rate must be in [0, 1], got {self.rate}")

  def fault(self, question: str, attempt: int) -> Optional[str]:
    digest = hashlib.sha256(f"{self.seed}:{question}".encode()).digest()
    if int.from_bytes(digest[:4], "big") / 2**32 >= self.rate:
      return None
    kind = self.kinds[int.from_bytes(digest[4:8], "big") % len(self.kinds)]
    return kind if attempt == 0 or kind == "never_parsable" else None


@dataclasses.dataclass
class ServerStats:
  """What the server saw.

  Attributes:
    requests: POSTs received.
    answers: {question hash: valid answers sent}.
    texts: {question hash: its user message}.
    faults: {kind: injected}.
    in_flight, max_in_flight: requests being served now / at most.
  """

  requests: int = 0
  answers: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  texts: dict = dataclasses.field(default_factory=dict)
  faults: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  in_flight: int = 0
  max_in_flight: int = 0

  def as_dict(self) -> dict[str, Any]:
    return {"requests": self.requests, "answered_questions": len(self.answers),
            "answers": sum(self.answers.values()),
            "faults": dict(self.faults), "max_in_flight": self.max_in_flight}


def question_hash(user_text: str) -> str:
  return hashlib.sha256(user_text.encode("utf-8")).hexdigest()


def completion(content: str, logprobs: dict[str, float]) -> dict[str, Any]:
  """A chat-completion body with `content` and its first token's top-k."""
  top = [{"token": t, "logprob": l} for t, l in logprobs.items()]
  return {"object": "chat.completion", "choices": [{
      "index": 0, "finish_reason": "length",
      "message": {"role": "assistant", "content": content},
      "logprobs": {"content": [{"token": content, "logprob": top[0]["logprob"],
                                "top_logprobs": top}]}}]}


class _Handler(http.server.BaseHTTPRequestHandler):
  """One request; the server object holds the plan, the stats and a lock."""

  protocol_version = "HTTP/1.1"

  def log_message(self, *args) -> None:  # Quiet.
    del args

  def _send(self, status: int, body: bytes, headers: dict = None) -> None:
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
      self.send_header(name, value)
    self.end_headers()
    self.wfile.write(body)

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    if self.path.rstrip("/").endswith("/stats"):
      with self.server.lock:
        body = json.dumps(self.server.stats.as_dict()).encode()
      self._send(200, body)
    else:
      self._send(404, b'{"error": "not found"}')

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    server = self.server
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    with server.lock:
      server.stats.requests += 1
      server.stats.in_flight += 1
      server.stats.max_in_flight = max(server.stats.max_in_flight,
                                       server.stats.in_flight)
    try:
      if self.path.rstrip("/") != "/v1/chat/completions":
        self._send(404, b'{"error": "no such route"}')
        return
      time.sleep(server.delay_s)
      self._answer(body)
    except (BrokenPipeError, ConnectionResetError):
      pass  # The client gave up (a timeout fault).
    finally:
      with server.lock:
        server.stats.in_flight -= 1

  def _answer(self, body: dict) -> None:
    server = self.server
    user = body["messages"][-1]["content"]
    question = question_hash(user)
    with server.lock:
      attempt = server.attempts[question]
      server.attempts[question] += 1
    fault = server.plan.fault(question, attempt)
    if fault is not None:
      with server.lock:
        server.stats.faults[fault] += 1
      self._inject(fault)
      return
    q = rule_preference(*server.template.fields(user))
    first, second = server.template.choices
    content = first if q >= 0.5 else second
    logprobs = {first: math.log(q) if q > 0 else -1e4,
                second: math.log1p(-q) if q < 1 else -1e4}
    if content == second:
      logprobs = dict(reversed(list(logprobs.items())))
    with server.lock:
      server.stats.answers[question] += 1
      server.stats.texts[question] = user
    self._send(200, json.dumps(completion(content, logprobs)).encode())

  def _inject(self, fault: str) -> None:
    if fault == "rate_limited":
      self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
    elif fault == "server_error":
      self._send(500, b'{"error": "internal"}')
    elif fault == "timeout":
      time.sleep(self.server.plan.timeout_delay_s)
      self._send(503, b'{"error": "too late"}')
    elif fault == "connection":
      self.send_response(200)
      self.send_header("Content-Length", "4096")
      self.end_headers()
      self.wfile.write(b'{"choices": [')
      self.wfile.flush()
      self.connection.shutdown(socket.SHUT_RDWR)
      self.close_connection = True
    elif fault == "malformed":
      self._send(200, b'{"choices": [{"message": ')
    else:  # wrong_choice, never_parsable
      self._send(200, json.dumps(completion("C", {"C": -0.1, "D": -2.4}))
                 .encode())


class ChatServer(http.server.ThreadingHTTPServer):
  """The loopback server; `start()` serves from a daemon thread.

  Attributes:
    url: "http://127.0.0.1:<port>/v1", the judge's base_url.
    stats: `ServerStats`.
  """

  daemon_threads = True

  def __init__(self, port: int = 0, plan: FaultPlan = FaultPlan(),
               delay_s: float = 0.0, template: str = "tldr"):
    super().__init__(("127.0.0.1", port), _Handler)
    self.plan, self.delay_s = plan, delay_s
    self.template = chat.TEMPLATES[template]
    self.stats = ServerStats()
    self.attempts: collections.Counter = collections.Counter()
    self.lock = threading.Lock()
    self._thread: Optional[threading.Thread] = None

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}/v1"

  def start(self) -> "ChatServer":
    self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                    daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    self.shutdown()
    self.server_close()


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--port", type=int, default=8123)
  parser.add_argument("--fault_rate", type=float, default=0.0)
  parser.add_argument("--faults", default=",".join(FAULTS),
                      help="comma-separated kinds drawn among")
  parser.add_argument("--delay_s", type=float, default=0.0,
                      help="latency added to every reply")
  parser.add_argument("--timeout_delay_s", type=float, default=1.0,
                      help="how long a 'timeout' reply is held")
  parser.add_argument("--seed", type=int, default=0)
  flags = parser.parse_args(argv)
  plan = FaultPlan(rate=flags.fault_rate, seed=flags.seed,
                   timeout_delay_s=flags.timeout_delay_s,
                   kinds=tuple(k for k in flags.faults.split(",") if k))
  server = ChatServer(flags.port, plan, delay_s=flags.delay_s)
  print(f"chat server (rule judge) on {server.url}", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    print(json.dumps(server.stats.as_dict()), flush=True)
    server.server_close()


if __name__ == "__main__":
  main()
