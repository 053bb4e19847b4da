"""Run Alembic migrations from code (CLI, startup, tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

_ROOT = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    ini = _ini_path()
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def _ini_path() -> Path:
    # Editable installs and source checkouts: alembic.ini sits at the project root.
    for parent in _ROOT.parents:
        candidate = parent / "alembic.ini"
        if candidate.is_file() and (parent / "migrations").is_dir():
            return candidate
    raise RuntimeError("alembic.ini not found beside the askgate sources")


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking: call it outside the event loop (or in a thread)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
