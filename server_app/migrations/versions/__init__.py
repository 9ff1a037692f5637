"""Alembic revisions of the server schema, oldest first (``0001_...``, ``0002_...``)."""
