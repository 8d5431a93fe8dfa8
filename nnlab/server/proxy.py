"""`python -m nnlab.server.proxy --storage URL --host H --port P`: Optuna's gRPC storage proxy.

Started by `nnlab server start` over the stack's Optuna database (an RDB storage, as Optuna
asks), so that sweep workers on any machine reach the study through `grpc://host:port`.
"""

from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnlab.server.proxy")
    parser.add_argument("--storage", required=True, help="an RDB storage URL (PostgreSQL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=13000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import optuna

    storage = optuna.storages.RDBStorage(args.storage)
    optuna.storages.run_grpc_proxy_server(storage, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
