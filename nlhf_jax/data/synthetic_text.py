"""The text side of the synthetic TL;DR world: facts, posts, titles, summaries.

Every post describes a *situation*: one discrete key fact per slot
(`who`, `issue`, `time`, `tried`, `ask`; `time` and `tried` may be absent),
drawn from a small per-subreddit inventory. Each fact has three forms:

* `post`:  the phrase written verbatim inside the post body
  ("keeps texting an ex");
* `short`: the wording a good summary uses ("texts an ex");
* `keys`:  the content words that count as mentioning the fact ("texts ex").
  A summary mentions a fact iff all its keys occur among the summary's words.

Posts embed the `post` phrases in sentence templates with filler sentences,
across paragraphs. Nothing but fact phrases contains a key word, and no
`post` phrase occurs inside another text piece (both checked at import by
`_validate_inventory`), so `parse_facts` recovers a post's facts exactly by
matching the `post` phrase inventory in the lower-cased post text.

Summaries come from five policies (`POLICIES`) that differ in which facts
they cover, their length and their wording. Vocabulary is kept to a few
hundred words so a tiny T5 with a 512-1000 piece SentencePiece model can
learn the world. Pure Python + numpy; no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

SLOTS = ("who", "issue", "time", "tried", "ask")
OPTIONAL_SLOTS = ("time", "tried")
POLICIES = ("ref", "sup_short", "sup_long", "sup_noisy", "pretrained")

# Words that make a summary sound hedgy (the style feature counts them).
HEDGES = frozenset({
    "maybe", "kinda", "basically", "honestly", "probably", "literally", "like",
    "just", "really", "sorta", "idk", "lol", "totally", "anyway", "um",
})

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# One string per fact: "post phrase|short phrase|space-separated keys".
_DEFAULT_TIME = ("for about two weeks|for two weeks|two weeks",
                 "for almost three months|for three months|three months",
                 "for over a year|for over a year|year",
                 "since last summer|since last summer|summer",
                 "for two years|for two years|two years",
                 "since last week|since last week|week")

_INVENTORY = {
    "relationships": {
        "who": ("my boyfriend|boyfriend|boyfriend",
                "my girlfriend|girlfriend|girlfriend",
                "my husband|husband|husband", "my wife|wife|wife",
                "my best friend|best friend|best friend"),
        "issue": ("keeps texting an ex|texts an ex|ex",
                  "forgot my birthday again|forgot my birthday|birthday",
                  "spends all our money on games|spends money on games|games",
                  "does not get along with my parents|"
                  "fights with my parents|parents",
                  "lies about small things|lies a lot|lies",
                  "ignores me at parties|ignores me at parties|parties"),
        "time": _DEFAULT_TIME,
        "tried": ("I tried talking about it calmly|tried talking|talking",
                  "I asked for some space|asked for space|space",
                  "we went to couples counseling|tried counseling|counseling",
                  "I told my sister everything|told my sister|sister",
                  "I wrote a long letter|wrote a letter|letter"),
        "ask": ("should I end things|should I end it?|end",
                "am I overreacting|am I overreacting?|overreacting",
                "how do I bring this up|how to bring it up?|bring",
                "is this a red flag|red flag?|red flag",
                "how can I trust them again|how to trust again?|trust"),
    },
    "legaladvice": {
        "who": ("my landlord|landlord|landlord",
                "my neighbor|neighbor|neighbor",
                "my employer|employer|employer",
                "my contractor|contractor|contractor",
                "the other driver|other driver|driver"),
        "issue": ("will not return my security deposit|kept my deposit|deposit",
                  "keeps parking in my spot|takes my parking spot|spot",
                  "has not paid my last paycheck|"
                  "did not pay my paycheck|paycheck",
                  "damaged my car|damaged my car|damaged car",
                  "cut down my fence|cut my fence|fence",
                  "is threatening to sue me|threatens to sue me|sue"),
        "time": _DEFAULT_TIME,
        "tried": ("I sent a certified letter|sent a letter|letter",
                  "I called the police|called the police|police",
                  "I filed a complaint with the city|"
                  "filed a complaint|complaint",
                  "I took photos of everything|took photos|photos",
                  "I read the state laws|read the laws|laws"),
        "ask": ("can I take them to small claims court|"
                "small claims court?|claims",
                "is this even legal|is this legal?|legal",
                "what are my options here|what are my options?|options",
                "do I need a lawyer|need a lawyer?|lawyer",
                "am I liable for this|am I liable?|liable"),
    },
    "personalfinance": {
        "who": ("my student loans|student loans|loans",
                "my credit card debt|credit card debt|credit",
                "my car payment|car payment|payment", "my rent|rent|rent",
                "my medical bill|medical bill|medical"),
        "issue": ("suddenly doubled|doubled|doubled",
                  "went to collections|went to collections|collections",
                  "got a higher interest rate|higher interest rate|interest",
                  "took half of my savings|took half my savings|half savings",
                  "became more than I can afford|more than I can afford|afford",
                  "was billed twice by mistake|billed twice|billed twice"),
        "time": _DEFAULT_TIME,
        "tried": ("I made a strict budget|made a budget|budget",
                  "I picked up extra shifts|extra shifts|shifts",
                  "I called the bank|called the bank|bank",
                  "I stopped eating out|stopped eating out|eating",
                  "I sold my old car|sold my car|sold"),
        "ask": ("should I pay it off first or save|pay off or save?|save",
                "should I open a retirement account|"
                "open a retirement account?|retirement",
                "is it smart to refinance|should I refinance?|refinance",
                "how big should my emergency fund be|"
                "how big an emergency fund?|emergency",
                "should I ask my parents for help|"
                "ask parents for help?|parents"),
    },
    "tifu": {
        "who": ("my boss|my boss|boss", "my mom|my mom|mom",
                "my date|my date|date", "my teacher|my teacher|teacher",
                "the whole class|the whole class|class"),
        "issue": ("I spilled hot coffee everywhere|spilled coffee|coffee",
                  "I called her by the wrong name|"
                  "used the wrong name|wrong name",
                  "I fell asleep during a meeting|fell asleep|asleep",
                  "I locked my keys in the car|locked my keys in the car|keys",
                  "I laughed at the worst moment|"
                  "laughed at the worst moment|laughed",
                  "I broke an expensive vase|broke a vase|vase"),
        "time": ("this morning|this morning|morning",
                 "last night|last night|night", "yesterday|yesterday|yesterday",
                 "earlier today|earlier today|today",
                 "over the weekend|over the weekend|weekend"),
        "tried": ("I said sorry about ten times|said sorry|sorry",
                  "I ran out of the room|ran out of the room|ran",
                  "I pretended nothing happened|"
                  "pretended nothing happened|pretended",
                  "I blamed the dog|blamed the dog|dog",
                  "I offered to pay for it|offered to pay|offered"),
        "ask": ("now everyone calls me clumsy|now I am the clumsy one|clumsy",
                "I will never live this down|will never live it down|live",
                "lesson learned the hard way|lesson learned|lesson",
                "I might lose my job|might lose my job|job",
                "now I cannot show my face there|cannot show my face|face"),
    },
    "AskReddit": {
        "who": ("people at my gym|gym people|gym",
                "my coworkers|coworkers|coworkers",
                "my roommates|roommates|roommates",
                "my new neighbors|new neighbors|neighbors",
                "my classmates|classmates|classmates"),
        "issue": ("always ask me for money|ask me for money|money",
                  "never say hello back|never say hello|hello",
                  "think I am rude|think I am rude|rude",
                  "talk really loud on the phone|talk loud on the phone|loud",
                  "make fun of my accent|mock my accent|accent",
                  "leave trash everywhere|leave trash everywhere|trash"),
        "time": _DEFAULT_TIME,
        "tried": ("I tried being extra polite|tried being polite|polite",
                  "I ignored it for a while|ignored it|ignored",
                  "I made a joke about it|made a joke|joke",
                  "I asked them to stop|asked them to stop|stop",
                  "I complained to a manager|complained to a manager|manager"),
        "ask": ("how would you handle this|how would you handle it?|handle",
                "is this normal|is this normal?|normal",
                "what should I tell them|what to tell them?|tell",
                "am I the weird one here|am I weird?|weird",
                "does this happen to you too|does this happen to you?|happen"),
    },
}

SUBREDDITS = tuple(_INVENTORY)

# Sentence templates. {X} is the capitalised post phrase of slot x, {x} as is.
_CORE = {
    "default": ("{Who} {issue}. It has been like this {time}.",
                "{Who} {issue} and it has been going on {time}.",
                "Some context first. {Who} {issue}, {time} now."),
    "tifu": ("{Issue} in front of {who} {time}.",
             "So {time} {issue} in front of {who}."),
}
_CORE_NO_TIME = {"default": ("{Who} {issue}.",
                             "The problem is that {who} {issue}."),
                 "tifu": ("{Issue} in front of {who}.",)}
_TRIED = {"default": ("{Tried}, but nothing changed.",
                      "{Tried} and it did not help at all.",
                      "I mean, {tried} but it only made things worse."),
          "tifu": ("{Tried} but it was too late.", "After that {tried}.")}
_ASK = {"default": ("{Ask}?", "My question is, {ask}?", "So {ask}?"),
        "tifu": ("{Ask}.", "Long story short, {ask}.")}
_OPENERS = {"default": ("I ({age} {sex}) need some advice.",
                        "Throwaway account for obvious reasons.",
                        "Long time lurker, first time poster.",
                        "I ({age} {sex}) could use some help here."),
            "tifu": ("Obligatory this was not a good day.",
                     "So this is pretty embarrassing.",
                     "I ({age} {sex}) am still in shock.")}
_FILLERS = {
    "default": ("Apologies for the long post.",
                "I honestly do not know what to do anymore.",
                "Any advice would be really appreciated.",
                "Thanks for reading all of this.",
                "It is kind of stressing me out.",
                "I am on mobile so excuse the formatting.",
                "Everyone I know tells me something different.",
                "I feel like I am going crazy.",
                "I basically think about it all the time.",
                "Not sure if this is the right place to post."),
    "tifu": ("It was honestly so embarrassing.",
             "Everyone just stared at me.",
             "I wanted to disappear.",
             "I went completely pale.",
             "I basically froze for a second.",
             "Of course this happened to me."),
}
_TITLES = {"default": ("{who} {issue}, what do I do?",
                       "Need advice: {who} {issue}",
                       "{who} {issue} {time}, help"),
           "tifu": ("TIFU: {issue} in front of {who}",
                    "TIFU by having {issue} in front of {who}")}
_AGES = ("19", "22", "25", "28", "31", "34")
_SEXES = ("F", "M")
# Extra words the summary policies may add around the facts.
_LONG_PADS = ("but it did not help", "and nothing changed", "and it got worse")
_NOISE_ENDINGS = ("!", "!!", " lol", "")
_MIN_POST_WORDS, _MAX_POST_WORDS = 40, 90


@dataclasses.dataclass(frozen=True)
class Fact:
  """One key fact of a situation.

  Attributes:
    subreddit: subreddit whose inventory holds the fact.
    slot: one of `SLOTS`.
    post: phrase written verbatim inside posts.
    short: wording used by good summaries.
    keys: words that must all occur in a summary for it to mention the fact.
  """
  subreddit: str
  slot: str
  post: str
  short: str
  keys: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Situation:
  """What a post is about: its subreddit and one fact per present slot."""
  subreddit: str
  facts: tuple[Fact, ...]

  def get(self, slot: str) -> Fact | None:
    """Returns the fact of `slot`, or None when the slot is absent."""
    for fact in self.facts:
      if fact.slot == slot:
        return fact
    return None


def _build_facts() -> dict[str, dict[str, tuple[Fact, ...]]]:
  facts = {}
  for sub, slots in _INVENTORY.items():
    facts[sub] = {}
    for slot in SLOTS:
      rows = [spec.split("|") for spec in slots[slot]]
      facts[sub][slot] = tuple(Fact(sub, slot, p, s, tuple(k.split()))
                               for p, s, k in rows)
  return facts


FACTS = _build_facts()


def tokenize(text: str) -> list[str]:
  """Lower-cased words of `text` (letters, digits, inner apostrophes)."""
  return _TOKEN_RE.findall(text.lower())


def mentions(fact: Fact, words: set[str] | frozenset[str]) -> bool:
  """True iff every key of `fact` is in the word set `words`."""
  return all(k in words for k in fact.keys)


def _style(subreddit: str) -> str:
  return "tifu" if subreddit == "tifu" else "default"


def _template_texts() -> list[str]:
  """All non-fact text pieces that can appear in posts, titles or summaries."""
  pieces = []
  for table in (_CORE, _CORE_NO_TIME, _TRIED, _ASK, _OPENERS, _FILLERS,
                _TITLES):
    for templates in table.values():
      pieces.extend(re.sub(r"\{\w+\}", " ", t) for t in templates)
  pieces.extend(_LONG_PADS + _NOISE_ENDINGS + (" in front of ",))
  return pieces


def _validate_inventory() -> None:
  """Checks the invariants that make coverage and fact parsing exact.

  Raises:
    ValueError: naming the offending fact or template piece.
  """
  pieces = [p.lower() for p in _template_texts()]
  all_keys = {k for sub in FACTS.values() for fs in sub.values()
              for f in fs for k in f.keys}
  for piece in pieces:
    bad = set(tokenize(piece)) & all_keys
    if bad:
      raise ValueError(f"template text {piece!r} contains key words {bad}")
  for sub, slots in FACTS.items():
    facts = [f for fs in slots.values() for f in fs]
    for f in facts:
      for form in (f.post, f.short):
        if not set(f.keys) <= set(tokenize(form)):
          raise ValueError(f"{sub}/{f.slot}: keys {f.keys} not all in {form!r}")
      if set(tokenize(f.short)) & HEDGES:
        raise ValueError(f"{sub}/{f.slot}: hedge in short phrase {f.short!r}")
      if any(f.post.lower() in p for p in pieces):
        raise ValueError(f"{sub}/{f.slot}: post phrase {f.post!r} in template")
      for g in facts:
        if g is f:
          continue
        for form in (g.post, g.short):
          if mentions(f, set(tokenize(form))):
            raise ValueError(f"{sub}: keys of {f.post!r} occur in {form!r}")
        if f.post.lower() in g.post.lower():
          raise ValueError(f"{sub}: {f.post!r} is inside {g.post!r}")


_validate_inventory()


def world_vocabulary() -> frozenset[str]:
  """Every word (as `tokenize` yields it) that the world can write."""
  words = set()
  for text in _template_texts():
    words.update(tokenize(text))
  for sub in FACTS.values():
    for facts in sub.values():
      for f in facts:
        words.update(tokenize(f.post + " " + f.short))
  words.update(tokenize(" ".join(_AGES + _SEXES + tuple(HEDGES) + SUBREDDITS)))
  return frozenset(words)


def _cap(text: str) -> str:
  return text[:1].upper() + text[1:]


def _pick(rng: np.random.Generator, options: Sequence):
  return options[int(rng.integers(len(options)))]


def sample_situation(rng: np.random.Generator,
                     subreddit: str | None = None) -> Situation:
  """Draws a subreddit (unless given) and one fact per slot.

  `time` is absent with probability 0.25 and `tried` with probability 0.2.
  """
  if subreddit is None:
    subreddit = _pick(rng, SUBREDDITS)
  elif subreddit not in FACTS:
    raise ValueError(f"unknown subreddit {subreddit!r}; known: {SUBREDDITS}")
  absent_prob = {"time": 0.25, "tried": 0.2}
  facts = []
  for slot in SLOTS:
    if slot in absent_prob and rng.random() < absent_prob[slot]:
      continue
    facts.append(_pick(rng, FACTS[subreddit][slot]))
  return Situation(subreddit, tuple(facts))


def _fill(template: str, situation: Situation, form: str = "post") -> str:
  values = {}
  for slot in SLOTS:
    fact = situation.get(slot)
    text = getattr(fact, form) if fact is not None else ""
    values[slot] = text
    values[_cap(slot)] = _cap(text)
  return template.format(**values)


def write_post(rng: np.random.Generator, situation: Situation) -> str:
  """Writes a post body: 3 paragraphs, 40-90 words, every fact stated.

  Returns:
    The post text with raw "\\n\\n" between paragraphs (sometimes "\\n").
  """
  style = _style(situation.subreddit)
  opener = _pick(rng, _OPENERS[style]).format(age=_pick(rng, _AGES),
                                              sex=_pick(rng, _SEXES))
  core_table = _CORE if situation.get("time") else _CORE_NO_TIME
  paragraphs = [[opener, _fill(_pick(rng, core_table[style]), situation)], [],
                [_fill(_pick(rng, _ASK[style]), situation)]]
  if situation.get("tried"):
    paragraphs[1].append(_fill(_pick(rng, _TRIED[style]), situation))
  fillers = list(_FILLERS[style])
  order = rng.permutation(len(fillers))
  n_fill = 0

  def n_words() -> int:
    return sum(len(s.split()) for p in paragraphs for s in p)

  while n_words() < _MIN_POST_WORDS or (n_fill < 4 and rng.random() < 0.6):
    where = int(rng.integers(3))
    position = int(rng.integers(len(paragraphs[where]) + 1)) if where else 1
    paragraphs[where].insert(position, fillers[order[n_fill % len(order)]])
    n_fill += 1
  while n_words() > _MAX_POST_WORDS:  # Drop fillers from the end.
    for p in reversed(paragraphs):
      drop = [s for s in p if s in fillers]
      if drop:
        p.remove(drop[-1])
        break
  sep = "\n" if rng.random() < 0.15 else "\n\n"
  return sep.join(" ".join(p) for p in paragraphs if p)


def write_title(rng: np.random.Generator, situation: Situation) -> str:
  """Writes a title paraphrasing the situation with short wordings."""
  style = _style(situation.subreddit)
  templates = _TITLES[style]
  if style == "default" and situation.get("time") is None:
    templates = templates[:2]
  return _cap(_fill(_pick(rng, templates), situation, form="short"))


def core_phrase(situation: Situation, with_who: bool = True) -> str:
  """Short wording of the gist: `who` + `issue` ("boyfriend texts an ex")."""
  who, issue = situation.get("who").short, situation.get("issue").short
  if _style(situation.subreddit) == "tifu":
    return f"{issue} in front of {who}" if with_who else issue
  return f"{who} {issue}" if with_who else issue


def _join(situation: Situation, core: str, extras: Sequence[str],
          rng: np.random.Generator) -> str:
  """Joins the core and extra slots' short phrases into one summary."""
  text = core
  for slot in extras:
    short = situation.get(slot).short
    if slot == "time":
      text += " " + short
    elif slot == "tried":
      text += ", " + short
    else:
      text += _pick(rng, (". ", " - ")) + short
  return text


