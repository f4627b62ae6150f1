"""Repository functions: each takes a ``Session``, does one unit of work and never commits.

One module per table family (`runs`, `tags`, `objectives`, `history`), plus `completion`
(writes that span families), `records` (the run dicts reads return), `filters` (the
``query_runs`` filters), `extraction` (config values copied into columns) and `wandb`
(recording one W&B run). Each family ends with its ``Operations`` class: the one-line
declarations of its public operations (see `training_db.core.operations`).
"""
