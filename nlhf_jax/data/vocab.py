"""Vocabularies for the TL;DR tasks, and the SentencePiece trainer.

Special ids follow T5/seqio (`nlhf_jax.tokens`): pad 0, EOS 1, unk 2, no BOS
(decoder inputs start with the pad id). `sentencepiece_processor` is the one
cached, checked loader of a `.model` file (the JSONL sources tokenise with
it); `load_vocabulary` accepts

* `"byte"`: `seqio.ByteVocabulary` (UTF-8 bytes + 3, no files, exact
  round trip of any text);
* a path to a SentencePiece `.model` with those special ids:
  `seqio.SentencePieceVocabulary`.

Training a model on the TL;DR text (prompts and summaries; in Python
`train_sentencepiece(texts, ...)`, or `train_from_data_dir` on a folder of
raw files)::

  python -m nlhf_jax.data.vocab --jsonl M/tldr_3_filtered/train.jsonl \\
      --out /tmp/tldr_sp --vocab_size 8000 --keep_newlines
  python -m nlhf_jax.data.vocab --data_dir ~/tensorflow_datasets \\
      --out /tmp/tldr_sp --vocab_size 8000 --keep_newlines

writes `/tmp/tldr_sp.model` and `/tmp/tldr_sp.vocab`. The model is a unigram
model with byte fallback (no unknown characters) and character coverage 1.
With `--keep_newlines` the normaliser is the identity, whitespace is kept,
`"\\n"` is a user symbol and no dummy "▁" prefix is added, so the canonical
prompt (which has "\\n\\n" separators) and the `" "`-prefixed summaries
decode back to exactly the same text. Without it SentencePiece's default
`nmt_nfkc` normaliser turns newlines into spaces, as the T5 vocabulary does.

Importing this module does not import TensorFlow (seqio and TFDS are
imported by the functions that need them).
"""

import argparse
import collections
import functools
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Iterable, Sequence

from etils import epath
import sentencepiece as spm

from nlhf_jax.data import prompts
from nlhf_jax.data import tldr_files
from nlhf_jax.errors import ConfigError
from nlhf_jax.tokens import EOS_ID, PAD_ID, UNK_ID

if TYPE_CHECKING:
  import seqio  # pylint: disable=g-bad-import-order

BYTE_VOCABULARY = "byte"


def _check_processor(proc: spm.SentencePieceProcessor, model_file) -> None:
  got = {
      "pad": proc.pad_id(), "eos": proc.eos_id(), "unk": proc.unk_id(),
      "bos": proc.bos_id(),
  }
  want = {"pad": PAD_ID, "eos": EOS_ID, "unk": UNK_ID, "bos": -1}
  if got != want:
    raise ConfigError(
        f"SentencePiece model {model_file} has special ids {got}; seqio/T5 "
        f"needs {want}. Retrain it with `python -m nlhf_jax.data.vocab`."
    )


def check_special_ids(model_file: epath.PathLike) -> None:
  """Raises ConfigError (a ValueError) unless the model has pad 0, EOS 1,
  unk 2 and no BOS."""
  proc = spm.SentencePieceProcessor(model_file=str(model_file))
  _check_processor(proc, model_file)


@functools.lru_cache(maxsize=8)
def sentencepiece_processor(model_file: str) -> spm.SentencePieceProcessor:
  """The SentencePiece processor of `model_file`, checked, cached per path.

  Raises:
    FileNotFoundError: no such file (the message says how to train one).
    ConfigError: the special ids are not pad 0 / EOS 1 / unk 2 / no BOS.
  """
  if not os.path.exists(model_file):
    raise FileNotFoundError(
        f"SentencePiece model {model_file!r} not found; train one with "
        "`python -m nlhf_jax.data.vocab --jsonl DATA_DIR/tldr_3_filtered/"
        "train.jsonl --out PREFIX --vocab_size N`.")
  proc = spm.SentencePieceProcessor(model_file=model_file)
  _check_processor(proc, model_file)
  return proc


def load_vocabulary(spec: str, extra_ids: int = 0) -> "seqio.Vocabulary":
  """Returns the seqio vocabulary named by `spec`.

  Args:
    spec: "byte", or a path to a SentencePiece `.model` file.
    extra_ids: sentinel ids appended to the vocabulary (T5 span corruption).

  Returns:
    `seqio.ByteVocabulary` or `seqio.SentencePieceVocabulary`.

  Raises:
    FileNotFoundError: the model file does not exist.
    ValueError: the model's special ids are not pad 0 / EOS 1 / unk 2.
  """
  # seqio pulls in TensorFlow: imported here so that training a model from
  # jsonl (the CLI) starts in a second.
  import seqio  # pylint: disable=g-import-not-at-top,redefined-outer-name

  if spec == BYTE_VOCABULARY:
    return seqio.ByteVocabulary(extra_ids=extra_ids)
  if not epath.Path(spec).exists():
    raise FileNotFoundError(
        f"SentencePiece model {spec!r} not found (pass a .model file or "
        f"{BYTE_VOCABULARY!r})."
    )
  check_special_ids(spec)
  return seqio.SentencePieceVocabulary(spec, extra_ids=extra_ids)


