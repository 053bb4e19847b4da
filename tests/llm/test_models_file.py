"""The models file: each field checked at startup, an invalid file stopping it
with one message naming the entry and the field, and never an API key."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from askgate.app import create_app
from askgate.config import Settings
from askgate.llm.models_file import ModelsFileError, load_models_file
from tests.conftest import TEST_SECRET_KEY
from tests.test_cli import run_cli

SECRET = "sk-file-secret-0123456789"
ENV_SECRET = "sk-env-secret-0123456789"


def entry(name: str | None = "fast", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "base_url": "https://api.example.com/v1",
        "api_key": SECRET,
        "model": "gpt-4o-mini",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def write(path: Path, data: Any) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def startup_error(tmp_path: Path, models_file: Path) -> str:
    """What stops create_app, as `askgate serve`'s workers run it."""
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        secret_key=TEST_SECRET_KEY,
        models_file=models_file,
    )
    with pytest.raises(ModelsFileError) as caught:
        create_app(settings)
    message = str(caught.value)
    assert SECRET not in message
    assert ENV_SECRET not in message
    assert not (tmp_path / "data").exists()  # stopped before writing anything
    return message


INVALID_ENTRIES = [
    pytest.param(
        [entry(model=None)], "entry 1 (fast): model: is required", id="missing-field"
    ),
    pytest.param([entry(name=None)], "entry 1: name: is required", id="missing-name"),
    pytest.param(
        [entry(colour="red")],
        "entry 1 (fast): colour: is not a known field",
        id="unknown-field",
    ),
    pytest.param(
        [entry(base_url="ftp://example.com/v1")],
        "entry 1 (fast): base_url: must be an http:// or https:// URL with a host",
        id="url-scheme",
    ),
    pytest.param(
        [entry(base_url="https://")],
        "entry 1 (fast): base_url: must be an http:// or https:// URL with a host",
        id="url-without-host",
    ),
    pytest.param(
        [entry(base_url="http://example.com:99999/v1")],
        "entry 1 (fast): base_url: must be a valid http:// or https:// URL",
        id="url-port",
    ),
    pytest.param(
        [entry(base_url=f"https://me:{SECRET}@example.com/v1")],
        "entry 1 (fast): base_url: must not hold credentials",
        id="url-credentials",
    ),
    pytest.param(
        [entry(base_url=7)],
        "entry 1 (fast): base_url: Input should be a valid string",
        id="url-not-a-string",
    ),
    pytest.param(
        [entry(name="two words")],
        "entry 1: name: String should match pattern",
        id="name-pattern",
    ),
    pytest.param(
        [entry(name="x" * 201)],
        "entry 1: name: String should have at most 200 characters",
        id="name-too-long",
    ),
    pytest.param(
        [entry(max_tokens_limit=0)],
        "entry 1 (fast): max_tokens_limit: Input should be greater than or equal to 1",
        id="limit-zero",
    ),
    pytest.param(
        [entry(max_tokens_limit="100")],
        "entry 1 (fast): max_tokens_limit: Input should be a valid integer",
        id="limit-string",
    ),
    pytest.param(
        [entry(), entry("slow", fallbacks=["fast", "nope"])],
        "entry 2 (slow): fallbacks: no entry is named nope",
        id="fallback-unknown",
    ),
    pytest.param(
        [entry(fallbacks=["fast"])],
        "entry 1 (fast): fallbacks: fast is the entry itself",
        id="fallback-itself",
    ),
    pytest.param(
        [entry(), entry("slow", fallbacks=["fast", "fast"])],
        "entry 2 (slow): fallbacks: fast named twice",
        id="fallback-twice",
    ),
    pytest.param(
        [entry(), entry("slow"), entry("fast", model="other")],
        "entry 3 (fast): name: an earlier entry has the same name",
        id="duplicate-names",
    ),
    pytest.param(
        [entry(api_key_env="FAST_KEY")],
        "entry 1 (fast): api_key, api_key_env: give one of them, not both",
        id="both-keys",
    ),
    pytest.param(
        [entry(api_key=None)],
        "entry 1 (fast): api_key or api_key_env is required",
        id="neither-key",
    ),
    pytest.param(
        [entry(api_key=None, api_key_env="ASKGATE_TEST_UNSET_KEY")],
        "entry 1 (fast): api_key_env: the environment variable "
        "ASKGATE_TEST_UNSET_KEY is not set",
        id="env-missing",
    ),
    pytest.param(
        [entry(api_key=None, api_key_env="NOT-A-NAME")],
        "entry 1 (fast): api_key_env: String should match pattern",
        id="env-name",
    ),
    pytest.param(
        [entry(api_key=12345)],
        "entry 1 (fast): api_key: Input should be a valid string",
        id="key-not-a-string",
    ),
    pytest.param([], "models: must list at least one model", id="no-models"),
]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize(("models", "expected"), INVALID_ENTRIES)
def test_an_invalid_entry_stops_startup_naming_the_entry_and_field(
    tmp_path: Path, suffix: str, models: list[dict[str, Any]], expected: str
) -> None:
    path = write(tmp_path / f"models{suffix}", {"models": models})

    message = startup_error(tmp_path, path)

    assert message.startswith(f"ASKGATE_MODELS_FILE={path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("models.yaml", "- just a list\n", "must hold a mapping with a `models` list"),
        ("models.yaml", "", "must hold a mapping with a `models` list"),
        ("models.yaml", "models: [}\n", "invalid YAML at line 1, column 10"),
        ("models.json", '{"models": [', "invalid JSON at line 1, column 13"),
        ("models.yaml", "model: []\n", "model: is not a known field"),
        ("models.json", b"\xff\xfe".decode("latin-1"), "not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_a_models_file_stops_startup(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))

    assert expected in startup_error(tmp_path, path)


def test_a_parse_error_does_not_quote_the_line_holding_a_key(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  - api_key: {SECRET}: oops\n")

    assert "invalid YAML at line 2" in startup_error(tmp_path, path)


def test_a_missing_file_stops_startup(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    assert startup_error(tmp_path, path) == (
        f"ASKGATE_MODELS_FILE={path}: No such file or directory"
    )


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_yaml_and_json_files_give_the_same_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setenv("SLOW_KEY", ENV_SECRET)
    models = [
        entry(fallbacks=["slow"], max_tokens_limit=4096),
        entry(
            "slow",
            base_url="http://localhost:11434/v1/",
            api_key=None,
            api_key_env="SLOW_KEY",
            model="llama3",
        ),
        entry("local", api_key=""),
    ]
    path = write(tmp_path / f"models{suffix}", {"models": models})

    entries = load_models_file(path)

    assert [e.name for e in entries] == ["fast", "slow", "local"]
    assert [e.key() for e in entries] == [SECRET, ENV_SECRET, None]
    assert entries[1].base_url == "http://localhost:11434/v1"
    assert entries[0].fallbacks == ["slow"]
    assert entries[0].max_tokens_limit == 4096
    assert SECRET not in repr(entries)
    assert ENV_SECRET not in repr(entries)


def test_the_file_and_the_llm_settings_are_one_or_the_other(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set one or the other"):
        Settings(
            _env_file=None,
            models_file=tmp_path / "models.yaml",
            llm_base_url="http://localhost:8080/v1",
            llm_model="m",
        )


def test_serve_stops_on_an_invalid_file_in_one_message(tmp_path: Path) -> None:
    path = write(
        tmp_path / "models.yaml", {"models": [entry(base_url="example.com/v1")]}
    )
    data_dir = tmp_path / "data"

    result = run_cli("serve", data_dir=data_dir, ASKGATE_MODELS_FILE=str(path))

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"askgate: ASKGATE_MODELS_FILE={path}: entry 1 (fast): base_url: "
        "must be an http:// or https:// URL with a host"
    )
    assert SECRET not in result.stderr
    assert (data_dir / "askgate.db").stat().st_size == 0  # not migrated
