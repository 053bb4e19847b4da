"""`askgate serve` as a real process with a models file: it asks the file's
upstreams, never starts the bundled model, and logs no API key."""

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.fake_upstream import FakeUpstream, answer_for

KEY = "sk-serve-secret-0123456789"
ADMIN = {"username": "serveadmin", "password": "an admin test passphrase"}
STARTUP_LIMIT = 120  # seconds: a guard against hanging, not a speed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_for_health(
    client: httpx.AsyncClient, process: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(STARTUP_LIMIT):
        while True:
            assert process.returncode is None, "serve stopped"
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def test_serve_answers_from_the_models_file(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    models = tmp_path / "models.json"
    models.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "house",
                        "base_url": fake_upstream.base_url,
                        "api_key_env": "HOUSE_KEY",
                        "model": "house-upstream",
                    }
                ]
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env.update(
        ASKGATE_DATA_DIR=str(tmp_path / "data"),
        ASKGATE_MODELS_FILE=str(models),
        ASKGATE_LOG_LEVEL="DEBUG",
        ASKGATE_ADMIN_USERNAME=ADMIN["username"],
        ASKGATE_ADMIN_PASSWORD=ADMIN["password"],
        HOUSE_KEY=KEY,
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "askgate.cli",
            "serve",
            "--port",
            str(port),
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _wait_for_health(client, process)
            account = {"username": "serveuser", "password": "a long test passphrase"}
            registered = await client.post("/auth/register", json=account)
            assert registered.status_code == 201, registered.text
            token = (await client.post("/auth/token", data=account)).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            asked = await client.post(
                "/questions",
                json={"content": "Who answers?", "model": "house"},
                headers=headers,
            )
            admin = (await client.post("/auth/token", data=ADMIN)).json()
            health = (
                await client.get(
                    "/health",
                    headers={"Authorization": f"Bearer {admin['access_token']}"},
                )
            ).json()
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()

    assert asked.status_code == 201, asked.text
    assert asked.json()["answer"] == answer_for("Who answers?")
    assert asked.json()["model"] == "house"
    assert [r["model"] for r in fake_upstream.requests] == ["house-upstream"]
    assert fake_upstream.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert health["llm"] == "ok"
    assert health["upstreams"][0]["model"] == "house"
    output = log.read_text()
    url = f"http://127.0.0.1:{port}"
    assert f"web page at {url}/ and API docs at {url}/docs" in output
    assert "bundled model" not in output
    assert KEY not in output
    assert KEY not in json.dumps(health)
