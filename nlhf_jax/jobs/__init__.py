"""Jobs: the one layer that wires configs, checkpoints, data and the trainer.

  supervised   sft_job, scorer_job (the preference or reward model)
  online_job   online_job (Nash-MD-PG, Nash-EMA-PG, self-play, best
               response, RLHF, Online IPO: the algorithm's step factory is
               chosen in gin)
  judges       the judge configs of online runs (gin JUDGE): the learned
               preference / reward model, the synthetic world's exact P*,
               Python or JAX functions, ensembles
  training     run_training: the workdir lease, the run-spec check, data
               iterators and initial weights around `trainer.train`
  lease        one writer per workdir (lease.json with a heartbeat)

Layers point one way: models <- algorithms (configs and pure
`make_train_step` / `make_evaluator`) <- jobs (gin-bound entry points) <-
tools (main, sweep, demo, aot). Algorithm modules never import the trainer,
checkpointing, a data source or gin (tests/jobs/import_graph_test.py).
"""
