"""A judge that asks an OpenAI-compatible chat-completions server.

Any server speaking `POST {base_url}/chat/completions` works: vLLM, SGLang,
llama.cpp's server, a hosted API. Each comparison (x, a, b) is asked in both
orders, as the paper did with PaLM 2 (the "both orders" protocol):

  q_ab = P(the first slot wins | x, first = a, second = b),
  P(a ≻ b | x) = ½ (q_ab + 1 − q_ba),

which cancels a constant position bias. q is read from the log-probabilities
of the two choice tokens when the server returns them (a soft answer,
q = e^{l_A} / (e^{l_A} + e^{l_B})), else from the answer text (a hard 0 or
1). Two identical summaries are ½ by this symmetry and are not asked.

Faults are survived, not hidden: 429 (waiting for Retry-After), 5xx,
timeouts, dropped connections and malformed bodies are retried with
exponential backoff up to `max_retries` times; an answer that names neither
choice is asked again up to `parse_retries` times. A question still without
an answer after that gives NaN for its comparison: the tournament counts
such comparisons per policy pair and leaves them out of the win rates
(never ½). Client errors (400, 401, 404, ...) are configuration problems
and stop the evaluation with the server's message (`ConfigError`).

Every answer is appended to an on-disk cache (`answer_cache`) the moment it
arrives, so an interrupted evaluation re-run later asks only what it had
not received. `stats` counts questions, requests, cache hits, every fault
kind and the position bias (how often the first slot won before
averaging). Needs the `judge` extra (`pip install -e '.[judge]'`, httpx).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import random
import re
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from nlhf_jax.errors import ConfigError
from nlhf_jax.judges import answer_cache
from nlhf_jax.judges import text as judges_text

FAULT_KINDS = ("rate_limited", "server_error", "timeout", "connection",
               "malformed", "unparsable")


@dataclasses.dataclass(frozen=True)
class Template:
  """A pairwise judging prompt: the messages, and how to read them back.

  `user` holds the fields {post}, {first} and {second}, each once;
  `choices` are the answer tokens naming the first and the second slot.
  """

  name: str
  system: str
  user: str
  choices: tuple[str, str] = ("A", "B")

  def messages(self, post: str, first: str, second: str) -> list[dict]:
    return [{"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(
                post=post, first=first, second=second)}]

  def fields(self, user_text: str) -> tuple[str, str, str]:
    """(post, first, second) back from a filled user message.

    Raises:
      ValueError: the text was not made from this template.
    """
    pattern = re.escape(self.user)
    for field in ("post", "first", "second"):
      pattern = pattern.replace(re.escape("{" + field + "}"),
                                f"(?P<{field}>.*)", 1)
    match = re.fullmatch(pattern, user_text, re.DOTALL)
    if match is None:
      raise ValueError(f"not a {self.name!r} judging prompt")
    return match["post"], match["first"], match["second"]

  @property
  def text(self) -> str:
    """Everything that defines the questions (part of the cache key)."""
    return "\x00".join([self.system, self.user, *self.choices])


TEMPLATES = {
    "tldr": Template(
        name="tldr",
        system="You are an expert rater of summaries of Reddit posts.",
        user=("Read the Reddit post below and the two candidate summaries "
              "of it.\n\n<post>\n{post}\n</post>\n\nSummary A:\n{first}\n\n"
              "Summary B:\n{second}\n\nWhich summary states the post's most "
              "important points more accurately and concisely, without "
              "unimportant or irrelevant detail? Answer with a single "
              "letter, A or B.")),
}


@dataclasses.dataclass(frozen=True)
class ChatJudgeConfig:
  """Where the server is and how to talk to it.

  Attributes:
    base_url: the API root, e.g. "http://127.0.0.1:8000/v1" (vLLM) or
      "https://api.openai.com/v1"; requests go to {base_url}/chat/completions.
    model: the model name the server expects.
    api_key_env: environment variable holding the API key (sent as a bearer
      token when set and non-empty; local servers usually need none).
    template: a name in `TEMPLATES`.
    max_concurrency: requests in flight at once, at most.
    timeout_s: per-request timeout (connect, read, write, pool).
    max_retries: retries of one question after a 429, 5xx, timeout,
      dropped connection or malformed body.
    parse_retries: re-asks of one question whose answer names no choice.
    backoff_s: the first retry's wait; doubled per retry (with jitter).
    max_backoff_s: the longest wait, Retry-After included.
    use_logprobs: ask for the choice tokens' log-probabilities (a soft P).
    top_logprobs: how many alternatives per token to ask for.
    temperature: sampling temperature of the judge.
    max_tokens: the answer's length limit (1 suffices for "A" / "B").
    cache_path: the answer cache (JSONL; None: no cache).
    progress_every_s: seconds between progress lines.
  """

  base_url: str
  model: str
  api_key_env: str = "OPENAI_API_KEY"
  template: str = "tldr"
  max_concurrency: int = 8
  timeout_s: float = 60.0
  max_retries: int = 6
  parse_retries: int = 2
  backoff_s: float = 0.5
  max_backoff_s: float = 30.0
  use_logprobs: bool = True
  top_logprobs: int = 5
  temperature: float = 0.0
  max_tokens: int = 1
  cache_path: Optional[str] = None
  progress_every_s: float = 10.0

  def __post_init__(self):
    if not re.match(r"^https?://", self.base_url):
      raise ConfigError(f"ChatJudgeConfig.base_url must start with http:// "
                        f"or https://, got {self.base_url!r}.")
    if not self.model:
      raise ConfigError("ChatJudgeConfig.model must be set (the model name "
                        "the server serves).")
    if self.template not in TEMPLATES:
      raise ConfigError(f"ChatJudgeConfig.template {self.template!r} is not "
                        f"one of {sorted(TEMPLATES)}.")
    for name in ("max_concurrency", "top_logprobs", "max_tokens"):
      if getattr(self, name) < 1:
        raise ConfigError(f"ChatJudgeConfig.{name} must be >= 1, got "
                          f"{getattr(self, name)}.")
    for name in ("max_retries", "parse_retries"):
      if getattr(self, name) < 0:
        raise ConfigError(f"ChatJudgeConfig.{name} must be >= 0, got "
                          f"{getattr(self, name)}.")
    for name in ("timeout_s", "progress_every_s"):
      if not getattr(self, name) > 0:
        raise ConfigError(f"ChatJudgeConfig.{name} must be > 0, got "
                          f"{getattr(self, name)}.")
    if not 0 <= self.backoff_s <= self.max_backoff_s:
      raise ConfigError("ChatJudgeConfig needs 0 <= backoff_s <= "
                        f"max_backoff_s, got {self.backoff_s} and "
                        f"{self.max_backoff_s}.")


class MalformedReply(ValueError):
  """A 200 reply that is not a chat completion."""


def read_answer(body: Any, choices: tuple[str, str]) -> Optional[
    answer_cache.Answer]:
  """The Answer in a chat-completion body; None if it names no choice.

  Raises:
    MalformedReply: the body lacks choices[0].message.content.
  """
  try:
    choice = body["choices"][0]
    content = choice["message"]["content"]
  except (KeyError, IndexError, TypeError) as e:
    raise MalformedReply(f"no choices[0].message.content ({e!r})") from None
  if not isinstance(content, str):
    raise MalformedReply(f"content is {type(content).__name__}, not str")
  logprobs = _choice_logprobs(choice, choices)
  if logprobs is not None:
    first, second = logprobs
    return answer_cache.Answer(1.0 / (1.0 + math.exp(second - first)),
                               content, soft=True)
  match = re.fullmatch(r"\W*(?:summary\s+)?(\w)\W*", content, re.IGNORECASE)
  letter = match[1].upper() if match else None
  if letter not in choices:
    return None
  return answer_cache.Answer(float(letter == choices[0]), content, soft=False)


def _choice_logprobs(choice: Any, choices: tuple[str, str]
                     ) -> Optional[tuple[float, float]]:
  """(l_first, l_second) from the first answer token's top log-probs."""
  try:
    top = choice["logprobs"]["content"][0]["top_logprobs"]
    found = {}
    for entry in top:
      token = str(entry["token"]).strip()
      if token in choices and token not in found:
        found[token] = float(entry["logprob"])
  except (KeyError, IndexError, TypeError, ValueError):
    return None
  if len(found) < 2:
    return None
  return found[choices[0]], found[choices[1]]


