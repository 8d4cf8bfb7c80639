"""Reading a service's Prometheus metrics the way a scraper does (`/metrics`, the text format)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def metric(http: httpx.AsyncClient, service_url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 before the first one)."""
    text = (await http.get(service_url + "/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
