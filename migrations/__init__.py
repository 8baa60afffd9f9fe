"""Alembic migrations for the Quaff store."""
