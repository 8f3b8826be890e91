"""The scorer job picks the judge from its layout config's type."""

import pytest

from nlhf_jax import trainer
from nlhf_jax.errors import ConfigError
from nlhf_jax.jobs import supervised
from nlhf_jax.models import preference
from nlhf_jax.models import reward


def test_each_layout_config_names_one_scorer():
  assert set(supervised._SCORERS) == {preference.LayoutConfig,
                                      reward.RewardLayoutConfig}
  kinds = {judge.__name__.rpartition(".")[2]: algorithm.__name__
           for judge, algorithm, _ in supervised._SCORERS.values()}
  assert kinds == {"preference": "nlhf_jax.algorithms.preference_model",
                   "reward": "nlhf_jax.algorithms.reward_model"}


def test_another_layout_is_a_config_error_before_any_work():
  with pytest.raises(ConfigError, match="scorer_job.layout must be"):
    supervised.scorer_job(model=None, mesh=None, train=trainer.TrainConfig(),
                          data=None, workdir="/nonexistent", layout="pair")
