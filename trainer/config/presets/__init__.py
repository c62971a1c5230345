"""YAML presets of the training config (data files; loaded by :func:`trainer.config.load_config`)."""
