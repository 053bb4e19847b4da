import pytest

from askgate.runtime import Runtime
from tests.usage.helpers import Calendar


@pytest.fixture
def calendar(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Calendar:
    return Calendar(runtime.ledger, monkeypatch)
