"""A synchronous client of the gateway's admin API (the deploy DAG's hook, the demo and tests use it)."""
from __future__ import annotations

from typing import Any

import httpx


class GatewayError(RuntimeError):
    """The gateway refused an admin call or could not be reached; the message says which and why.

    ``status`` is the HTTP status of a refusal (None when the gateway could not be reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayClient:
    def __init__(self, base_url: str, token: str, timeout: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise GatewayError(f"gateway at {self.base} unreachable ({method} {path}): {err}") from err
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            raise GatewayError(f"gateway refused {method} {path}: HTTP {resp.status_code}: {message}",
                               resp.status_code)
        return resp.json()

    def ready(self) -> dict[str, Any]:
        return self._call("GET", "/readyz")

    def traffic(self, model: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/models/{model}/traffic")

    def set_weights(self, model: str, weights: dict[str, int], reason: str) -> dict[str, Any]:
        return self._call("PUT", f"/admin/models/{model}/traffic",
                          json={"weights": {str(k): int(v) for k, v in weights.items()}, "reason": reason})

    def load(self, model: str, version: str | int) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/versions/{version}/load")

    def unload(self, model: str, version: str | int) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/models/{model}/versions/{version}")

    def stats(self, model: str, since: float) -> dict[str, Any]:
        return self._call("GET", f"/admin/models/{model}/stats", params={"since": since})
