"""deploy/: the compose file, the Dockerfile and the systemd units agree with each
other, with nginx's config and with askgate's settings.

No container engine can pull the base images here, so the Dockerfile and
compose.yaml are checked as text and YAML; the units go through
`systemd-analyze verify` where it is installed.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from askgate.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
NGINX_CONF = DEPLOY / "nginx" / "askgate.conf"
SETTINGS = {f"ASKGATE_{name.upper()}" for name in Settings.model_fields}
INSTANCES = ("askgate-1", "askgate-2")
ASKGATE_SERVICES = ("migrate", *INSTANCES)
# The grace period askgate gives running questions on SIGTERM, in seconds: the
# setting's default once it exists, else the 30 s the issue names.
_GRACE_FIELD = Settings.model_fields.get("shutdown_grace_seconds")
GRACE_SECONDS = float(_GRACE_FIELD.default) if _GRACE_FIELD else 30.0


def _names(text: str) -> set[str]:
    return set(re.findall(r"\bASKGATE_[A-Z0-9_]+\b", text))


def _interpolated(value: str) -> str:
    """What compose makes of `${NAME}`, `${NAME:-default}` or `${NAME:?error}`,
    with `value-of-NAME` as every variable's value."""
    return re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", r"value-of-\1", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][name]
    return service


def _environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    return {
        key: _interpolated(str(value))
        for key, value in _service(compose, name).get("environment", {}).items()
    }


def _serve_port(command: list[str]) -> int:
    assert command[:2] == ["askgate", "serve"], command
    return int(command[command.index("--port") + 1])


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match[1])


