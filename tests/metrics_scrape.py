"""Reading GET /metrics in tests: the Prometheus text parsed by prometheus-client's
own parser, so that a malformed exposition fails the test."""

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, frozenset[tuple[str, str]]]


class Scrape:
    """The samples of one scrape, by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[SampleKey, float] = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def askgate_labels(self) -> dict[str, set[str]]:
        """The values of each label of askgate's own series."""
        labels: dict[str, set[str]] = {}
        for name, pairs in self.samples:
            if name.startswith("askgate_"):
                for label, value in pairs:
                    labels.setdefault(label, set()).add(value)
        return labels


async def scrape(
    client: httpx.AsyncClient, headers: Mapping[str, str] | None = None
) -> Scrape:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)
