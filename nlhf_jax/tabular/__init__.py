"""Exact tabular NLHF: preference matrices, Nash equilibria and dynamics.

NumPy/SciPy, float64, no JAX. Modules, one concern each:
  simplex          probability vectors in log space, KL
  games            preference matrices: validation, random/cyclic/tournament
  contextual       per-prompt games with a prompt distribution rho
  bradley_terry    Bradley-Terry (Elo) fitting and the RLHF optimum
  equilibrium      P_tau, best responses, exploitability, Nash solvers
  dynamics         Nash-MD, online mirror descent, fictitious play, BR to mu
  policy_gradient  exact expected Nash-MD-PG gradient of a softmax policy
  examples         the paper's worked examples (three types, Elo, dice)
  compare          `python -m nlhf_jax.tabular.compare` plot + CSV
"""
