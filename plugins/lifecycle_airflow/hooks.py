"""Hook for the serving gateway's admin API, configured by an Airflow ``http`` connection."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from lifecycle.serving.client import GatewayClient


class GatewayHook(BaseHook):
    """``lifecycle_gateway``: host/port (or ``extra.base_url``) of the gateway; the password is its admin token."""

    conn_name_attr = "gateway_conn_id"
    default_conn_name = "lifecycle_gateway"
    conn_type = "http"
    hook_name = "Lifecycle serving gateway"

    def __init__(self, gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway_conn_id = gateway_conn_id

    @staticmethod
    def base_url(conn: Any) -> str:
        extra = conn.extra_dejson or {}
        if extra.get("base_url"):
            return str(extra["base_url"]).rstrip("/")
        return f"{extra.get('scheme', 'http')}://{conn.host}:{conn.port or 80}"

    def get_conn(self) -> GatewayClient:
        from lifecycle.serving.client import GatewayClient

        conn = self.get_connection(self.gateway_conn_id)
        if not conn.password:
            raise ValueError(f"connection {self.gateway_conn_id!r} has no password: set it to the gateway's "
                             "admin token")
        return GatewayClient(self.base_url(conn), self._token(self.gateway_conn_id, conn))

    @staticmethod
    def _token(conn_id: str, conn: Any) -> str:
        """The connection's password, refused (naming the connection, not the value) under 32 characters."""
        from lifecycle.paths import check_token

        return check_token(conn.password or "", f"the password of connection {conn_id!r}")

    @classmethod
    async def astats_endpoint(cls, conn_id: str, model: str) -> tuple[str, dict[str, str]]:
        """URL and auth headers of ``model``'s live stats, for triggers polling from the triggerer."""
        conn = await cls.aget_connection(conn_id)
        return (f"{cls.base_url(conn)}/admin/models/{model}/stats",
                {"Authorization": f"Bearer {cls._token(conn_id, conn)}"})

    @classmethod
    async def aevidence_endpoint(cls, conn_id: str, model: str) -> tuple[str, dict[str, str]]:
        """URL and auth headers of ``model``'s paired deploy evidence (``?challenger=&since=``), for triggers."""
        conn = await cls.aget_connection(conn_id)
        return (f"{cls.base_url(conn)}/admin/models/{model}/evidence",
                {"Authorization": f"Bearer {cls._token(conn_id, conn)}"})

    def test_connection(self) -> tuple[bool, str]:
        try:
            ready = self.get_conn().ready()
        except Exception as err:  # noqa: BLE001 - the UI shows the message
            return False, str(err)
        return True, f"gateway ready: {ready}"


def gateway_client(conn_id: str = GatewayHook.default_conn_name) -> GatewayClient:
    """The gateway's admin client from the ``lifecycle_gateway`` connection."""
    return GatewayHook(conn_id).get_conn()


def archive_store(spec: Any, uri: str | None = None) -> Any:
    """The archive store for ``uri`` (default: the spec's); S3 through the amazon provider's ``S3Hook`` and the
    spec's ``aws`` connection (its ``endpoint_url`` extra points at any S3-compatible store)."""
    from lifecycle.paths import StatePaths
    from lifecycle.retirement.archive import open_store
    from lifecycle.retirement.retire import archive_uri

    uri = uri or archive_uri(spec, StatePaths.current())
    client = None
    if uri.startswith("s3://"):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id=spec.retirement.aws_conn_id).get_conn()
    return open_store(uri, client)
