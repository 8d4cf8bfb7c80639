"""Agent Cards are served cacheably (A2A 1.0 §8.6: Cache-Control, ETag, Last-Modified) and answer
conditional requests with 304, on every agent and the orchestrator, at both well-known paths."""

from __future__ import annotations

from email.utils import formatdate, parsedate_to_datetime

import httpx
import pytest

from accord.cards import WELL_KNOWN_PATHS
from accord.mesh import MeshRunner

SERVICES = ("ledger-agent", "triage-agent", "orchestrator")


@pytest.mark.parametrize("path", WELL_KNOWN_PATHS)
@pytest.mark.parametrize("service", SERVICES)
async def test_the_card_carries_validators_and_answers_conditional_requests(
    mesh: MeshRunner, service: str, path: str
) -> None:
    url = mesh.url(service) + path
    async with httpx.AsyncClient(timeout=10) as http:
        first = await http.get(url)
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        same_etag = await http.get(url, headers={"If-None-Match": etag})
        weak_in_list = await http.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
        same_date = await http.get(url, headers={"If-Modified-Since": modified})
        earlier = formatdate(parsedate_to_datetime(modified).timestamp() - 3600, usegmt=True)
        older_date = await http.get(url, headers={"If-Modified-Since": earlier})
        # If-None-Match decides alone when present: a stale tag means the full card, whatever the date.
        stale_tag = await http.get(url, headers={"If-None-Match": '"stale"', "If-Modified-Since": modified})
        head = await http.head(url)

    assert first.status_code == 200
    assert first.json()["name"]
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    parsedate_to_datetime(modified)  # a valid HTTP date
    for answer in (same_etag, weak_in_list, same_date):
        assert answer.status_code == 304
        assert answer.content == b""
        assert (answer.headers["etag"], answer.headers["last-modified"]) == (etag, modified)
    for answer in (older_date, stale_tag):
        assert answer.status_code == 200
        assert answer.content == first.content
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == etag
