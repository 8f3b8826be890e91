"""The chat-completions judge against the loopback server
(`nlhf_jax.testing.chat_server`): answers read soft and hard, every fault
kind survived or counted, the both-orders result equal to the rule judge
called directly, the cache, and the concurrency limit."""

import collections
import math

import numpy as np
import pytest

from nlhf_jax.errors import ConfigError
from nlhf_jax.evaluation import tournament
from nlhf_jax.judges import chat
from nlhf_jax.judges import text as judges_text
from nlhf_jax.testing import chat_server

TEMPLATE = chat.TEMPLATES["tldr"]
WORDS = ("cat", "dog", "rent", "job", "move", "city", "friend", "money")


def _prompts(n):
  return [f"POST: my {WORDS[i % 8]} and my {WORDS[(3 * i) % 8]} {i}"
          for i in range(n)]


def _summaries(n, shift):
  return [" ".join(WORDS[(i + shift + k) % 8] for k in range(1 + i % 3))
          for i in range(n)]


def _config(server, **overrides):
  fields = dict(base_url=server.url, model="rule", backoff_s=0.001,
                max_backoff_s=0.01, timeout_s=0.3, max_concurrency=4)
  return chat.ChatJudgeConfig(**{**fields, **overrides})


@pytest.fixture
def serve():
  servers = []

  def start(**kwargs):
    servers.append(chat_server.ChatServer(**kwargs).start())
    return servers[-1]

  yield start
  for server in servers:
    server.stop()


def test_answers_soft_hard_and_neither():
  soft = chat_server.completion("A", {"A": math.log(0.7),
                                      "B": math.log(0.3)})
  answer = chat.read_answer(soft, ("A", "B"))
  assert answer.soft and answer.p_first == pytest.approx(0.7)
  hard = {"choices": [{"message": {"content": " B."}}]}
  assert chat.read_answer(hard, ("A", "B")).p_first == 0.0
  named = {"choices": [{"message": {"content": "Summary A"}}]}
  assert chat.read_answer(named, ("A", "B")).p_first == 1.0
  for content in ("C", "A or B", ""):
    body = {"choices": [{"message": {"content": content}}]}
    assert chat.read_answer(body, ("A", "B")) is None
  with pytest.raises(chat.MalformedReply):
    chat.read_answer({"choices": []}, ("A", "B"))


def test_template_round_trip():
  user = TEMPLATE.messages("POST: hi\nthere", "one {two}", "three")[1]
  assert TEMPLATE.fields(user["content"]) == ("POST: hi\nthere", "one {two}",
                                              "three")
  with pytest.raises(ValueError, match="not a 'tldr' judging prompt"):
    TEMPLATE.fields("something else")


def test_config_errors():
  with pytest.raises(ConfigError, match="base_url"):
    chat.ChatJudgeConfig(base_url="127.0.0.1:8000", model="m")
  with pytest.raises(ConfigError, match="template"):
    chat.ChatJudgeConfig(base_url="http://h", model="m", template="nope")
  with pytest.raises(ConfigError, match="max_concurrency"):
    chat.ChatJudgeConfig(base_url="http://h", model="m", max_concurrency=0)


def _direct(prompts, first, second):
  return [chat_server.rule_preference(*q) for q in zip(prompts, first,
                                                        second)]


def _policies(n):
  return {name: _summaries(n, shift) for shift, name in
          enumerate(("SFT", "RLHF", "MD1"))}


def test_every_fault_kind_is_survived(serve):
  kinds = tuple(k for k in chat_server.FAULTS if k != "never_parsable")
  server = serve(plan=chat_server.FaultPlan(rate=0.5, kinds=kinds,
                                            timeout_delay_s=0.6))
  judge = chat.ChatCompletionsJudge(_config(server), log=lambda _: None)
  prompts, policies = _prompts(24), _policies(24)
  result = tournament.run_tournament(prompts, policies, judge,
                                     average_orders=False)
  direct = tournament.run_tournament(
      prompts, policies, judges_text.CallableJudge(_direct))
  np.testing.assert_allclose(result.win_rate, direct.win_rate, atol=1e-12)
  assert set(result.unanswered.values()) == {0}
  injected = server.stats.faults
  assert set(injected) == set(kinds), injected
  seen = judge.stats.faults
  assert seen["unparsable"] == injected["wrong_choice"]
  for kind in ("rate_limited", "server_error", "timeout", "connection",
               "malformed"):
    assert seen[kind] == injected[kind], (kind, seen, injected)
  assert judge.stats.unanswered == 0
  assert judge.stats.requests == server.stats.requests
  assert judge.stats.answered == judge.stats.questions
  # The rule favours the first slot (FIRST_SLOT_LOGIT > 0).
  assert judge.stats.position_bias > 0.5
  assert judge.stats.soft_answers == judge.stats.questions


