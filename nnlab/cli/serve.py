"""`nnlab serve --model models:/NAME@champion`: MLflow's scoring server on a registered model,
with a bound on what each request may cost; the work is nnlab/handoff/scoring_server.py."""

from __future__ import annotations

import argparse

from nnlab.cli.one_line_errors import one_line_errors
from nnlab.handoff.limits import MAX_BODY_MB, MAX_IMAGES, MAX_PIXELS, REQUEST_PIXELS, Limits


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="MLflow's scoring server on a registered model, taking image files",
        description="Serve a model of MLflow's registry (or any models:/ URI) with MLflow's "
        "scoring server. POST /invocations {\"inputs\": [\"<base64 PNG or JPEG>\", ...]} or "
        "uint8 pixels (N, H, W, C); each image gets its class and every class's probability.")
    serve.add_argument("--model", required=True, metavar="models:/NAME@champion")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=int, default=5001, help="default: 5001")
    serve.add_argument("--max-body-mb", type=float, default=MAX_BODY_MB,
                       help=f"larger request bodies get 413, unread (default: {MAX_BODY_MB:g})")
    serve.add_argument("--max-images", type=int, default=MAX_IMAGES,
                       help=f"images per request (default: {MAX_IMAGES})")
    serve.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                       help="width x height of one image file, checked before it is decoded "
                       f"(default: {MAX_PIXELS}; a request's files: {REQUEST_PIXELS} times "
                       "that)")
    serve.add_argument("--client-timeout", type=float, default=Limits.client_timeout,
                       help="seconds a connection has to send a whole request, from its "
                       "start or its previous answer, before it is closed (default: "
                       f"{Limits.client_timeout:g})")
    serve.add_argument("--max-connections", type=int, default=Limits.max_connections,
                       help="open connections per server process; over it, the one waiting "
                       "longest for its request is closed (default: "
                       f"{Limits.max_connections}, less if `ulimit -n` leaves no room)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port, each with its own copy of the "
                       "model: about one per core (default: 1)")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    from nnlab.handoff import scoring_server

    limits = Limits(args.max_body_mb, args.max_images, args.max_pixels, args.client_timeout,
                    args.max_connections)
    try:
        with one_line_errors("serve", server=("nothing is served", "serve again")):
            scoring_server.serve(args.model, args.host, args.port, limits, args.workers)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
