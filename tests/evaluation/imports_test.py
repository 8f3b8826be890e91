"""The evaluation package and the text judges must not import TensorFlow
(or JAX)."""

import subprocess
import sys

_MODULES = ("evaluation.intervals", "judges.text", "evaluation.metric_logs",
            "evaluation.plots", "evaluation.report", "evaluation.rouge",
            "evaluation.tournament", "evaluation.significance",
            "evaluation.agreement", "judges.chat", "judges.answer_cache",
            "testing.chat_server")


def test_no_tensorflow_or_jax_import():
  code = (
      "import sys\n"
      + "".join(f"import nlhf_jax.{m}\n" for m in _MODULES)
      + "from nlhf_jax.judges import text\n"
      "text.synthetic_judge()\n"
      "print(sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout + out.stderr
