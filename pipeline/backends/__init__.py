"""Negatives backends: the interface and the offline ones."""
