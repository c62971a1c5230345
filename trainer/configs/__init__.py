"""YAML layers of the training config (see trainer.config)."""
