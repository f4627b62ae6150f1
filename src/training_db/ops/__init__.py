"""Use cases that span transactions or files, built on `training_db.db.Database`.

`wandb_import` (W&B runs from their local files), `curves` (finders and plots across runs,
with the pure detectors in `analysis` and the optional matplotlib drawing in `plots`),
`transfer` (copy between backends, SQLite backup and restore) and `demo`.
"""
