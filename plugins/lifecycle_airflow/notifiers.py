"""Notifiers that send lifecycle alerts to ops through Airflow connections (webhook first, SMTP second)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from lifecycle.alerts import Alert

log = logging.getLogger(__name__)


def webhook_url(conn: Any) -> str:
    """URL of an ``http`` connection: ``host`` may be a full URL; ``extra.endpoint`` is the path."""
    extra = conn.extra_dejson or {}
    host = conn.host or ""
    base = host if "://" in host else f"{extra.get('scheme', 'http')}://{host}"
    if conn.port and "://" not in host:
        base += f":{conn.port}"
    return base.rstrip("/") + "/" + str(extra.get("endpoint", "")).lstrip("/")


def _connection(conn_id: str | None) -> Any | None:
    if not conn_id:
        return None
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:  # noqa: BLE001
        log.warning("alert: connection %r not available (%s); alert only logged", conn_id, type(err).__name__)
        return None


def send_alert(alert: Alert, *, webhook_conn_id: str | None = "lifecycle_alerts", smtp_conn_id: str | None = None,
               email_to: list[str] | None = None, key: str | None = None) -> list[str]:
    """Deliver ``alert`` on every configured channel; record ``alert_sent`` per delivery. Never raises."""
    from lifecycle.alerts import deliver, post_webhook, send_email
    from lifecycle.ledger import Ledger

    log.info("alert: %s", alert.text().replace("\n", " | "))
    channels: list[tuple[str, Any]] = []
    web = _connection(webhook_conn_id)
    if web is not None:
        url = webhook_url(web)
        headers = {"Authorization": f"Bearer {web.password}"} if web.password else {}
        channels.append((f"webhook:{webhook_conn_id}", lambda: post_webhook(url, alert, headers=headers)))
    smtp = _connection(smtp_conn_id) if email_to else None
    if smtp is not None:
        extra = smtp.extra_dejson or {}
        channels.append((f"smtp:{smtp_conn_id}", lambda: send_email(
            smtp.host, smtp.port or 25, extra.get("from_email", "lifecycle@localhost"), list(email_to or []), alert,
            user=smtp.login or None, password=smtp.password, starttls=bool(extra.get("starttls")))))
    try:
        ledger = Ledger()
    except Exception as err:  # noqa: BLE001
        log.warning("alert: ledger unavailable (%s); delivering without recording", err)
        ledger = None
    return deliver(alert, channels, ledger, key=key)


def alert_ops(spec: Any, event: str, summary: str, *, version: str | None = None, reason: str = "",
              severity: str = "warning", links: dict[str, str] | None = None, key: str | None = None) -> list[str]:
    """A policy-event alert about ``spec``'s model through the channels its spec names."""
    from lifecycle.alerts import Alert

    return send_alert(Alert(model=spec.name, version=version, event=event, severity=severity, summary=summary,
                            reason=reason, links={k: str(v) for k, v in (links or {}).items()}),
                      webhook_conn_id=spec.alerts.webhook_conn_id, smtp_conn_id=spec.alerts.smtp_conn_id,
                      email_to=list(spec.alerts.email_to), key=key)


class LifecycleAlertNotifier(BaseNotifier):
    """Task/DAG failure callback: tells ops which model's which task failed, why, and where its log is."""

    template_fields = ("model", "event")

    def __init__(self, *, model: str, event: str = "task_failed", webhook_conn_id: str | None = "lifecycle_alerts",
                 smtp_conn_id: str | None = None, email_to: list[str] | None = None) -> None:
        super().__init__()
        self.model = model
        self.event = event
        self.webhook_conn_id = webhook_conn_id
        self.smtp_conn_id = smtp_conn_id
        self.email_to = email_to or []

    def notify(self, context: Any) -> None:
        from lifecycle.alerts import Alert

        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        exc = context.get("exception")
        where = f"{ti.dag_id}.{ti.task_id}" if ti is not None else "DAG run"
        links = {}
        log_url = getattr(ti, "log_url", None)
        if log_url:
            links["task_log"] = log_url
        send_alert(
            Alert(model=self.model, event=self.event, severity="error",
                  summary=f"{where} failed (try {getattr(ti, 'try_number', '?')}, run {getattr(dag_run, 'run_id', '?')})",
                  reason=(str(exc).splitlines()[0][:500] if exc else "see the task log"), links=links),
            webhook_conn_id=self.webhook_conn_id, smtp_conn_id=self.smtp_conn_id, email_to=self.email_to,
        )
