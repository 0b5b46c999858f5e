"""A Starlette app that knows nothing of k8sxray: it calls DOWNSTREAM with httpx."""

from __future__ import annotations

import asyncio
import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    pid = str(os.getpid())
    async with httpx.AsyncClient() as client:
        await client.get(f"{os.environ['DOWNSTREAM']}/pid/{pid}")
    await asyncio.sleep(float(os.environ.get("APP_DELAY", "0")))
    return PlainTextResponse(pid, headers={"X-Pid": pid})


app = Starlette(routes=[Route("/", hello)])