def texts_from_jsonl(
    paths: Iterable[epath.PathLike],
) -> tuple[list[str], collections.Counter]:
  """Reads prompts and summaries from raw OpenAI files.

  Each line may be a `tldr_3_filtered` row (prompt + `" " + summary`) or a
  comparison row (prompt + both summary texts); CNN/DM comparisons and
  malformed lines are skipped and counted (`tldr_files` parses every line,
  as for the TFDS builders and the JSONL sources).

  Args:
    paths: JSON-lines files.

  Returns:
    (texts, counter of skipped lines by reason).
  """
  texts, skipped = [], collections.Counter()
  for path in paths:
    path = epath.Path(path)
    for _, line in tldr_files.numbered_lines(path, path.parent):
      try:
        obj = tldr_files.load_object(line)
        if "info" in obj:
          tldr_files.comparison_owner(obj)
          row, _ = tldr_files.parse_comparison(obj)
          summaries = [row["summary_0"], row["summary_1"]]
        else:
          row = tldr_files.parse_filtered(obj)
          summaries = [prompts.format_target(row["summary"])]
      except tldr_files.RowError as e:
        skipped[e.reason] += 1
        continue
      texts.append(
          prompts.format_prompt(row["subreddit"], row["title"], row["post"])
      )
      texts.extend(summaries)
  return texts, skipped


def texts_from_tfds(
    data_dir: epath.PathLike, split: str = "train"
) -> list[str]:
  """Reads prompts and `" " + summary` targets from prepared `tldr_filtered`."""
  # pylint: disable-next=g-import-not-at-top
  import tensorflow_datasets as tfds
  # pylint: disable-next=g-import-not-at-top
  from nlhf_jax.data import tldr_builders

  builder = tldr_builders.TldrFiltered(data_dir=str(data_dir))
  texts = []
  for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    row = {k: v.decode("utf-8") for k, v in ex.items()}
    texts.append(
        prompts.format_prompt(row["subreddit"], row["title"], row["post"])
    )
    texts.append(prompts.format_target(row["summary"]))
  return texts


def train_sentencepiece(
    texts: Sequence[str],
    model_prefix: epath.PathLike,
    vocab_size: int,
    *,
    keep_newlines: bool = False,
    max_sentences: int = 1_000_000,
) -> epath.Path:
  """Trains a unigram SentencePiece model with T5/seqio special ids.

  Args:
    texts: training texts (each may span several lines).
    model_prefix: output prefix; writes `<prefix>.model` and `<prefix>.vocab`.
    vocab_size: number of pieces, including the 3 special ids and the 256
      byte-fallback pieces.
    keep_newlines: identity normalisation with "\\n" as a user symbol (see
      module docstring).
    max_sentences: at most this many texts are sampled for training.

  Returns:
    Path of the `.model` file.

  Raises:
    ValueError: no texts, or SentencePiece rejected the settings (its message
      is included, e.g. a vocab_size too large for the corpus).
  """
  if not texts:
    raise ValueError("No training text for the SentencePiece model.")
  options = dict(
      model_type="unigram", vocab_size=vocab_size, pad_id=PAD_ID,
      eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, byte_fallback=True,
      character_coverage=1.0, max_sentence_length=1 << 20,
      input_sentence_size=max_sentences, shuffle_input_sentence=True,
      minloglevel=2,
  )
  if keep_newlines:
    options.update(
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        user_defined_symbols=["\n"], add_dummy_prefix=False,
    )
  epath.Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(model_prefix), **options
    )
  except RuntimeError as e:
    raise ValueError(
        f"SentencePiece training failed (vocab_size={vocab_size}, "
        f"{len(texts)} texts): {e}"
    ) from e
  return epath.Path(f"{model_prefix}.model")


def train_from_data_dir(
    data_dir: str, model_prefix: str, vocab_size: int, **kwargs
) -> str:
  """`train_sentencepiece` on `data_dir/tldr_3_filtered/train.jsonl`.

  For tests, the synthetic world and CPU runs: the prompts and `" " +
  summary` targets of the raw training file (read as `texts_from_jsonl`
  does), SentencePiece's default normaliser unless `keep_newlines=True`.

  Args:
    data_dir: folder with `tldr_3_filtered/train.jsonl`.
    model_prefix: output prefix.
    vocab_size: number of pieces.
    **kwargs: `keep_newlines`, `max_sentences` of `train_sentencepiece`.

  Returns:
    Path of the `.model` file, as a string.
  """
  path = os.path.join(data_dir, tldr_files.FILTERED_DIR,
                      tldr_files.FILTERED_FILES["train"])
  texts, _ = texts_from_jsonl([path])
  return str(train_sentencepiece(texts, model_prefix, vocab_size, **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
  """CLI: trains a SentencePiece model on TL;DR prompts and summaries."""
  parser = argparse.ArgumentParser(
      prog="python -m nlhf_jax.data.vocab", description=__doc__.split("\n")[0]
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--data_dir", help="TFDS dir with tldr_filtered prepared")
  source.add_argument("--jsonl", nargs="+", help="raw OpenAI jsonl/json files")
  parser.add_argument("--out", required=True, help="model prefix")
  parser.add_argument("--vocab_size", type=int, required=True)
  parser.add_argument("--keep_newlines", action="store_true")
  parser.add_argument("--max_sentences", type=int, default=1_000_000)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  skipped = collections.Counter()
  if args.jsonl:
    texts, skipped = texts_from_jsonl(args.jsonl)
  else:
    texts = texts_from_tfds(args.data_dir)
  try:
    model = train_sentencepiece(
        texts, args.out, args.vocab_size, keep_newlines=args.keep_newlines,
        max_sentences=args.max_sentences,
    )
  except ValueError as e:
    print(e, file=sys.stderr)
    return 2
  check_special_ids(model)
  proc = spm.SentencePieceProcessor(model_file=str(model))
  round_trip = proc.decode(proc.encode(texts[0])) == texts[0]
  print(json.dumps({
      "model": str(model),
      "vocab_size": proc.get_piece_size(),
      "texts": len(texts),
      "skipped_lines": dict(skipped),
      "keep_newlines": args.keep_newlines,
      "first_text_round_trips": round_trip,
      "seconds": round(time.perf_counter() - start, 2),
  }, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
