"""Data: TL;DR readers, TFDS builders, seqio tasks, the synthetic TL;DR world."""
