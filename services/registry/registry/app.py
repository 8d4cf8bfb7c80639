"""The registry service app: REST on FastAPI, the catalog on app.state for the gRPC server beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from accord.audit import AuditLog
from accord.card_signing import CardVerifier
from accord.service import create_service_app
from accord.storage import create_engine
from accord.trust_files import TrustDirectory
from registry.access import AdminCredential
from registry.card_intake import CardIntake
from registry.catalog import Catalog
from registry.inventory import PolicyScopes
from registry.rest_api import rest_router
from registry.settings import RegistrySettings
from registry.store import AgentStore
from registry.targets import TargetPolicy

SERVICE = "registry"


def create_app(settings: RegistrySettings) -> FastAPI:
    engine = create_engine(settings.sqlite_url(SERVICE))
    verifier = CardVerifier(TrustDirectory(settings.trust_dir), settings.registry_card_algorithms)
    targets = TargetPolicy.from_settings(
        settings.registry_allow_private_targets, settings.registry_allowed_targets
    )
    audit = AuditLog(engine, SERVICE)
    catalog = Catalog(
        AgentStore(engine),
        audit,
        CardIntake(
            timeout_s=settings.card_fetch_timeout_s,
            max_bytes=settings.card_max_bytes,
            verifier=verifier,
            targets=targets,
        ),
        policies=PolicyScopes(settings.registry_policy_file),
        self_registration=settings.registry_allow_private_targets,
        self_owner=settings.registry_self_owner,
    )
    admin = AdminCredential.of(settings.registry_admin_secret)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await catalog.start()
        interval_s = settings.registry_refresh_interval_s
        refresher = asyncio.create_task(catalog.refresh_periodically(interval_s)) if interval_s > 0 else None
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await engine.dispose()

    app = create_service_app(SERVICE, lifespan=lifespan, readiness=[catalog.ready], audit=audit)
    app.state.catalog = catalog
    app.state.admin = admin
    app.include_router(rest_router(catalog, admin))
    return app


def admin_of(app: FastAPI) -> AdminCredential:
    """The admin credential check behind an app from `create_app`, for the gRPC server."""
    admin = app.state.admin
    if not isinstance(admin, AdminCredential):
        raise TypeError("app was not built by registry.app.create_app")
    return admin


def catalog_of(app: FastAPI) -> Catalog:
    """The catalog behind an app from `create_app`, for the gRPC server and tests."""
    catalog = app.state.catalog
    if not isinstance(catalog, Catalog):
        raise TypeError("app was not built by registry.app.create_app")
    return catalog
