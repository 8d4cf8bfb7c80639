"""`accord keys`: show and rotate the signing keys of a local mesh.

Two rings live in the state dir: the agent publisher's (`publisher-keys.json`, signs Agent Cards) and the
gateway's (`gateway-keys.json`, signs tokens and relayed messages). Rotation makes a new key active and
keeps the old one verifying for the overlap window; running services pick the change up without a
restart (rings and trust files are re-read when their files change). The publisher's public keys are
also written to `trust/publishers.jwks.json`, the registry's trust store, old and new key both, the old
one marked with the end of its window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from accord.card_signing import CardSigner, publisher_key_file, publisher_trust_file
from accord.keys import KeyRing
from accord.topology import repo_root
from accord.trust_files import trust_jwks

GATEWAY_KEY_FILE = "gateway-keys.json"
DEFAULT_OVERLAP_S = 300.0

app = typer.Typer(help="Show and rotate signing keys (agent publisher, gateway).", no_args_is_help=True)

StateDirOption = Annotated[
    Path | None, typer.Option(help="Where the key rings live (default: <repo>/.accord).")
]
PublisherOption = Annotated[bool, typer.Option("--publisher", help="The agent publisher's ring.")]
GatewayOption = Annotated[bool, typer.Option("--gateway", help="The gateway's ring.")]


@dataclass(frozen=True)
class RingFile:
    """One ring of the state dir; `trust_file` is the public JWKS verifiers read, if it has one."""

    name: str
    path: Path
    trust_file: Path | None = None


def ring_files(state_dir: Path, publisher: bool, gateway: bool) -> list[RingFile]:
    """The rings chosen by the flags; no flag means both."""
    both = not publisher and not gateway
    chosen = []
    if publisher or both:
        chosen.append(RingFile("publisher", publisher_key_file(state_dir), publisher_trust_file(state_dir)))
    if gateway or both:
        chosen.append(RingFile("gateway", state_dir / GATEWAY_KEY_FILE))
    return chosen


def rotate_ring(ring_file: RingFile, overlap_s: float) -> tuple[str, str]:
    """Rotate one ring file (created first if missing); returns (old kid, new kid).

    Verifiers learn the new key before signers start using it: the rotated ring is built in memory, its
    public keys go to the trust file, and only then is the ring file (which signers follow) replaced. So
    no signature made with the new key ever meets a verifier that does not know it yet.
    """
    current = KeyRing.load_or_create(ring_file.path)
    rotated = KeyRing(current.active, current.retired)
    old = rotated.active.kid
    new = rotated.rotate(overlap_s).kid
    if ring_file.trust_file is not None:
        CardSigner(rotated, ring_file.trust_file).publish_trust()
    KeyRing(rotated.active, rotated.retired, path=ring_file.path).save()
    return old, new


@app.command()
def rotate(
    publisher: PublisherOption = False,
    gateway: GatewayOption = False,
    overlap: Annotated[
        float, typer.Option(min=0, help="Seconds the old key keeps verifying after the rotation.")
    ] = DEFAULT_OVERLAP_S,
    state_dir: StateDirOption = None,
) -> None:
    """Make a new key active; the old one verifies for --overlap seconds more, then is retired."""
    directory = state_dir or _default_state_dir()
    until = datetime.now(UTC).timestamp() + overlap
    for ring_file in ring_files(directory, publisher, gateway):
        old, new = rotate_ring(ring_file, overlap)
        expiry = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        typer.echo(f"{ring_file.name}: active key {new}; {old} verifies until {expiry}")


@app.command()
def show(
    publisher: PublisherOption = False,
    gateway: GatewayOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Print the public JWKS (one ring: the JWKS itself; both: keyed by ring name)."""
    directory = state_dir or _default_state_dir()
    documents: dict[str, Any] = {}
    for ring_file in ring_files(directory, publisher, gateway):
        if not ring_file.path.exists():
            typer.echo(f"no {ring_file.name} keys at {ring_file.path}", err=True)
            raise typer.Exit(1)
        documents[ring_file.name] = trust_jwks(KeyRing.load_or_create(ring_file.path))
    single = len(documents) == 1
    typer.echo(json.dumps(next(iter(documents.values())) if single else documents, indent=2))


def _default_state_dir() -> Path:
    return repo_root() / ".accord"
