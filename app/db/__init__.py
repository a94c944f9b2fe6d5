"""Database: engine and session helper, table base, the audit log, alembic migrations."""

from app.db.session import Database, normalize_url, sqlite_database_path

__all__ = ["Database", "normalize_url", "sqlite_database_path"]
