"""ASKGATE_ADMIN_USERNAME and ASKGATE_ADMIN_PASSWORD pass the checks of
`askgate create-admin` (username rules, password policy), or startup stops with
one line naming the setting and never repeating the password."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from askgate.app import create_app
from askgate.config import Settings
from tests.test_cli import run_cli

CASES = [
    pytest.param(
        "x y",
        "a long admin passphrase",
        "ASKGATE_ADMIN_USERNAME",
        "pattern",
        id="space",
    ),
    pytest.param(
        "x",
        "a long admin passphrase",
        "ASKGATE_ADMIN_USERNAME",
        "at least 3",
        id="short-name",
    ),
    pytest.param(
        "boss", "iloveyou", "ASKGATE_ADMIN_PASSWORD", "most common", id="common"
    ),
    pytest.param(
        "boss", "Sh0rt!", "ASKGATE_ADMIN_PASSWORD", "at least 8", id="short-password"
    ),
]


@pytest.mark.parametrize(("username", "password", "setting", "reason"), CASES)
def test_serve_stops_on_an_invalid_admin_from_the_environment(
    tmp_path: Path, username: str, password: str, setting: str, reason: str
) -> None:
    result = run_cli(
        "serve",
        "--port",
        "0",
        data_dir=tmp_path,
        ASKGATE_ADMIN_USERNAME=username,
        ASKGATE_ADMIN_PASSWORD=password,
        ASKGATE_LLM_BASE_URL="http://127.0.0.1:9",
        ASKGATE_LLM_MODEL="model",
    )

    assert result.returncode == 2
    assert result.stderr.startswith(f"askgate: {setting}: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert reason in result.stderr
    assert password not in result.stderr + result.stdout
    assert not (tmp_path / "askgate.db").exists()  # stopped before anything


@pytest.mark.parametrize(("username", "password", "setting", "reason"), CASES)
def test_the_app_factory_stops_on_an_invalid_admin_from_the_environment(
    settings: Settings, username: str, password: str, setting: str, reason: str
) -> None:
    configured = settings.model_copy(
        update={"admin_username": username, "admin_password": SecretStr(password)}
    )

    with pytest.raises(ValueError, match=f"^{setting}: ") as raised:
        create_app(configured)

    message = str(raised.value)
    assert "\n" not in message
    assert reason in message
    assert password not in message


def test_both_invalid_name_both_settings(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"admin_username": "x y", "admin_password": SecretStr("password")}
    )

    with pytest.raises(ValueError, match=r"^ASKGATE_ADMIN_USERNAME: ") as raised:
        create_app(configured)

    lines = str(raised.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ASKGATE_ADMIN_USERNAME",
        "ASKGATE_ADMIN_PASSWORD",
    ]
