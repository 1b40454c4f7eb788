"""What people write instead, FastAPI flavour: a pydantic model, one awaited SET NX.

The idiomatic endpoint: FastAPI validates the body into a model (the whole JSON
document is parsed), one `SET marker 1 NX EX ttl` through redis.asyncio (hiredis
installed, the default connection pool), then a JSON answer. No queue, no
forwarding: far less than the gateway does, which is the point of the comparison.

Run by the harness under uvicorn on uvloop and httptools (what `uvicorn[standard]`
picks by default; both are dependencies of this project), one process, access log
off (the gateway logs no line per request either):

    STORE_URL=redis://127.0.0.1:6379/0 python -m uvicorn benchmarks.fastapi_app:app \\
        --loop uvloop --http httptools --no-access-log --port 8080
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel

TTL_S = 24 * 3600


class Webhook(BaseModel):
    idempotency_key: str
    event: str
    data: dict[str, Any]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = aioredis.Redis.from_url(os.environ.get("STORE_URL", "redis://127.0.0.1"))
    await app.state.redis.ping()
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/webhooks/inbox")
async def inbox(webhook: Webhook) -> dict[str, str]:
    marker = f"idem:{webhook.event}:{webhook.idempotency_key}"
    fresh = await app.state.redis.set(marker, 1, nx=True, ex=TTL_S)
    return {"status": "accepted" if fresh else "duplicate"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
