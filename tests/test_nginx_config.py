"""The nginx config the repo ships (deploy/nginx/askgate.conf) is valid nginx, and the
copy the multi-instance test runs differs from it only where it must."""

import re
import socket
from pathlib import Path

from askgate.config import Settings
from tests.nginx_server import (
    SHIPPED_CONFIG,
    check_config,
    self_signed_certificate,
    site_config,
    write_config,
)

# The only directives the tests' copy may change.
SUBSTITUTED = {
    "listen",
    "ssl_certificate",
    "ssl_certificate_key",
    "server",
    "access_log",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_nginx_t_accepts_the_shipped_config(tmp_path: Path) -> None:
    certificate = self_signed_certificate(tmp_path)
    config = write_config(
        tmp_path / "nginx",
        https_port=_free_port(),
        http_port=_free_port(),
        instances=[_free_port(), _free_port()],
        certificate=certificate,
    )

    result = check_config(config)

    log = config.error_log.read_text() if config.error_log.exists() else ""
    assert result.returncode == 0, result.stderr + log
    assert "test is successful" in result.stderr + log


def test_the_tests_copy_changes_only_ports_paths_and_upstream_servers(
    tmp_path: Path,
) -> None:
    certificate = self_signed_certificate(tmp_path)
    shipped = SHIPPED_CONFIG.read_text().splitlines()
    copy = site_config(
        https_port=18443,
        http_port=18080,
        instances=[18001, 18002],
        certificate=certificate,
        access_log=tmp_path / "access.log",
    ).splitlines()

    assert len(copy) == len(shipped)
    changed = [(a, b) for a, b in zip(shipped, copy, strict=True) if a != b]
    assert {line.split()[0] for pair in changed for line in pair} == SUBSTITUTED
    assert len(changed) == 9  # 4 listen, 2 certificate, 2 server, 1 access_log


def test_the_body_limit_matches_askgates_default() -> None:
    config = SHIPPED_CONFIG.read_text()
    limit = re.search(r"client_max_body_size (\d+)k;", config)
    assert limit is not None
    default = Settings.model_fields["max_body_bytes"].default
    assert int(limit.group(1)) * 1024 == default
    assert f"the limit is {default} bytes" in config  # nginx's own 413
