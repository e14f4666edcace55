"""The ceiling for any Python ASGI model server on this machine: a Starlette app that reads and parses the same
JSON payload as the gateway (orjson) and answers a constant, served by uvicorn with the gateway's settings
(uvloop, httptools, no access log). ``bench/serving.py`` drives it with the same wrk settings.

    python bench/noop_app.py PORT
"""
from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({"request_id": "0" * 32, "model": "noop", "version": "1",
                       "predictions": [{"probability": 0.5, "label": 0}]})


async def predict(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")


async def ping(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", access_log=False,
                log_level="warning")
