"""Alembic environment: async engine from askgate's settings.

`askgate.migrate` passes the URL in `config.attributes["url"]`; plain `alembic`
commands (run from the project root, with alembic.ini) fall back to the settings
(ASKGATE_DATABASE_URL or the SQLite default).
"""

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

import askgate.models  # noqa: F401  (registers every table on Base.metadata)
from askgate.config import Settings
from askgate.db import Base, create_engine

config = context.config
# Only a developer's `alembic` command reads alembic.ini; askgate.migrate builds its
# Config in code (no file) and leaves logging to askgate's own configuration.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url")
    if isinstance(url, str):
        return url
    return Settings().sqlalchemy_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