def test_never_parsable_answers_are_counted_not_halved(serve):
  server = serve(plan=chat_server.FaultPlan(rate=0.3,
                                            kinds=("never_parsable",)))
  judge = chat.ChatCompletionsJudge(_config(server, parse_retries=2),
                                    log=lambda _: None)
  prompts, policies = _prompts(20), _policies(20)
  result = tournament.run_tournament(prompts, policies, judge,
                                     average_orders=False)
  lost = judge.stats.unanswered
  assert lost > 0 and server.stats.faults["never_parsable"] == 3 * lost
  nans = {pair: int(np.isnan(p).sum())
          for pair, p in result.comparisons.items()}
  assert result.unanswered == nans and sum(nans.values()) > 0
  for (row, column), missing in nans.items():
    cell = result.cell(row, column)
    assert cell.num_samples == 20 - missing
    kept = result.comparisons[(row, column)]
    assert cell.win_rate == pytest.approx(np.nanmean(kept))


def test_the_cache_is_never_asked_twice(serve, tmp_path):
  server = serve()
  cache = str(tmp_path / "answers.jsonl")
  prompts, policies = _prompts(10), _policies(10)
  first = chat.ChatCompletionsJudge(_config(server, cache_path=cache),
                                    log=lambda _: None)
  part = first(prompts[:5], policies["SFT"][:5], policies["MD1"][:5])
  again = chat.ChatCompletionsJudge(_config(server, cache_path=cache),
                                    log=lambda _: None)
  full = again(prompts, policies["SFT"], policies["MD1"])
  np.testing.assert_array_equal(full[:5], part)
  assert again.stats.cache_hits == first.stats.answered == 10
  assert set(server.stats.answers.values()) == {1}
  # Another model does not share the entries.
  other = chat.ChatCompletionsJudge(
      _config(server, cache_path=cache, model="other"), log=lambda _: None)
  other(prompts[:1], policies["SFT"][:1], policies["MD1"][:1])
  assert other.stats.cache_hits == 0


def test_concurrency_never_exceeds_the_limit(serve):
  server = serve(delay_s=0.03)
  judge = chat.ChatCompletionsJudge(_config(server, max_concurrency=3),
                                    log=lambda _: None)
  judge(_prompts(12), _summaries(12, 0), _summaries(12, 1))
  assert server.stats.max_in_flight == 3


def test_identical_summaries_are_one_half_without_asking(serve):
  server = serve()
  judge = chat.ChatCompletionsJudge(_config(server), log=lambda _: None)
  out = judge(["POST: a"], ["same words"], ["same words"])
  assert out.tolist() == [0.5] and server.stats.requests == 0


def test_a_client_error_is_a_config_error(serve):
  server = serve()
  judge = chat.ChatCompletionsJudge(
      _config(server, base_url=server.url.replace("/v1", "/v2")),
      log=lambda _: None)
  with pytest.raises(ConfigError, match="404"):
    judge(_prompts(40), _summaries(40, 0), _summaries(40, 1))
  assert server.stats.requests < 80  # The queued questions are not sent.


def test_progress_has_an_eta(serve):
  server = serve()
  lines = []
  judge = chat.ChatCompletionsJudge(_config(server, progress_every_s=1e-9),
                                    log=lines.append)
  judge(_prompts(4), _summaries(4, 0), _summaries(4, 1))
  assert "8 to ask" in lines[0] and "ETA" in lines[-1]
  assert collections.Counter("8/8" in line for line in lines)[True] == 1
