"""The special token ids every vocabulary of the package uses (T5/seqio).

pad 0 (also the first decoder input), EOS 1, unk 2, no BOS. A dependency-free
module, so the samplers and packing (JAX), the data sources (NumPy) and the
vocabulary tools (SentencePiece) share one definition.
"""

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
