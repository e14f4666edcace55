"""A synchronous client of the gateway's admin API (the deploy DAG's hook, the demo and tests use it)."""
from __future__ import annotations

from typing import Any

import httpx

from lifecycle.serving.traffic import TrafficConflictError


class GatewayError(RuntimeError):
    """The gateway refused an admin call or could not be reached; the message says which and why.

    ``status`` is the HTTP status of a refusal (None when the gateway could not be reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GatewayConflictError(GatewayError, TrafficConflictError):
    """A traffic change with ``expected_revision`` refused with 409: the traffic changed since. Both a
    ``GatewayError`` (status 409) and a :class:`~lifecycle.serving.traffic.TrafficConflictError` (``revision``,
    ``weights``: the gateway's current ones; ``expected``: what was passed), so callers catch it the same way whether
    they talk to the gateway over HTTP or to the traffic store directly."""

    def __init__(self, message: str, revision: int, weights: dict[str, int], expected: int | None = None) -> None:
        GatewayError.__init__(self, message, 409)
        self.revision, self.weights, self.expected = revision, weights, expected


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
                body = resp.json()
            except ValueError:
                body = None
            message = body.get("error", resp.text) if isinstance(body, dict) else resp.text
            text = f"gateway refused {method} {path}: HTTP {resp.status_code}: {message}"
            if resp.status_code == 409 and isinstance(body, dict) and isinstance(body.get("revision"), int):
                sent = (kw.get("json") or {}).get("expected_revision")
                raise GatewayConflictError(text, body["revision"], dict(body.get("weights") or {}), sent)
            raise GatewayError(text, resp.status_code)
        return resp.json()

    def ready(self) -> dict[str, Any]:
        return self._call("GET", "/readyz")

    def traffic(self, model: str) -> dict[str, Any]:
        """``{"weights", "revision", "loaded", "history"}``: pass ``revision`` to :meth:`set_weights`."""
        return self._call("GET", f"/admin/models/{model}/traffic")

    def revision(self, model: str) -> int:
        """The model's current traffic revision."""
        return int(self.traffic(model)["revision"])

    def set_weights(self, model: str, weights: dict[str, int], reason: str,
                    expected_revision: int | None = None) -> dict[str, Any]:
        """Set the weights; the answer carries the new ``revision``. With ``expected_revision`` (the revision the
        caller last saw), a compare-and-set: :class:`GatewayConflictError` if the traffic changed since."""
        body: dict[str, Any] = {"weights": {str(k): int(v) for k, v in weights.items()}, "reason": reason}
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        return self._call("PUT", f"/admin/models/{model}/traffic", json=body)

    def load(self, model: str, version: str | int) -> dict[str, Any]:
        return self._call("POST", f"/admin/models/{model}/versions/{version}/load")

    def unload(self, model: str, version: str | int) -> dict[str, Any]:
        return self._call("DELETE", f"/admin/models/{model}/versions/{version}")

    def stats(self, model: str, since: float) -> dict[str, Any]:
        return self._call("GET", f"/admin/models/{model}/stats", params={"since": since})

    # ---- shadow (issue 11)
    def shadow(self, model: str) -> dict[str, Any]:
        """``{"model", "shadow": {"champion", "challenger", "sample", "updated_at", "latency_limit_ms"} or None,
        "revision"}``."""
        return self._call("GET", f"/admin/models/{model}/shadow")

    def set_shadow(self, model: str, champion: str | int, challenger: str | int, sample: float = 1.0,
                   expected_revision: int | None = None) -> dict[str, Any]:
        """Mirror requests between ``champion`` and ``challenger`` (both loaded) for a share ``sample`` of them;
        the answer is :meth:`shadow`'s, with the new ``revision``. With ``expected_revision``, a compare-and-set:
        :class:`GatewayConflictError` if the traffic changed since."""
        body: dict[str, Any] = {"champion": str(champion), "challenger": str(challenger), "sample": float(sample)}
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        return self._call("PUT", f"/admin/models/{model}/shadow", json=body)

    def clear_shadow(self, model: str) -> dict[str, Any]:
        """Stop mirroring (the pair's evidence stays readable until one of its versions is unloaded)."""
        return self._call("DELETE", f"/admin/models/{model}/shadow")

    def evidence(self, model: str, challenger: str | int, since: float) -> dict[str, Any]:
        """``{"model", "since", "from", "active", "evidence"}``: ``evidence`` holds the ``PairedEvidence`` fields
        of ``challenger`` against its shadow champion, summed over the gateway's 10 s buckets since ``since``."""
        return self._call("GET", f"/admin/models/{model}/evidence",
                          params={"challenger": str(challenger), "since": since})
