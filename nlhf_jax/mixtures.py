"""Pure mixing primitives: token-level geometric mixtures and parameter EMA.

Nash-MD-PG's opponent is the "one-step-at-a-time" regularised policy
(paper.md §4.3-4.4): at every decoding step the next-token distribution is the
normalised geometric mixture of the policy π_θ and the reference μ,

  π̃(y_n | x, y_<n) = π_θ(y_n | ·)^{1−β} μ(y_n | ·)^β / C(x, y_<n),

i.e. next-token logits (1−β)·log π_θ + β·log μ followed by a softmax. β = 0 is
self-play (π̃ = π_θ), β = 1 best response to μ (π̃ = μ).

Nash-EMA-PG's opponent uses parameters θ̄ ← d·θ̄ + (1−d)·θ (`ema_update`).

Shape suffixes: `...` = any leading batch dims, v = vocabulary.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_unit_interval(name: str, value: Any) -> None:
  """Raises if a concrete (non-traced) `value` lies outside [0, 1]."""
  if isinstance(value, numbers.Real) and not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {value!r}.")


def geometric_mixture_logits(policy_log_probs_v: Array,
                             reference_log_probs_v: Array,
                             beta: Any) -> Array:
  """Unnormalised log-weights of the geometric mixture of two categoricals.

  m = (1 − β)·log π + β·log μ, elementwise over the last (vocabulary) axis.
  The end points are exact: β = 0 returns `policy_log_probs_v` and β = 1
  returns `reference_log_probs_v` bit for bit (also when the other input
  holds −inf), so samplers built on it reproduce the plain policy /
  reference exactly.

  Args:
    policy_log_probs_v: log π [..., v], normalised (log-softmax) log-probs.
    reference_log_probs_v: log μ [..., v], same shape.
    beta: mixing weight β ∈ [0, 1]: a Python number, a scalar array or an
      array broadcastable to [..., 1] (e.g. one β per row, [b, 1]); arrays
      are not range-checked.

  Returns:
    m [..., v] (float); `jax.nn.log_softmax(m)` is the normalised mixture.

  Raises:
    ValueError: on mismatched shapes or a concrete β outside [0, 1].
  """
  if policy_log_probs_v.shape != reference_log_probs_v.shape:
    raise ValueError(
        "geometric_mixture_logits: policy and reference log-probs must have "
        f"the same shape, got {policy_log_probs_v.shape} and "
        f"{reference_log_probs_v.shape}.")
  _check_unit_interval("geometric_mixture_logits: beta", beta)
  beta = jnp.asarray(beta, policy_log_probs_v.dtype)
  mixed = ((1 - beta) * policy_log_probs_v + beta * reference_log_probs_v)
  return jnp.where(beta == 0, policy_log_probs_v,
                   jnp.where(beta == 1, reference_log_probs_v, mixed))


def geometric_mixture_log_probs(policy_log_probs_v: Array,
                                reference_log_probs_v: Array,
                                beta: Any) -> Array:
  """Normalised log-probs of the geometric mixture π^{1−β} μ^β / C.

  log π̃ = m − log C with m = (1 − β)·log π + β·log μ and
  C = Σ_v π(v)^{1−β} μ(v)^β (see `geometric_mixture_log_normalizer`).

  Args:
    policy_log_probs_v: log π [..., v], normalised.
    reference_log_probs_v: log μ [..., v], normalised.
    beta: mixing weight β ∈ [0, 1].

  Returns:
    log π̃ [..., v], normalised over the last axis.
  """
  return jax.nn.log_softmax(
      geometric_mixture_logits(policy_log_probs_v, reference_log_probs_v,
                               beta), axis=-1)


def geometric_mixture_log_normalizer(policy_log_probs_v: Array,
                                     reference_log_probs_v: Array,
                                     beta: Any) -> Array:
  """log C = log Σ_v π(v)^{1−β} μ(v)^β, the per-step normaliser.

  By Hölder's inequality C ≤ 1 (log C ≤ 0) for normalised π, μ, with equality
  iff β ∈ {0, 1} or π = μ. For β = ½, C is the Bhattacharyya coefficient
  Σ √(π μ). The product over steps of these C(x, y_<n) is what makes the
  one-step-at-a-time policy differ from the sequence-level mixture.

  Args:
    policy_log_probs_v: log π [..., v], normalised.
    reference_log_probs_v: log μ [..., v], normalised.
    beta: mixing weight β ∈ [0, 1].

  Returns:
    log C [...].
  """
  return jax.nn.logsumexp(
      geometric_mixture_logits(policy_log_probs_v, reference_log_probs_v,
                               beta), axis=-1)


def ema_update(ema: Any, params: Any, decay: Any) -> Any:
  """Exponential moving average of parameters: d·θ̄ + (1 − d)·θ per leaf.

  Used by Nash-EMA-PG for the opponent parameters θ̄ (decay ≈ 0.999). Each
  result leaf keeps the dtype of the corresponding `ema` leaf.

  Args:
    ema: pytree of arrays θ̄ (the running average).
    params: pytree of arrays θ with the same structure and leaf shapes.
    decay: d ∈ [0, 1], a Python number or a scalar array.

  Returns:
    The updated average, same structure as `ema`.

  Raises:
    ValueError: on different tree structures or leaf shapes, or a concrete
      decay outside [0, 1].
  """
  _check_unit_interval("ema_update: decay", decay)
  ema_def = jax.tree.structure(ema)
  params_def = jax.tree.structure(params)
  if ema_def != params_def:
    raise ValueError("ema_update: `ema` and `params` have different tree "
                     f"structures:\n  ema:    {ema_def}\n  params: "
                     f"{params_def}")

  def one(path, e, p):
    if e.shape != p.shape:
      raise ValueError(
          f"ema_update: leaf {jax.tree_util.keystr(path)} has shape "
          f"{e.shape} in `ema` but {p.shape} in `params`.")
    d = jnp.asarray(decay, jnp.float32)
    mixed = d * e.astype(jnp.float32) + (1 - d) * p.astype(jnp.float32)
    return mixed.astype(e.dtype)

  return jax.tree_util.tree_map_with_path(one, ema, params)
