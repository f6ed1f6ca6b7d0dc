"""A tiny application tested with the sqla_repo.testing plugin."""
