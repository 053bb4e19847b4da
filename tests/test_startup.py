"""What happens when the app starts: the data directory, the first admin from the
environment."""

import asyncio
import stat
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from askgate import migrate
from askgate.app import create_app
from askgate.config import Settings


async def _roles(app: FastAPI) -> dict[str, str]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        roles = {}
        attempts = (
            ("boss", "first admin passphrase"),
            ("other", "first admin passphrase"),
            ("admin", "admin"),  # no default credentials anywhere
        )
        for name, password in attempts:
            response = await client.post(
                "/auth/token", data={"username": name, "password": password}
            )
            if response.status_code == 200:
                token = response.json()["access_token"]
                me = await client.get(
                    "/users/me", headers={"Authorization": f"Bearer {token}"}
                )
                roles[name] = me.json()["role"]
        return roles


async def test_admin_from_environment_is_created_once(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "admin_username": "boss",
            "admin_password": SecretStr("first admin passphrase"),
        }
    )
    assert await _roles(create_app(configured)) == {"boss": "admin"}
    # A second start with another name creates nobody: an admin exists already.
    renamed = configured.model_copy(update={"admin_username": "other"})
    assert await _roles(create_app(renamed)) == {"boss": "admin"}


async def test_no_default_credentials(settings: Settings) -> None:
    assert await _roles(create_app(settings)) == {}


async def test_a_missing_data_dir_is_created_private(
    settings: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "new" / "data"
    configured = settings.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": None,  # the default database, in the data directory
            "admin_username": "boss",
            "admin_password": SecretStr("first admin passphrase"),
        }
    )
    assert configured.secret_key is not None

    app = create_app(configured)
    await asyncio.to_thread(migrate.upgrade, configured.sqlalchemy_url)  # as serve

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert await _roles(app) == {"boss": "admin"}
    assert (data_dir / "askgate.db").is_file()


def test_an_uncreatable_data_dir_fails_naming_the_setting(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / "data"
    configured = settings.model_copy(
        update={"data_dir": data_dir, "database_url": None}
    )

    with pytest.raises(ValueError, match=f"^ASKGATE_DATA_DIR={data_dir}: "):
        create_app(configured)
