"""The team stack's janitor: `python -m nnlab.server.janitor --every 60`, started by `nnlab
server start`. Every minute it ends the runs on the stack's MLflow server whose process is
gone (nnlab/tracking/heartbeat.py): on this host by pid, on any other by its liveness beat.
So a run of a machine that never comes back does not stay RUNNING, even if nothing else
runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def sweep_once(uri: str) -> list[str]:
    """End the dead runs on the server once; their ids."""
    import mlflow

    from nnlab.tracking.heartbeat import end_dead_runs

    return end_dead_runs(mlflow.MlflowClient(uri))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnlab.server.janitor")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between looks")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uri = os.environ["MLFLOW_TRACKING_URI"]
    print(f"janitor: every {args.every:g} s, runs on {uri} whose process is gone end FAILED",
          flush=True)
    while True:
        try:
            for run_id in sweep_once(uri):
                print(f"janitor: run {run_id} ended FAILED: its process is gone", flush=True)
        except Exception as error:  # noqa: BLE001 (the server restarting: look again later)
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"janitor: the server did not answer ({first[:200]}); next look in "
                  f"{args.every:g} s", flush=True)
        time.sleep(args.every)


if __name__ == "__main__":
    main()