def _present_extras(situation: Situation) -> list[str]:
  return [s for s in ("time", "tried", "ask") if situation.get(s)]


def _choose_extras(rng: np.random.Generator, situation: Situation,
                   n: int) -> list[str]:
  extras = _present_extras(situation)
  n = min(n, len(extras))
  keep = set(rng.choice(len(extras), size=n, replace=False).tolist())
  return [s for i, s in enumerate(extras) if i in keep]


def _replace_fact(rng: np.random.Generator, situation: Situation,
                  slot: str) -> Situation:
  """Returns `situation` with the fact of `slot` swapped for a wrong one."""
  old = situation.get(slot)
  others = [f for f in FACTS[situation.subreddit][slot] if f != old]
  new = _pick(rng, others)
  return Situation(situation.subreddit,
                   tuple(new if f == old else f for f in situation.facts))


def _insert_hedges(rng: np.random.Generator, words: list[str],
                   n: int) -> list[str]:
  hedges = sorted(HEDGES)
  for _ in range(n):
    words.insert(int(rng.integers(len(words) + 1)), _pick(rng, hedges))
  return words


def _pretrained(rng: np.random.Generator, post: str) -> str:
  """Extractive "pretrained" summary: a window of the post, maybe looping."""
  words = post.split()
  start = int(rng.integers(0, max(1, len(words) // 3)))
  length = int(rng.integers(10, 19))
  window = words[start:start + length]
  if rng.random() < 0.3 and len(window) > 4:
    window += window[-4:]
  return " ".join(window)


def write_summary(rng: np.random.Generator, situation: Situation, policy: str,
                  post: str | None = None) -> str:
  """Writes a summary (no leading space) of `situation` in a policy's manner.

  Args:
    rng: numpy generator.
    situation: the facts of the post.
    policy: one of `POLICIES`: "ref" (2-4 facts, clean, the human TL;DR),
      "sup_short" (issue, who + issue or issue + ask; terse), "sup_long" (4-5 facts, padded),
      "sup_noisy" (2-3 facts, hedges, exclamations, often a wrong fact),
      "pretrained" (a window copied from the post, sometimes repeating).
    post: the post text; required for "pretrained".

  Returns:
    The summary text.
  """
  if policy == "ref":
    n_extras = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
    extras = _choose_extras(rng, situation, n_extras)
    text = _join(situation, core_phrase(situation), extras, rng)
    if rng.random() < 0.25:  # Human TL;DRs are not always clean.
      text = " ".join(_insert_hedges(rng, text.split(), 1))
    return _cap(text) if rng.random() < 0.5 else text
  if policy == "sup_short":
    kind = int(rng.integers(3))
    if kind == 2 and situation.get("ask"):
      return (core_phrase(situation, with_who=False) + " - "
              + situation.get("ask").short)
    return core_phrase(situation, with_who=kind == 1)
  if policy == "sup_long":
    extras = _present_extras(situation)
    if len(extras) == 3 and rng.random() < 0.4:
      extras = _choose_extras(rng, situation, 2)
    text = _join(situation, core_phrase(situation), extras, rng)
    if "tried" in extras and len(text.split()) <= 16:
      text = text.replace(situation.get("tried").short,
                          situation.get("tried").short + " " +
                          _pick(rng, _LONG_PADS), 1)
    return _cap(text)
  if policy == "sup_noisy":
    if rng.random() < 0.4:
      slot = _pick(rng, ["who", "issue"] + _present_extras(situation))
      situation = _replace_fact(rng, situation, slot)
    extras = _choose_extras(rng, situation, int(rng.integers(0, 2)))
    words = _join(situation, core_phrase(situation), extras, rng).split()
    words = _insert_hedges(rng, words, int(rng.integers(1, 3)))
    return " ".join(words) + _pick(rng, _NOISE_ENDINGS)
  if policy == "pretrained":
    if post is None:
      raise ValueError("write_summary(policy='pretrained') needs the post text")
    return _pretrained(rng, post)
  raise ValueError(f"unknown policy {policy!r}; known: {POLICIES}")


def parse_facts(post: str, subreddit: str | None = None) -> tuple[Fact, ...]:
  """Recovers a post's key facts by matching the `post` phrase inventory.

  The post is reduced to its lower-case words (`tokenize`, punctuation and
  newlines dropped); every inventory fact whose `post` phrase occurs there as
  a whole-word sequence is returned. With a
  known `subreddit` only its inventory is searched; otherwise all of them.
  Posts not written by this world simply yield few or no facts.

  Args:
    post: post body text.
    subreddit: subreddit name without "r/", or None.

  Returns:
    The facts found, ordered by slot.
  """
  text = " " + " ".join(tokenize(post)) + " "
  subs = [subreddit] if subreddit in FACTS else list(FACTS)
  found, seen = [], set()
  for slot in SLOTS:
    for sub in subs:
      for fact in FACTS[sub][slot]:
        if (slot, fact.post) in seen:  # The shared `time` facts.
          continue
        if " " + " ".join(tokenize(fact.post)) + " " in text:
          found.append(fact)
          seen.add((slot, fact.post))
  return tuple(found)
