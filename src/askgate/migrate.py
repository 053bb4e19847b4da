"""Run Alembic migrations from code (CLI, startup, tests)."""

import multiprocessing
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where used: a serving process that never loads Alembic (and Mako)
    # is ~12 MB smaller (see upgrade_in_child).
    from alembic.config import Config

# The migrations ship inside the package, so an installed wheel (no source tree,
# no alembic.ini) can migrate; alembic.ini at the project root points here too,
# for developers' `alembic revision`.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class MigrationRefused(Exception):
    """A migration stopped, changing nothing, because the data needs a person's
    decision; the message says what to do (for the operator, in one line)."""


def alembic_config(url: str) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call it outside the event loop (or in a thread)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def upgrade_in_child(url: str) -> bool:
    """`upgrade` in a forked process, so that the caller (the server about to
    serve) never holds Alembic in memory; False if it failed (the child has
    printed why)."""
    child = multiprocessing.get_context("fork").Process(
        target=_upgrade_in_child, args=(url,)
    )
    child.start()
    child.join()
    return child.exitcode == 0


def _upgrade_in_child(url: str) -> None:
    try:
        upgrade(url)
    except MigrationRefused as exc:  # one line, no traceback: the data is the issue
        print(f"askgate: {exc}", file=sys.stderr)
        sys.exit(1)
