"""`python -m orchestrator`: run the orchestrator (HTTP: REST + A2A JSON-RPC/REST; A2A gRPC)."""

from __future__ import annotations

import asyncio

from accord.logs import configure_logging
from accord.service import serve
from orchestrator.app import Orchestrator
from orchestrator.settings import OrchestratorSettings


def main() -> None:
    settings = OrchestratorSettings()  # type: ignore[call-arg]
    configure_logging("orchestrator", settings.log_level)
    orchestrator = Orchestrator(settings)
    app = orchestrator.create_app()
    grpc_server = orchestrator.a2a.grpc_server(settings.host, settings.grpc_port)
    asyncio.run(serve(app, settings.host, settings.port, extra=[grpc_server]))


if __name__ == "__main__":
    main()
