"""A small blog service built with FastAPI and sqla_repo."""