def test_compose_has_two_instances_behind_nginx_on_postgres_and_redis(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {*ASKGATE_SERVICES, "postgres", "redis", "nginx"}
    ports = [_serve_port(_service(compose, name)["command"]) for name in INSTANCES]
    assert len(set(ports)) == len(INSTANCES)
    for name in INSTANCES:
        instance = _service(compose, name)
        # In nginx's network namespace: nginx reaches it on 127.0.0.1, nothing
        # else on the compose network reaches it at all.
        assert instance["network_mode"] == "service:nginx"
        assert instance["command"][instance["command"].index("--host") + 1] == (
            "127.0.0.1"
        )
        assert "ports" not in instance
    for name in ASKGATE_SERVICES:
        service = _service(compose, name)
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (
            DEPLOY / service["build"]["context"] / "deploy" / "Dockerfile"
        ).is_file()
        assert _seconds(service["stop_grace_period"]) > GRACE_SECONDS
    assert _service(compose, "migrate")["command"] == ["askgate", "db", "upgrade"]
    assert set(_service(compose, "nginx")["ports"]) == {"80:80", "443:443"}


def test_compose_names_only_real_settings(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert _names(text) - SETTINGS == set()
    for name in ASKGATE_SERVICES:
        assert set(_environment(compose, name)) <= SETTINGS


def test_compose_instances_share_one_database_redis_and_key(
    compose: dict[str, Any],
) -> None:
    environments = [_environment(compose, name) for name in ASKGATE_SERVICES]
    shared = ("ASKGATE_DATABASE_URL", "ASKGATE_REDIS_URL", "ASKGATE_SECRET_KEY")
    for key in shared:
        assert len({environment[key] for environment in environments}) == 1, key
    environment = environments[0]
    # nginx connects from 127.0.0.1 (the shared network namespace).
    assert environment["ASKGATE_TRUSTED_PROXIES"] == "127.0.0.1"

    postgres = {
        key: _interpolated(str(value))
        for key, value in _service(compose, "postgres")["environment"].items()
    }
    database = make_url(environment["ASKGATE_DATABASE_URL"])
    assert database.drivername == "postgresql+asyncpg"
    assert (database.host, database.port) == ("postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.database == postgres["POSTGRES_DB"]
    assert environment["ASKGATE_REDIS_URL"].startswith("redis://redis:6379/")


def test_compose_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    for name in ("postgres", "redis", *INSTANCES):
        assert _service(compose, name)["healthcheck"]["test"][0] == "CMD", name
    for name in INSTANCES:
        instance = _service(compose, name)
        probe = " ".join(instance["healthcheck"]["test"])
        port = _serve_port(instance["command"])
        assert f"http://127.0.0.1:{port}/health/live" in probe
        assert instance["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "nginx": {"condition": "service_started"},
        }
    migrate = _service(compose, "migrate")
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_compose_env_example_sets_every_required_variable() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (DEPLOY / "env.example").read_text()
    given = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert "POSTGRES_PASSWORD" in required
    assert required <= given
    assert _names(example) - SETTINGS == set()


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or the older `docker-compose`, if here."""
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_validates_its_own_schema() -> None:
    """`compose config` checks the file against the compose specification (no
    daemon needed), with deploy/env.example's values."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    example = (DEPLOY / "env.example").read_text()
    values = dict(re.findall(r"^(\w+)=(.*)$", example, flags=re.MULTILINE))
    checked = subprocess.run(
        [*command, "--file", "compose.yaml", "config", "--quiet"],
        cwd=DEPLOY,
        env={**os.environ, **values},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def _nginx_volumes(compose: dict[str, Any]) -> dict[str, str]:
    """Each mounted file or folder of the nginx service: source -> target."""
    volumes: dict[str, str] = {}
    for volume in _service(compose, "nginx")["volumes"]:
        source, target, _mode = volume.split(":")
        volumes[source] = target
    return volumes


def test_compose_mounts_the_shipped_nginx_config(compose: dict[str, Any]) -> None:
    volumes = _nginx_volumes(compose)
    # An http-context file, as Debian's and the nginx image's nginx.conf include.
    assert volumes["./nginx/askgate.conf"] == "/etc/nginx/conf.d/default.conf"
    assert volumes["./nginx/certs"] == "/etc/nginx/certs"
    if not NGINX_CONF.exists():
        pytest.skip("deploy/nginx/askgate.conf is not in this tree yet")
    conf = NGINX_CONF.read_text()
    assert not re.search(r"^\s*http\s*\{", conf, flags=re.MULTILINE)

    upstream = re.search(r"upstream askgate \{(.*?)\}", conf, flags=re.DOTALL)
    assert upstream
    servers = re.findall(r"^\s*server\s+([\d.]+):(\d+)", upstream[1], re.MULTILINE)
    instance_ports = {
        _serve_port(_service(compose, name)["command"]) for name in INSTANCES
    }
    assert {host for host, _port in servers} == {"127.0.0.1"}
    assert {int(port) for _host, port in servers} == instance_ports
    certificates = re.findall(r"^\s*ssl_certificate(?:_key)?\s+(\S+);", conf, re.M)
    assert certificates
    assert all(path.startswith("/etc/nginx/certs/") for path in certificates)
    assert re.search(r"listen 443 ssl", conf)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (keyword.upper(), rest.strip())
        for keyword, rest in (
            line.strip().split(maxsplit=1) for line in joined.splitlines() if line
        )
    ]


def test_dockerfile_installs_the_wheel_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip wheel" in runs
    assert "--no-deps" in runs
    assert re.search(r"pip install \S* ?/wheels/askgate-\*\.whl", runs)
    assert " -e " not in runs
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users == ["askgate"]
    # The last stage runs as that user: USER comes after its FROM.
    keywords = [keyword for keyword, _rest in instructions]
    assert keywords.index("USER") > len(keywords) - 1 - keywords[::-1].index("FROM")

    (expose,) = (rest for keyword, rest in instructions if keyword == "EXPOSE")
    (command,) = (rest for keyword, rest in instructions if keyword == "CMD")
    (healthcheck,) = (
        rest for keyword, rest in instructions if keyword == "HEALTHCHECK"
    )
    port = _serve_port(yaml.safe_load(command))
    assert int(expose) == port
    assert f"http://127.0.0.1:{port}/health/live" in healthcheck
    assert _names((DEPLOY / "Dockerfile").read_text()) - SETTINGS == set()


def test_the_docker_build_context_is_enough_for_the_wheel(tmp_path: Path) -> None:
    """What the build stage copies (and the .dockerignore lets through) builds
    the wheel on its own, migrations included."""
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :][:3] == [
        "!pyproject.toml",
        "!README.md",
        "!src/",
    ]
    copies = [rest for keyword, rest in _dockerfile_instructions() if keyword == "COPY"]
    assert copies[:2] == ["pyproject.toml README.md ./", "src ./src"]

    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(
        ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
            *("--wheel-dir", str(tmp_path / "wheels"), str(context)),
        ],
        capture_output=True,
        timeout=300,
        check=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("askgate-*.whl")
    assert "askgate/migrations/env.py" in zipfile.ZipFile(wheel).namelist()


def _unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists: keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, value = line.split("=", 1)
            current.append((key, value))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


HARDENING = {
    "DynamicUser": "yes",
    "User": "askgate",
    "StateDirectory": "askgate",
    "StateDirectoryMode": "0700",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
}


def test_systemd_units_start_instances_after_the_migrations() -> None:
    instance = _unit("askgate@.service")
    migrate = _unit("askgate-migrate.service")

    (start,) = _values(instance["Service"], "ExecStart")
    assert start.split()[1:] == [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "800%i",
    ]
    assert "askgate-migrate.service" in _values(instance["Unit"], "Requires")
    assert "askgate-migrate.service" in " ".join(_values(instance["Unit"], "After"))
    (stop_after,) = _values(instance["Service"], "TimeoutStopSec")
    assert float(stop_after) > GRACE_SECONDS

    assert _values(migrate["Service"], "Type") == ["oneshot"]
    (upgrade,) = _values(migrate["Service"], "ExecStart")
    assert upgrade.split()[1:] == ["db", "upgrade"]
    assert upgrade.split()[0] == start.split()[0]
    for unit in (instance, migrate):
        service = unit["Service"]
        assert _values(service, "EnvironmentFile") == ["/etc/askgate/env"]
        for key, value in HARDENING.items():
            assert _values(service, key) == [value], key


def test_systemd_files_name_only_real_settings() -> None:
    for path in UNITS.iterdir():
        assert _names(path.read_text()) - SETTINGS == set(), path.name
    example = (UNITS / "env.example").read_text()
    assigned = set(re.findall(r"^#?(ASKGATE_\w+)=", example, flags=re.MULTILINE))
    assert assigned
    assert assigned <= SETTINGS
    for unit in ("askgate@.service", "askgate-migrate.service"):
        for assignment in _values(_unit(unit)["Service"], "Environment"):
            assert assignment.split("=", 1)[0] in SETTINGS


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """The units as shipped, but for the askgate command's path (verify checks
    that it is executable): the test venv's."""
    askgate = Path(sys.executable).with_name("askgate")
    assert askgate.is_file()
    for name in ("askgate@.service", "askgate-migrate.service"):
        text = (UNITS / name).read_text()
        assert "/opt/askgate/bin/askgate" in text
        (tmp_path / name).write_text(
            text.replace("/opt/askgate/bin/askgate", str(askgate))
        )

    verified = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / "askgate@1.service"),
            str(tmp_path / "askgate-migrate.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # It exits 0 on unknown keys and bad values too, and says so on stderr.
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    assert verified.stdout == ""
