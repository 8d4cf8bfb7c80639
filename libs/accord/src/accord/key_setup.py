"""First-start key material for a deployment: `python -m accord.key_setup` (the compose `keys-init` job).

Creates the agent publisher's ring and the gateway's ring where they are missing (never replacing one that
exists, so restarts keep their keys) and writes the publisher's public JWKS for the registry's trust store.
Each goes to its own volume: agents mount only the publisher ring, the gateway only its ring, and the
registry only the public trust file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from accord.card_signing import CardSigner
from accord.keys import KeyRing


def ensure_keys(publisher_ring: Path, trust_file: Path, gateway_ring: Path) -> None:
    signer = CardSigner(KeyRing.load_or_create(publisher_ring), trust_file)
    signer.publish_trust()
    KeyRing.load_or_create(gateway_ring)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m accord.key_setup", description=__doc__)
    parser.add_argument("--publisher-ring", type=Path, required=True)
    parser.add_argument("--trust-file", type=Path, required=True)
    parser.add_argument("--gateway-ring", type=Path, required=True)
    args = parser.parse_args(argv)
    ensure_keys(args.publisher_ring, args.trust_file, args.gateway_ring)


if __name__ == "__main__":
    main()
