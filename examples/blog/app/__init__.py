"""The blog application.

Layers, from the inside out:

* ``models`` and ``repositories``: the domain; they know SQLAlchemy and sqla_repo, not HTTP.
* ``services``: operations spanning several repositories, in the caller's transaction.
* ``db``: infrastructure (engine, sessions, tables).
* ``schemas``, ``dependencies`` and ``api``: the HTTP layer.
* ``main``: the application factory.
"""
