"""What happens when the app starts: the first admin from the environment."""

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

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
