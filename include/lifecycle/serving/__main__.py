"""Run the gateway: ``python -m lifecycle.serving [--host 127.0.0.1] [--port 8000]``.

Credentials, read from the state folder (``$LIFECYCLE_HOME``) unless set in the environment: the admin token
(``$LIFECYCLE_GATEWAY_TOKEN``, else ``secrets/gateway_token``) and the token that posting feedback needs
(``$LIFECYCLE_FEEDBACK_TOKEN``, else ``secrets/feedback_token``; the admin token is accepted too). Clients on the same
state folder (the simulator, the demo) read the same files.
"""
from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(description="lifecycle serving gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--models", nargs="*", help="spec names to serve (default: every spec)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from lifecycle.serving.app import Gateway, create_app
    from lifecycle.spec import get_spec, load_specs

    specs = [get_spec(m) for m in args.models] if args.models else load_specs()
    app = create_app(Gateway(specs))
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning", timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
