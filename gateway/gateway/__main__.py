"""`python -m gateway`: run the gateway until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from accord.logs import configure_logging
from accord.service import serve
from gateway.app import create_app
from gateway.policy import PolicyError
from gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    try:
        app = create_app(settings)
    except PolicyError as exc:
        # A gateway never runs without a valid policy; the message lists every problem with its line.
        sys.exit(str(exc))
    extra = []
    if settings.grpc_port is not None:
        # The relay's gRPC face; its JSON-RPC and HTTP+JSON faces are routes of the app.
        extra.append(app.state.relay.grpc_server(settings.host, settings.grpc_port))
    asyncio.run(serve(app, settings.host, settings.port, extra=extra))


if __name__ == "__main__":
    main()
