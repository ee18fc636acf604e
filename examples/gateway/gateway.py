"""A small KrakenD-style gateway: endpoints, backends and groups from krakend.json, merged
concurrently, instrumented at all three layers through gatescope's public API only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import gatescope
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Merged(dict[str, Any]):
    """The merged response; `complete` is what KrakenD reports in X-KrakenD-Completed."""

    complete = True


def build_gateway(config_path: str | os.PathLike[str]) -> tuple[Starlette, gatescope.Telemetry]:
    """The ASGI gateway for a krakend.json, and the Telemetry it reports through."""
    with open(config_path, encoding="utf-8") as handle:
        document = json.load(handle)
    telemetry = gatescope.Telemetry.from_file(config_path)
    client = telemetry.async_httpx_client(timeout=5.0)
    routes = [Route(endpoint["endpoint"], _handler(endpoint, telemetry, client),
                    methods=[endpoint.get("method", "GET").upper()])
              for endpoint in document.get("endpoints", [])]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    return telemetry.asgi(app), telemetry


def _handler(endpoint: dict[str, Any], telemetry: gatescope.Telemetry,
             client: httpx.AsyncClient) -> Any:
    backends = [(b["host"][0].rstrip("/"), b["url_pattern"], b.get("group"),
                 telemetry.backend(b["url_pattern"])) for b in endpoint.get("backend", [])]

    async def fetch(host: str, pattern: str, group: str | None, layer: Any,
                    params: dict[str, str]) -> tuple[str | None, Any, bool]:
        async with layer as call:
            try:
                response = await client.get(host + pattern.format(**params))
                response.raise_for_status()
                return group, response.json(), True
            except httpx.HTTPStatusError as exc:
                call.fail(f"backend answered {exc.response.status_code}")
                return group, None, False
            except (httpx.HTTPError, ValueError) as exc:
                call.fail(exc)
                return group, None, False

    @telemetry.pipe(endpoint["endpoint"])
    async def merge(params: dict[str, str]) -> Merged:
        results = await asyncio.gather(*(fetch(h, p, g, layer, params)
                                         for h, p, g, layer in backends))
        merged = Merged()
        for group, data, ok in results:
            merged.complete &= ok
            if data is None:
                continue
            if group:
                merged[group] = data
            elif isinstance(data, dict):
                merged.update(data)
        return merged

    async def handle(request: Request) -> Response:
        merged = await merge({k: str(v) for k, v in request.path_params.items()})
        status = 200 if merged or not backends else 500
        return JSONResponse(dict(merged), status_code=status,
                            headers={"X-KrakenD-Completed": str(merged.complete).lower()})

    return handle
