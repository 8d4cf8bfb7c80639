"""Services add their own Prometheus metrics to the app's registry; `/metrics` serves them."""

from __future__ import annotations

import httpx
import pytest

from accord.service import create_service_app, service_metrics


async def scrape(app: object) -> str:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:  # type: ignore[arg-type]
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_metrics_a_service_registers_are_served_with_the_built_in_ones() -> None:
    app = create_service_app("gateway")
    metrics = service_metrics(app)
    decisions = metrics.counter(
        "accord_authz_decisions_total", "Authorization decisions", ["outcome", "reason"]
    )
    decisions.labels(outcome="denied", reason="insufficient_scope").inc()
    decisions.labels(outcome="allowed", reason="").inc(2)
    queue = [1, 2, 3]
    metrics.gauge("accord_queue_depth", "Work waiting", ["queue"]).labels(queue="steps").set_function(
        lambda: len(queue)
    )
    metrics.histogram("accord_budget_used_ratio", "Budget used", buckets=(0.5, 1.0)).observe(0.7)

    text = await scrape(app)

    assert 'accord_authz_decisions_total{outcome="denied",reason="insufficient_scope"} 1.0' in text
    assert 'accord_authz_decisions_total{outcome="allowed",reason=""} 2.0' in text
    assert 'accord_queue_depth{queue="steps"} 3.0' in text
    assert 'accord_budget_used_ratio_bucket{le="1.0"} 1.0' in text
    assert "accord_http_requests_total" in text


def test_registering_a_metric_again_returns_it_and_a_conflicting_one_is_refused() -> None:
    metrics = service_metrics(create_service_app("registry"))
    first = metrics.counter("accord_signature_failures_total", "Card signature failures", ["reason"])

    assert metrics.counter("accord_signature_failures_total", "Card signature failures", ["reason"]) is first
    with pytest.raises(ValueError, match="another kind or labels"):
        metrics.counter("accord_signature_failures_total", "Card signature failures", ["kid"])
    with pytest.raises(ValueError, match="another kind or labels"):
        metrics.gauge("accord_signature_failures_total", "Card signature failures", ["reason"])
    with pytest.raises(ValueError, match="start with 'accord_'"):
        metrics.counter("signature_failures_total", "Card signature failures")


async def test_apps_do_not_share_metrics() -> None:
    one, two = create_service_app("one"), create_service_app("two")
    service_metrics(one).counter("accord_breaker_open_total", "Breaker openings").inc()

    assert "accord_breaker_open_total" not in await scrape(two)
