"""Schema handling: the embedded default migrates itself; surprises are named."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway import db


def test_sqlite_migrates_itself_and_refuses_a_newer_schema(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    db.ensure_schema(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(text("pragma synchronous")).scalar() == 2  # FULL
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = 'zz99'"))
    with pytest.raises(db.SchemaOutOfDate, match="newer than this gateway knows"):
        db.ensure_schema(engine)
    engine.dispose()


def test_migrations_match_the_models(db_url):
    """A model change without a migration (bash scripts/new-migration) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from gateway.models import Base
    from tests.conftest import migrate
    migrate(db_url)
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
