"""The negatives pipeline: load -> pos -> dictionary -> masked -> negatives, as a Prefect flow."""
