"""Policy-gradient pieces: closed forms, and unbiasedness of Nash-MD-PG.

The estimator test uses a tabular two-token autoregressive policy (3 tokens
per step, 9 sequences), where the regularised preference
P_τ(π ≻ π') = E_{y~π, y'~π'} P(y, y') − τ KL(π, μ) + τ KL(π', μ) and its
exact gradient (with the opponent π' held fixed) are computable by
enumeration; the opponent is the token-level geometric mixture
π'(y_n | y_<n) ∝ π(y_n | y_<n)^{1−β} μ(y_n | y_<n)^β.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlhf_jax.algorithms import policy_gradient as pg


def test_kl_to_go_closed_form():
  lp = jnp.array([[-1.0, -2.0, -0.5, -3.0]])
  lr = jnp.array([[-1.5, -1.0, -0.5, -1.0]])
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  # log ratios: 0.5, -1, 0, (masked)
  np.testing.assert_allclose(pg.kl_to_go(lp, lr, mask),
                             [[-0.5, -1.0, 0.0, 0.0]])


def test_regularised_advantages_and_stop_gradient():
  lp = jnp.array([[-1.0, -2.0], [-0.3, -0.2]])
  lr = jnp.array([[-1.5, -1.0], [-0.3, -0.4]])
  mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
  p = jnp.array([0.9, 0.2])
  adv = pg.regularised_advantages(pg.nash_md_signal(p), lp, lr, mask, 0.1)
  expected = [[0.4 - 0.1 * (0.5 - 1.0), 0.4 - 0.1 * (-1.0)],
              [-0.3 - 0.1 * 0.0, 0.0]]
  np.testing.assert_allclose(adv, expected, rtol=1e-6)
  grad = jax.grad(lambda x: pg.regularised_advantages(
      pg.nash_md_signal(p), x, lr, mask, 0.1).sum())(lp)
  np.testing.assert_array_equal(grad, 0.0)


def test_reinforce_loss_gradient_is_advantage_weighted_score():
  lp = jnp.array([[-1.0, -2.0], [-0.3, -0.2]])
  adv = jnp.array([[0.5, -1.0], [2.0, 3.0]])
  mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
  grad = jax.grad(pg.reinforce_loss)(lp, adv, mask)
  np.testing.assert_allclose(grad, -adv * mask / 2)


def test_online_ipo_minimiser():
  p = jnp.array([0.8])
  tau = 0.5
  # h = (a - 0) - (0 - 0) = a; the loss is minimised at a = (p - 1/2)/tau.
  loss = lambda a: pg.online_ipo_loss(a, jnp.zeros(1), jnp.zeros(1),
                                      jnp.zeros(1), p, tau)
  a_star = (0.8 - 0.5) / tau
  assert float(loss(jnp.array([a_star]))) < 1e-12
  assert float(jax.grad(lambda a: loss(a))(jnp.array([a_star]))[0]) == 0.0


K = 3  # tokens per step; sequences are (y1, y2).


def _random_prefs(rng, n):
  """An n × n preference matrix: upper triangle uniform, P + Pᵀ = 1."""
  upper = rng.uniform(size=(n, n))
  return np.triu(upper, 1) + np.tril(1 - upper.T, -1) + 0.5 * np.eye(n)


def _tables(theta):
  """log π(y1) [K] and log π(y2 | y1) [K, K] from parameters."""
  return jax.nn.log_softmax(theta["l1"]), jax.nn.log_softmax(theta["l2"], -1)


def _mixture_tables(theta, mu, beta):
  lp1, lp2 = _tables(theta)
  lm1, lm2 = mu
  return (jax.nn.log_softmax((1 - beta) * lp1 + beta * lm1),
          jax.nn.log_softmax((1 - beta) * lp2 + beta * lm2, -1))


def _seq_logprobs(t1, t2):
  """log prob of every sequence (y1, y2) as a [K*K] vector."""
  return (t1[:, None] + t2).reshape(-1)


def _regularised_preference(theta, opponent_tables, mu, prefs, tau):
  """P_τ(π_θ ≻ π') with π' fixed, by enumeration over the 9 sequences."""
  lp = _seq_logprobs(*_tables(theta))
  lo = _seq_logprobs(*opponent_tables)
  lm = _seq_logprobs(*mu)
  pi, po = jnp.exp(lp), jnp.exp(lo)
  kl_pi = jnp.sum(pi * (lp - lm))
  kl_po = jnp.sum(po * (lo - lm))
  return pi @ prefs @ po - tau * kl_pi + tau * kl_po


def _sample(rng, tables, n):
  t1, t2 = tables
  r1, r2 = jax.random.split(rng)
  y1 = jax.random.categorical(r1, t1, shape=(n,))
  y2 = jax.random.categorical(r2, t2[y1])
  return y1, y2


def _estimator_batch_mean(theta, mu, prefs, beta, tau, rng, n):
  """Mean of the Nash-MD-PG gradient estimate over n sampled pairs."""
  opp = jax.lax.stop_gradient(_mixture_tables(theta, mu, beta))
  ry, ry2 = jax.random.split(rng)
  y1, y2 = _sample(ry, _tables(theta), n)
  o1, o2 = _sample(ry2, opp, n)
  p = prefs[y1 * K + y2, o1 * K + o2]
  lm1, lm2 = mu

  def loss(th):
    t1, t2 = _tables(th)
    logp = jnp.stack([t1[y1], t2[y1, y2]], axis=1)       # [n, 2]
    logr = jnp.stack([lm1[y1], lm2[y1, y2]], axis=1)
    mask = jnp.ones_like(logp)
    adv = pg.regularised_advantages(pg.nash_md_signal(p), logp, logr, mask,
                                    tau)
    return pg.reinforce_loss(logp, adv, mask)

  return jax.tree.map(lambda g: -g, jax.grad(loss)(theta))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_nash_md_pg_estimator_is_unbiased(beta):
  rng = np.random.default_rng(0)
  theta = {"l1": jnp.asarray(rng.normal(size=K), jnp.float32),
           "l2": jnp.asarray(rng.normal(size=(K, K)), jnp.float32)}
  mu = (jax.nn.log_softmax(jnp.asarray(rng.normal(size=K), jnp.float32)),
        jax.nn.log_softmax(jnp.asarray(rng.normal(size=(K, K)),
                                       jnp.float32), -1))
  prefs = jnp.asarray(_random_prefs(rng, K * K), jnp.float32)
  tau = 0.1

  opp = _mixture_tables(theta, mu, beta)
  exact = jax.grad(_regularised_preference)(theta, opp, mu, prefs, tau)

  batch_mean = jax.jit(_estimator_batch_mean, static_argnums=(6,))
  draws = [batch_mean(theta, mu, prefs, beta, tau, key, 50_000)
           for key in jax.random.split(jax.random.PRNGKey(1), 16)]
  for name in ("l1", "l2"):
    samples = np.stack([np.asarray(d[name]) for d in draws])   # [16, ...]
    mean = samples.mean(0)
    stderr = samples.std(0, ddof=1) / np.sqrt(len(draws))
    # Within 5 standard errors (and a tiny floor for zero-variance entries).
    np.testing.assert_array_less(np.abs(mean - np.asarray(exact[name])),
                                 5 * stderr + 1e-4)
    # The check has power: the gradient is far from zero.
  assert np.abs(np.asarray(exact["l2"])).max() > 0.02


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_model_based_step_agrees_with_tabular_nash_md_gradient(beta):
  """Single prompt, one-token responses: the mean of the model-based
  estimator (our `regularised_advantages` + `reinforce_loss`) equals the
  tabular module's exact expected Nash-MD-PG gradient."""
  from nlhf_jax.tabular import policy_gradient as tabular_pg  # pylint: disable=g-import-not-at-top
  n, tau, num = 5, 0.2, 400_000
  rng = np.random.default_rng(3)
  logits = rng.normal(size=n)
  mu = rng.dirichlet(np.ones(n))
  prefs = _random_prefs(rng, n)
  exact = tabular_pg.nash_md_pg_expected_gradient(logits, mu, prefs, beta,
                                                  tau)
  opponent = tabular_pg.mixture_opponent(logits, mu, beta)

  def loss(theta, y, y2):
    logp = jax.nn.log_softmax(theta)[y][:, None]
    logr = jnp.log(jnp.asarray(mu, jnp.float32))[y][:, None]
    p = jnp.asarray(prefs, jnp.float32)[y, y2]
    mask = jnp.ones_like(logp)
    adv = pg.regularised_advantages(pg.nash_md_signal(p), logp, logr, mask,
                                    tau)
    return pg.reinforce_loss(logp, adv, mask)

  theta = jnp.asarray(logits, jnp.float32)
  grads = []
  for key in jax.random.split(jax.random.PRNGKey(0), 8):
    k1, k2 = jax.random.split(key)
    y = jax.random.categorical(k1, theta, shape=(num // 8,))
    y2 = jax.random.categorical(k2, jnp.log(jnp.asarray(opponent)),
                                shape=(num // 8,))
    grads.append(-np.asarray(jax.grad(loss)(theta, y, y2)))
  grads = np.stack(grads)
  stderr = grads.std(0, ddof=1) / np.sqrt(len(grads))
  np.testing.assert_array_less(np.abs(grads.mean(0) - exact),
                               5 * stderr + 1e-4)
  assert np.abs(exact).max() > 0.02


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_model_based_ipo_md_loss_agrees_with_tabular_gradient(beta):
  """Single prompt, one-token responses, both drawn from the mixture ρ: the
  mean gradient of our `online_ipo_loss` equals the tabular module's exact
  expected IPO-MD gradient 4ρ(g − ⟨ρ, g⟩ − (Pρ − ½)/τ)."""
  from nlhf_jax.tabular import ipo  # pylint: disable=g-import-not-at-top
  from nlhf_jax.tabular import policy_gradient as tabular_pg  # pylint: disable=g-import-not-at-top
  n, tau, num = 5, 0.5, 400_000
  rng = np.random.default_rng(4)
  logits = rng.normal(size=n)
  mu = rng.dirichlet(np.ones(n))
  prefs = _random_prefs(rng, n)
  exact = ipo.ipo_expected_gradient(logits, mu, prefs, beta, tau)
  sampler = jnp.log(jnp.asarray(
      tabular_pg.mixture_opponent(logits, mu, beta), jnp.float32))
  log_mu = jnp.log(jnp.asarray(mu, jnp.float32))

  def loss(theta, y, y2):
    logp = jax.nn.log_softmax(theta)
    p = jnp.asarray(prefs, jnp.float32)[y, y2]
    return pg.online_ipo_loss(logp[y], log_mu[y], logp[y2], log_mu[y2], p,
                              tau)

  theta = jnp.asarray(logits, jnp.float32)
  grads = []
  for key in jax.random.split(jax.random.PRNGKey(0), 8):
    k1, k2 = jax.random.split(key)
    y = jax.random.categorical(k1, sampler, shape=(num // 8,))
    y2 = jax.random.categorical(k2, sampler, shape=(num // 8,))
    grads.append(np.asarray(jax.grad(loss)(theta, y, y2)))
  grads = np.stack(grads)
  stderr = grads.std(0, ddof=1) / np.sqrt(len(grads))
  np.testing.assert_array_less(np.abs(grads.mean(0) - exact),
                               5 * stderr + 1e-4)
  assert np.abs(exact).max() > 0.05


def test_anchored_advantages_closed_form():
  lp = jnp.array([[-1.0, -2.0]])
  lr = jnp.array([[-1.5, -1.0]])
  la = jnp.array([[-0.5, -2.5]])
  mask = jnp.ones((1, 2))
  p = jnp.array([0.9])
  adv = pg.anchored_advantages(pg.nash_md_signal(p), lp, lr, la, mask, 0.1,
                               2.0)
  # KL-to-go towards μ: −0.5, −1; towards a: 0, 0.5.
  expected = [[0.4 + 0.05 - 2.0 * 0.0, 0.4 + 0.1 - 2.0 * 0.5]]
  np.testing.assert_allclose(adv, expected, rtol=1e-6)
  np.testing.assert_array_equal(
      pg.anchored_advantages(pg.nash_md_signal(p), lp, lr, la, mask, 0.1,
                             0.0),
      pg.regularised_advantages(pg.nash_md_signal(p), lp, lr, mask, 0.1))


@pytest.mark.parametrize("method", ["nash_prox", "mpo"])
def test_model_based_anchored_steps_agree_with_tabular_gradient(method):
  """Single prompt, one-token responses: the mean of the deep Nash Prox
  (y' ~ anchor π_k, KL 1/η towards it) and MPO (y' ~ π, KL τ towards the
  magnet, none towards μ) estimators equals `tabular.anchored`'s exact
  gradient of the anchored objective."""
  from nlhf_jax.tabular import anchored  # pylint: disable=g-import-not-at-top
  n, num = 5, 400_000
  rng = np.random.default_rng(6)
  logits, prefs = rng.normal(size=n), _random_prefs(rng, n)
  mu, anchor = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
  pi = np.exp(logits) / np.exp(logits).sum()
  if method == "nash_prox":  # τ = 0.2, η = 2.
    opponent, tau, weight = anchor, 0.2, 0.5
  else:  # τ = 0.2 towards the magnet.
    opponent, tau, weight = pi, 0.0, 0.2
  exact = anchored.anchored_gradient(logits, prefs, opponent, np.log(mu), tau,
                                     np.log(anchor), weight)
  log_mu, log_anchor = (jnp.log(jnp.asarray(q, jnp.float32))
                        for q in (mu, anchor))

  def loss(theta, y, y2):
    logp = jax.nn.log_softmax(theta)[y][:, None]
    p = jnp.asarray(prefs, jnp.float32)[y, y2]
    mask = jnp.ones_like(logp)
    adv = pg.anchored_advantages(pg.nash_md_signal(p), logp,
                                 log_mu[y][:, None], log_anchor[y][:, None],
                                 mask, tau, weight)
    return pg.reinforce_loss(logp, adv, mask)

  theta = jnp.asarray(logits, jnp.float32)
  log_opponent = jnp.log(jnp.asarray(opponent, jnp.float32))
  grads = []
  for key in jax.random.split(jax.random.PRNGKey(0), 8):
    k1, k2 = jax.random.split(key)
    y = jax.random.categorical(k1, theta, shape=(num // 8,))
    y2 = jax.random.categorical(k2, log_opponent, shape=(num // 8,))
    grads.append(-np.asarray(jax.grad(loss)(theta, y, y2)))
  grads = np.stack(grads)
  stderr = grads.std(0, ddof=1) / np.sqrt(len(grads))
  np.testing.assert_array_less(np.abs(grads.mean(0) - exact),
                               5 * stderr + 1e-4)
  assert np.abs(exact).max() > 0.02
