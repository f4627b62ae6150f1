"""The bottom layer: what every other layer uses, knowing no table.

`errors` (the hierarchy and the translation of driver errors), `jsoncodec` (lossless JSON),
`types` (portable column types), `portable` (the only dialect-specific SQL), `settings`
(URLs and engines), `validation` (argument checks), `operations` (the declarations the
public faces are made from), `sequences`, `wandb_files` (reading W&B's run files).
"""
