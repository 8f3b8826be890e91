"""Tests for the vocabularies and the SentencePiece trainer CLI."""

import json

import pytest
import sentencepiece as spm

from nlhf_jax.data import prompts
from nlhf_jax.data import vocab


def _raw_files(tldr_env):
  root = tldr_env.manual.root
  return (sorted((root / "tldr_3_filtered").glob("*.jsonl"))
          + sorted((root / "comparisons").glob("*.json")))


def test_trained_model_has_t5_special_ids(tldr_env):
  proc = spm.SentencePieceProcessor(model_file=str(tldr_env.sp_model))
  assert (proc.pad_id(), proc.eos_id(), proc.unk_id(), proc.bos_id()) == (
      0, 1, 2, -1)
  assert proc.get_piece_size() == 320
  sp = vocab.load_vocabulary(str(tldr_env.sp_model))
  assert (sp.pad_id, sp.eos_id, sp.unk_id, sp.vocab_size) == (0, 1, 2, 320)


def test_keep_newlines_model_round_trips_prompts_and_targets(tldr_env):
  sp = vocab.load_vocabulary(str(tldr_env.sp_model))
  texts = []
  for row in tldr_env.manual.filtered["train"]:
    texts.append(prompts.format_prompt(row["subreddit"], row["title"],
                                       row["post"]))
    texts.append(prompts.format_target(row["summary"]))
  texts.append("Unseen: ß 中文 \t tabs  and  double  spaces\n\n\n")
  for text in texts:
    assert sp.decode(sp.encode(text)) == text
    assert sp.decode_tf(sp.encode_tf(text)).numpy().decode() == text
  # No dummy prefix: the target's leading space is its first piece's "▁".
  proc = spm.SentencePieceProcessor(model_file=str(tldr_env.sp_model))
  assert proc.encode(" ok", out_type=str)[0].startswith("▁")
  assert not proc.encode("ok", out_type=str)[0].startswith("▁")


def test_default_normalisation_drops_newlines(tldr_env, tmp_path):
  texts, _ = vocab.texts_from_jsonl(_raw_files(tldr_env))
  model = vocab.train_sentencepiece(texts, tmp_path / "nfkc", vocab_size=320)
  sp = vocab.load_vocabulary(str(model))
  decoded = sp.decode(sp.encode("TITLE: a\n\nPOST: b"))
  assert decoded == "TITLE: a POST: b"


def test_wrong_special_ids_are_rejected(tldr_env, tmp_path):
  texts, _ = vocab.texts_from_jsonl(_raw_files(tldr_env))
  prefix = tmp_path / "default_ids"
  spm.SentencePieceTrainer.train(  # SentencePiece defaults: unk 0, bos 1, eos 2
      sentence_iterator=iter(texts), model_prefix=str(prefix), vocab_size=100,
      minloglevel=2)
  with pytest.raises(ValueError, match=r"default_ids\.model has special ids"):
    vocab.load_vocabulary(f"{prefix}.model")
  with pytest.raises(FileNotFoundError, match="nope.model"):
    vocab.load_vocabulary(str(tmp_path / "nope.model"))


def test_byte_vocabulary():
  byte = vocab.load_vocabulary("byte")
  assert byte.encode("é\n") == [0xC3 + 3, 0xA9 + 3, ord("\n") + 3]
  assert (byte.pad_id, byte.eos_id, byte.unk_id) == (0, 1, 2)


def test_texts_from_jsonl_skips_what_the_builders_skip(tldr_env):
  texts, skipped = vocab.texts_from_jsonl(_raw_files(tldr_env))
  want = sum((c for d in tldr_env.manual.expected.values() for c in d.values()),
             start=__import__("collections").Counter())
  del want["emitted"]
  assert skipped == want
  n_filtered = sum(len(v) for v in tldr_env.manual.filtered.values())
  n_pairs = sum(len(v) for v in tldr_env.manual.comparisons.values())
  assert len(texts) == 2 * n_filtered + 3 * n_pairs


def test_cli_trains_from_jsonl(tldr_env, tmp_path, capsys):
  rc = vocab.main(["--jsonl", *map(str, _raw_files(tldr_env)),
                   "--out", str(tmp_path / "cli" / "m"), "--vocab_size", "330",
                   "--keep_newlines"])
  assert rc == 0
  out = json.loads(capsys.readouterr().out)
  assert out["vocab_size"] == 330 and out["first_text_round_trips"]
  assert out["seconds"] < 10
  assert (tmp_path / "cli" / "m.model").exists()
  assert (tmp_path / "cli" / "m.vocab").exists()


def test_cli_trains_from_prepared_tfds(tldr_env, tmp_path, capsys):
  rc = vocab.main(["--data_dir", str(tldr_env.data_dir),
                   "--out", str(tmp_path / "m"), "--vocab_size", "330"])
  assert rc == 0
  out = json.loads(capsys.readouterr().out)
  assert out["texts"] == 2 * len(tldr_env.manual.filtered["train"])
  assert out["keep_newlines"] is False


def test_cli_reports_impossible_vocab_size(tldr_env, tmp_path, capsys):
  rc = vocab.main(["--jsonl", str(_raw_files(tldr_env)[0]),
                   "--out", str(tmp_path / "m"), "--vocab_size", "50000"])
  assert rc == 2
  assert "vocab_size=50000" in capsys.readouterr().err
