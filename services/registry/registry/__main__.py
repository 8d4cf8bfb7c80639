"""`python -m registry`: REST on ACCORD_PORT and gRPC on ACCORD_GRPC_PORT until SIGTERM."""

from __future__ import annotations

import asyncio

from accord.logs import configure_logging
from accord.service import serve
from registry.app import SERVICE, admin_of, catalog_of, create_app
from registry.grpc_api import grpc_server
from registry.settings import RegistrySettings


def main() -> None:
    settings = RegistrySettings()
    configure_logging(SERVICE, settings.log_level)
    app = create_app(settings)
    grpc = grpc_server(catalog_of(app), settings.host, settings.grpc_port, admin_of(app))
    asyncio.run(serve(app, settings.host, settings.port, extra=[grpc]))


if __name__ == "__main__":
    main()
