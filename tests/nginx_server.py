"""nginx for the tests, run with the config the repo ships (deploy/nginx/askgate.conf).

The shipped file is an http-context file (it goes into /etc/nginx/conf.d/). A test
runs a copy of it in which only the listen addresses and ports, the certificate
paths, the upstream servers and the access log path are changed (`site_config`
checks that each of them is found where the shipped file has it), included from a
small main config of the test's own that keeps every file under a temporary
prefix. `make test` installs Debian's nginx when it is missing (see the Makefile);
elsewhere the nginx tests are skipped when it is not installed, except under CI.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SHIPPED_CONFIG = Path(__file__).parent.parent / "deploy" / "nginx" / "askgate.conf"
STOP_TIMEOUT_SECONDS = 30


def nginx_binary() -> str:
    executable = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if executable is not None:
        return executable
    message = "nginx is not installed: run `make nginx` (apt-get install nginx)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the nginx tests: {message}")
    pytest.skip(message)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def self_signed_certificate(directory: Path) -> Certificate:
    """A throwaway certificate for 127.0.0.1 and localhost (openssl's CLI)."""
    cert, key = directory / "test.crt", directory / "test.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            "-nodes",
            *("-keyout", str(key), "-out", str(cert)),
            *("-days", "2", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert=cert, key=key)


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    """The one match of `pattern`: the shipped file must have it exactly once."""
    result, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == 1, f"{SHIPPED_CONFIG}: {pattern!r} found {found} times, not once"
    return result


def site_config(
    *,
    https_port: int,
    http_port: int,
    instances: list[int],
    certificate: Certificate,
    access_log: Path,
) -> str:
    """The shipped config with only its ports, paths and upstream servers changed."""
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in instances)
    substitutions = [
        (r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        (r"listen \[::\]:443 ssl;", f"listen [::1]:{https_port} ssl;"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen \[::\]:80;", f"listen [::1]:{http_port};"),
        (r"ssl_certificate \S+;", f"ssl_certificate {certificate.cert};"),
        (r"ssl_certificate_key \S+;", f"ssl_certificate_key {certificate.key};"),
        (r"access_log \S+ askgate;", f"access_log {access_log} askgate;"),
        (r"(?:^    server 127\.0\.0\.1:\d+;\n)+", servers),
    ]
    text = SHIPPED_CONFIG.read_text()
    for pattern, replacement in substitutions:
        text = _replace_once(text, pattern, replacement)
    return text


def main_config(prefix: Path, site: Path) -> str:
    """nginx.conf around the site file: foreground, every file under `prefix`."""
    # As root the workers would run as `nobody`, who cannot enter pytest's
    # private temporary directories (request bodies are written under it).
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"{temp}\n"
        f"    access_log {prefix / 'default-access.log'};\n"
        f"    include {site};\n"
        "}\n"
    )


@dataclass(frozen=True)
class NginxConfig:
    prefix: Path
    main: Path
    site: Path
    access_log: Path
    error_log: Path

    def command(self, *extra: str) -> list[str]:
        return [
            nginx_binary(),
            *("-p", str(self.prefix)),
            *("-c", str(self.main)),
            *("-e", str(self.error_log)),
            *extra,
        ]


def write_config(
    prefix: Path,
    *,
    https_port: int,
    http_port: int,
    instances: list[int],
    certificate: Certificate,
) -> NginxConfig:
    prefix.mkdir(parents=True, exist_ok=True)
    config = NginxConfig(
        prefix=prefix,
        main=prefix / "nginx.conf",
        site=prefix / "askgate.conf",
        access_log=prefix / "access.log",
        error_log=prefix / "error.log",
    )
    config.site.write_text(
        site_config(
            https_port=https_port,
            http_port=http_port,
            instances=instances,
            certificate=certificate,
            access_log=config.access_log,
        )
    )
    config.main.write_text(main_config(prefix, config.site))
    return config


def check_config(config: NginxConfig) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the config."""
    return subprocess.run(
        config.command("-t"), capture_output=True, text=True, check=False
    )


def start(config: NginxConfig) -> subprocess.Popen[bytes]:
    """nginx in the foreground, in a process group of its own (see stop_group)."""
    with (config.prefix / "stderr.log").open("wb") as stderr:
        return subprocess.Popen(
            config.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def _group_alive(pgid: int) -> bool:
    """Whether a live process (not a zombie) is left in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process (nginx, `askgate serve`), then SIGKILL to whatever
    of its process group is left (workers whose master did not stop them)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    pgid = process.pid  # start_new_session: the group is named after its leader
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid), f"processes of group {pgid} outlived the test"
