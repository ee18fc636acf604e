"""The demo's upstream service: a few JSON resources for the gateway to merge."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def user(request: Request) -> JSONResponse:
    user_id = request.path_params["id"]
    return JSONResponse({"id": user_id, "name": f"user {user_id}"})


async def posts(request: Request) -> JSONResponse:
    await asyncio.sleep(0.005)  # a slower backend, to make the concurrent merge visible
    user_id = request.path_params["id"]
    return JSONResponse([{"id": n, "author": user_id, "title": f"post {n}"} for n in (1, 2)])


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return JSONResponse({"status": code}, status_code=code)


app = Starlette(routes=[
    Route("/users/{id}", user),
    Route("/users/{id}/posts", posts),
    Route("/status/{code:int}", status),
])