@dataclasses.dataclass
class JudgeStats:
  """Counts of one judge's work (all questions, both orders).

  Attributes:
    questions: ordered questions needed (identical pairs excluded).
    cache_hits: of those, answered from the cache.
    requests: HTTP requests sent.
    answered: questions answered by the server in this process.
    unanswered: questions left without an answer (faults or parsing).
    faults: {kind: occurrences} over `FAULT_KINDS`, retried.
    soft_answers: answers read from log-probabilities.
    first_slot_wins: Σ q over every answer (q = P(first slot wins)).
    seconds: wall time spent judging.
  """

  questions: int = 0
  cache_hits: int = 0
  requests: int = 0
  answered: int = 0
  unanswered: int = 0
  faults: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  soft_answers: int = 0
  first_slot_wins: float = 0.0
  seconds: float = 0.0

  @property
  def position_bias(self) -> float:
    """Mean P(first slot wins) before averaging (½: no bias; NaN: none)."""
    known = self.questions - self.unanswered
    return self.first_slot_wins / known if known else math.nan

  def as_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["faults"] = {k: self.faults.get(k, 0) for k in FAULT_KINDS}
    out["position_bias"] = self.position_bias
    return out


class ChatCompletionsJudge:
  """P(first ≻ second | prompt) from a chat-completions server (module doc).

  Attributes:
    config: the `ChatJudgeConfig`.
    stats: the running `JudgeStats`.
    name: for reports.
    abstains: True: NaN marks a comparison without an answer.
  """

  abstains = True

  def __init__(self, config: ChatJudgeConfig,
               log: Callable[[str], None] = print,
               sleep: Callable[[float], None] = time.sleep):
    import httpx  # pylint: disable=g-import-not-at-top
    self._httpx = httpx
    self.config = config
    self.template = TEMPLATES[config.template]
    self.cache = answer_cache.AnswerCache(config.cache_path)
    self.stats = JudgeStats()
    self.name = f"LLM judge {config.model} (both orders)"
    self._log, self._sleep = log, sleep
    self._lock = threading.Lock()
    key = os.environ.get(config.api_key_env, "")
    self._client = httpx.Client(
        base_url=config.base_url.rstrip("/"),
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=config.timeout_s,
        limits=httpx.Limits(max_connections=config.max_concurrency))

  def close(self) -> None:
    self._client.close()

  def key(self, prompt: str, first: str, second: str) -> str:
    return answer_cache.question_key(self.config.model, self.template.text,
                                     prompt, first, second)

  def __call__(self, prompts: Sequence[str], first: Sequence[str],
               second: Sequence[str]) -> np.ndarray:
    """Order-averaged P(first_i ≻ second_i); NaN where unanswered."""
    n = judges_text.check_judge_inputs(prompts, first, second)
    questions = {}
    for x, a, b in zip(prompts, first, second):
      if a != b:
        questions[self.key(x, a, b)] = (x, a, b)
        questions[self.key(x, b, a)] = (x, b, a)
    q = self._answer_all(questions)
    out = np.full(n, 0.5)
    for i, (x, a, b) in enumerate(zip(prompts, first, second)):
      if a != b:
        out[i] = 0.5 + 0.5 * (q[self.key(x, a, b)] - q[self.key(x, b, a)])
    return out

  def _answer_all(self, questions: dict[str, tuple[str, str, str]]
                  ) -> dict[str, float]:
    """{key: q} for every question (NaN: unanswered), cache first."""
    start = time.perf_counter()
    out, todo = {}, []
    for key, question in questions.items():
      cached = self.cache.get(key)
      if cached is None:
        todo.append((key, question))
      else:
        out[key] = cached.p_first
        self._count(cached, cache_hit=True)
    self.stats.questions += len(questions)
    progress = _Progress(len(questions), len(questions) - len(todo),
                         self.config.progress_every_s, self._log)
    pool = concurrent.futures.ThreadPoolExecutor(self.config.max_concurrency)
    try:
      futures = {pool.submit(self._ask, key, *question): key
                 for key, question in todo}
      for future in concurrent.futures.as_completed(futures):
        out[futures[future]] = future.result()
        progress.advance()
    finally:  # On an error (a 4xx, Ctrl-C) nothing queued is sent.
      pool.shutdown(wait=True, cancel_futures=True)
    self.stats.seconds += time.perf_counter() - start
    return out

  def _count(self, answer: Optional[answer_cache.Answer],
             cache_hit: bool = False) -> None:
    with self._lock:
      if answer is None:
        self.stats.unanswered += 1
        return
      self.stats.cache_hits += cache_hit
      self.stats.answered += not cache_hit
      self.stats.soft_answers += answer.soft
      self.stats.first_slot_wins += answer.p_first

  def _fault(self, kind: str) -> None:
    with self._lock:
      self.stats.faults[kind] += 1

  def _ask(self, key: str, prompt: str, first: str, second: str) -> float:
    """q for one ordered question, retried (module docstring); NaN if none."""
    c = self.config
    body = {"model": c.model, "temperature": c.temperature,
            "max_tokens": c.max_tokens,
            "messages": self.template.messages(prompt, first, second)}
    if c.use_logprobs:
      body.update(logprobs=True, top_logprobs=c.top_logprobs)
    transport_faults = parse_faults = 0
    while True:
      kind, wait, answer = self._request(body, transport_faults)
      if answer is not None:
        self.cache.put(key, answer)
        self._count(answer)
        return answer.p_first
      self._fault(kind)
      if kind == "unparsable":
        parse_faults += 1
        if parse_faults > c.parse_retries:
          break
        continue
      transport_faults += 1
      if transport_faults > c.max_retries:
        break
      self._sleep(wait)
    self._count(None)
    return math.nan

  def _request(self, body: dict, retry: int
               ) -> tuple[str, float, Optional[answer_cache.Answer]]:
    """(fault kind, wait before the retry, answer or None) of one request."""
    httpx, c = self._httpx, self.config
    backoff = min(c.max_backoff_s,
                  c.backoff_s * 2**retry * (0.5 + random.random() / 2))
    with self._lock:
      self.stats.requests += 1
    try:
      reply = self._client.post("/chat/completions", json=body)
    except httpx.TimeoutException:
      return "timeout", backoff, None
    except httpx.TransportError:
      return "connection", backoff, None
    if reply.status_code == 429:
      return "rate_limited", _retry_after(reply, backoff, c.max_backoff_s), None
    if reply.status_code >= 500:
      return "server_error", backoff, None
    if reply.status_code >= 400:
      raise ConfigError(
          f"{c.base_url}/chat/completions answered {reply.status_code} "
          f"(model {c.model!r}): {reply.text[:300]}")
    try:
      answer = read_answer(reply.json(), self.template.choices)
    except (ValueError, MalformedReply):  # JSON errors are ValueErrors.
      return "malformed", backoff, None
    return ("unparsable", 0.0, None) if answer is None else ("", 0.0, answer)


def _retry_after(reply: Any, default: float, most: float) -> float:
  """The Retry-After header in seconds (capped at `most`), else `default`."""
  try:
    return min(most, max(0.0, float(reply.headers.get("retry-after", ""))))
  except ValueError:
    return default


class _Progress:
  """Progress and ETA lines of a long judging run."""

  def __init__(self, total: int, done: int, every_s: float,
               log: Callable[[str], None]):
    self.total, self.done, self.cached = total, done, done
    self.every_s, self.log = every_s, log
    self.start = self.last = time.perf_counter()
    if total > done:
      log(f"  llm judge: {total} questions, {done} from the cache, "
          f"{total - done} to ask")

  def advance(self) -> None:
    self.done += 1
    now = time.perf_counter()
    if now - self.last < self.every_s and self.done < self.total:
      return
    self.last = now
    rate = (self.done - self.cached) / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate else math.inf
    self.log(f"  llm judge: {self.done}/{self.total} questions, "
             f"{rate:.1f}/s, ETA {eta:.0f}s")
