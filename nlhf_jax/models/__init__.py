"""T5 1.1 models: `T5` (LM head) and `T5Scorer` (scalar head)."""

from nlhf_jax.models.t5 import T5
from nlhf_jax.models.t5 import T5Config
from nlhf_jax.models.t5 import T5Scorer
from nlhf_jax.models.t5 import init_decode_cache
from nlhf_jax.models.t5 import shift_right
