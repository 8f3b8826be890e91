"""Jobs: the one layer that wires configs, checkpoints, data and the trainer.

  supervised   sft_job, preference_model_job, reward_model_job
  online_job   online_job (Nash-MD-PG, Nash-EMA-PG, self-play, best
               response, RLHF, Online IPO: the algorithm's step factory is
               chosen in gin) and FrozenModels

Layers point one way: models <- algorithms (configs and pure
`make_train_step` / `make_evaluator`) <- jobs (gin-bound entry points) <-
tools (main, sweep, demo, aot). Algorithm modules never import the trainer,
checkpointing, a data source or gin (tests/jobs/import_graph_test.py).
"""
