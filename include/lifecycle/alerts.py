"""Alerts to ops: one JSON payload shape for every channel, delivered over HTTP (a webhook) or SMTP.

Delivery never raises into the caller: an alert that cannot be sent is logged with why, and the pipeline it
reports on goes on. Each delivered alert is recorded in the ledger as ``alert_sent``.
"""
from __future__ import annotations

import json
import logging
import smtplib
import threading
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lifecycle.ledger import Ledger, utcnow_iso

log = logging.getLogger(__name__)


@dataclass
class Alert:
    """What happened to which model version, why, and where to look."""

    model: str
    event: str
    summary: str
    version: str | None = None
    reason: str = ""
    severity: str = "warning"
    links: dict[str, str] = field(default_factory=dict)
    at: str = field(default_factory=utcnow_iso)

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        links = "\n".join(f"{k}: {v}" for k, v in self.links.items())
        who = f"{self.model} v{self.version}" if self.version else self.model
        return f"[{self.severity}] {who}: {self.summary}\nwhy: {self.reason}\n{links}".strip()


def post_webhook(url: str, alert: Alert, *, headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
    """POST the alert as JSON; raise on a non-2xx answer or a connection failure."""
    import httpx

    resp = httpx.post(url, json=alert.payload(), headers=headers or {}, timeout=timeout)
    resp.raise_for_status()


def send_email(host: str, port: int, sender: str, to: list[str], alert: Alert, *, user: str | None = None,
               password: str | None = None, starttls: bool = False, timeout: float = 10.0) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"[lifecycle] {alert.model}: {alert.event}"
    msg["From"], msg["To"] = sender, ", ".join(to)
    msg.set_content(alert.text())
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        if starttls:
            smtp.starttls()
        if user:
            smtp.login(user, password or "")
        smtp.send_message(msg)


def deliver(alert: Alert, channels: list[tuple[str, Any]], ledger: Ledger | None = None,
            key: str | None = None) -> list[str]:
    """Try every channel (name, zero-arg callable); record ``alert_sent`` per channel that delivered.

    Returns the channels that delivered. Never raises: a failing receiver must not fail what it reports on.
    """
    delivered = []
    for name, send in channels:
        try:
            send()
        except Exception as err:  # noqa: BLE001
            log.warning("alert: could not deliver %s/%s via %s: %s", alert.model, alert.event, name, err)
            continue
        delivered.append(name)
        log.info("alert: sent %s/%s via %s", alert.model, alert.event, name)
        if ledger is not None:
            ledger.record(alert.model, "alert_sent", f"{alert.event} via {name}: {alert.summary}",
                          version=alert.version, details={"channel": name, "alert": alert.payload()},
                          key=f"{key}:{name}" if key else None)
    return delivered


class _Receiver(BaseHTTPRequestHandler):
    path_out: Path

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            self.send_response(400)
            self.end_headers()
            return
        server = self.server
        with server.lock, server.path_out.open("a") as fh:  # type: ignore[attr-defined]
            fh.write(json.dumps({"received_at": utcnow_iso(), "path": self.path, "alert": data}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("receiver: " + fmt, *args)


def serve_receiver(out: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A local webhook receiver (demo and tests) that appends each alert to ``out`` as JSON lines.

    Returns the running server (``server.server_address`` has the port); stop it with ``server.shutdown()``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((host, port), _Receiver)
    server.path_out = out  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="alert-receiver", daemon=True).start()
    return server



def main() -> None:  # pragma: no cover - exercised by the demo as a subprocess
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Local webhook receiver for lifecycle alerts")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    server = serve_receiver(args.out, port=args.port)
    print(f"alert receiver on http://127.0.0.1:{server.server_address[1]}/ writing {args.out}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    main()
