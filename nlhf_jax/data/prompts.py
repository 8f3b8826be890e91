"""Canonical Reddit TL;DR prompt and OpenAI's prompt truncation rule.

Pure Python (no TensorFlow): the seqio preprocessors, the vocabulary trainer
and any non-TF code path share these definitions.

The prompt format is the one of OpenAI's `summarize-from-feedback`
(`tldr_task`), also used by TRL and by the "N implementation details of RLHF"
reproduction::

  SUBREDDIT: r/{subreddit}

  TITLE: {title}

  POST: {post}

  TL;DR:

The target is `" {summary}"` (one leading space, as OpenAI's `" {reference}"`);
the comparison files already store their summaries with that leading space.

Truncation (OpenAI `process_query`): while the tokenized prompt is longer than
the budget, cut the post at its last newline (`post[:post.rindex("\\n")]`), or
drop its last character when it has no newline, then re-tokenize. Only the
post is ever cut, so the prompt always ends with `"\\n\\nTL;DR:"`.
"""

from typing import Callable

PROMPT_TEMPLATE = (
    "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
)

# Text the post is cut at, as `truncate_text="\n"` in OpenAI's task config.
TRUNCATE_AT = "\n"

NumTokensFn = Callable[[str], int]


class PromptTooLongError(ValueError):
  """Raised when the prompt exceeds the budget even with an empty post."""


def format_prompt(subreddit: str, title: str, post: str) -> str:
  """Returns the canonical TL;DR prompt.

  Args:
    subreddit: subreddit name without the `r/` prefix (as in the files).
    title: post title.
    post: post body, raw newlines kept.

  Returns:
    `PROMPT_TEMPLATE` filled in.
  """
  return PROMPT_TEMPLATE.format(subreddit=subreddit, title=title, post=post)


def format_target(summary: str) -> str:
  """Returns the SFT target for a `tldr_3_filtered` summary: `" " + summary`.

  Args:
    summary: the reference TL;DR as stored in `tldr_3_filtered` (no leading
      space).

  Returns:
    The summary with one leading space, matching the comparison files.
  """
  return " " + summary


def cut_post_once(post: str) -> str:
  """Applies one step of OpenAI's truncation rule to `post`.

  Args:
    post: a non-empty post.

  Returns:
    `post[:post.rindex("\\n")]` if the post contains a newline, else
    `post[:-1]`.
  """
  i = post.rfind(TRUNCATE_AT)
  return post[:i] if i >= 0 else post[:-1]


def truncate_post(
    subreddit: str,
    title: str,
    post: str,
    *,
    num_tokens: NumTokensFn,
    max_tokens: int,
    strict: bool = True,
) -> str:
  """Cuts `post` by OpenAI's rule until the prompt has <= `max_tokens` tokens.

  The number of tokenizations is 1 + the number of cuts; a long post without
  newlines is cut one character per step, as in the original code.

  Args:
    subreddit: subreddit name (no `r/`).
    title: post title.
    post: post body.
    num_tokens: maps a string to its token count under the model vocabulary
      (e.g. `lambda s: len(vocab.encode(s))`).
    max_tokens: token budget of the whole prompt (exclude any EOS the pipeline
      appends afterwards).
    strict: if True, raise when even an empty post does not fit (OpenAI raises
      "Could not truncate enough!"); if False, return the empty post and leave
      the final hard trim to the caller.

  Returns:
    The (possibly shortened) post; `post` itself when the prompt already fits.

  Raises:
    PromptTooLongError: `strict` and the prompt with an empty post still has
      more than `max_tokens` tokens.
    ValueError: `max_tokens` < 1.
  """
  if max_tokens < 1:
    raise ValueError(f"max_tokens must be >= 1, got {max_tokens}.")
  while num_tokens(format_prompt(subreddit, title, post)) > max_tokens:
    if not post:
      if strict:
        raise PromptTooLongError(
            f"Prompt for title {title[:60]!r} (r/{subreddit}) has more than "
            f"{max_tokens} tokens even with an empty post."
        )
      return post
    post = cut_post_once(post)
  return post


def build_prompt(
    subreddit: str,
    title: str,
    post: str,
    *,
    num_tokens: NumTokensFn | None = None,
    max_tokens: int | None = None,
    strict: bool = True,
) -> str:
  """Returns the canonical prompt, truncated when a budget is given.

  Args:
    subreddit: subreddit name (no `r/`).
    title: post title.
    post: post body.
    num_tokens: token counter; required together with `max_tokens`.
    max_tokens: token budget of the prompt, or None for no truncation.
    strict: see `truncate_post`.

  Returns:
    `format_prompt(subreddit, title, truncated_post)`.

  Raises:
    ValueError: exactly one of `num_tokens` and `max_tokens` is given.
    PromptTooLongError: see `truncate_post`.
  """
  if (num_tokens is None) != (max_tokens is None):
    raise ValueError("Pass both num_tokens and max_tokens, or neither.")
  if max_tokens is not None:
    post = truncate_post(
        subreddit,
        title,
        post,
        num_tokens=num_tokens,
        max_tokens=max_tokens,
        strict=strict,
    )
  return format_prompt(subreddit, title, post)
