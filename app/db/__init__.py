"""Database: engine and session helper, ORM models, alembic migrations."""

from app.db.session import Database, normalize_url

__all__ = ["Database", "normalize_url"]
