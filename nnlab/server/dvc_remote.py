"""The DVC remote on the team stack's S3: configure it, and check it before `dvc push/pull`.

DVC reports an unreachable S3 endpoint after about 12 s of retries as "unexpected error -
Could not connect to the endpoint URL", without naming the remote or the fix. `nnlab push` and
`nnlab pull` check the remote first (one S3 call, a few seconds at most) and then hand over
to `dvc push` / `dvc pull` with the same arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnlab.server.settings import DVC_BUCKET, DVC_REMOTE, Credentials, ServerError, Settings

CHECK_SECONDS = 5


def configure(project: Path, settings: Settings, credentials: Credentials) -> str:
    """Add the remote `team` (s3://dvc on the stack) to .dvc/config.local, never to git, and
    make it the default unless another remote already is. Returns what was done, in words."""
    from dvc.config import Config

    config = Config(dvc_dir=str(project / ".dvc"))
    default = config.get("core", {}).get("remote")
    with config.edit("local") as local:
        local["remote"][DVC_REMOTE] = {
            "url": f"s3://{DVC_BUCKET}",
            "endpointurl": settings.s3_endpoint,
            "access_key_id": credentials.s3_access_key,
            "secret_access_key": credentials.s3_secret_key,
        }
        if default in (None, DVC_REMOTE):
            local["core"]["remote"] = DVC_REMOTE
    role = "the default remote" if default in (None, DVC_REMOTE) else \
        f"not the default (`{default}` is): use `dvc push -r {DVC_REMOTE}`"
    return (f"DVC remote `{DVC_REMOTE}`: s3://{DVC_BUCKET} at {settings.s3_endpoint}, in "
            f".dvc/config.local, {role}.")


def check(project: Path, name: str | None = None) -> None:
    """Raise ServerError (one line: the remote, the cause, the fix) when remote `name` (the
    default remote if None) is an S3 remote that does not answer or refuses its credentials.
    Other kinds of remotes are left to DVC."""
    from dvc.config import Config

    config = Config(dvc_dir=str(project / ".dvc"))
    name = name or config.get("core", {}).get("remote")
    if not name:
        raise ServerError("no DVC remote is configured: start the team stack with "
                          "`make server`, which adds the remote `team`, or pass -r NAME")
    remote: dict[str, Any] = config.get("remote", {}).get(name) or {}
    if not remote:
        raise ServerError(f"there is no DVC remote `{name}`: see `dvc remote list`")
    url = str(remote.get("url", ""))
    if not url.startswith("s3://"):
        return
    _check_s3(name, url, remote)


def s3_client(endpoint: str | None, key: str | None, secret: str | None, *,
              region: str = "us-east-1", timeout: float = 30, attempts: int = 3) -> Any:
    """A boto3 S3 client for an endpoint (None: AWS) and a key pair."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(connect_timeout=min(timeout, 5), read_timeout=timeout,
                      retries={"max_attempts": attempts}),
    )


def _check_s3(name: str, url: str, remote: dict[str, Any]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    endpoint = remote.get("endpointurl")
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    where = f"DVC remote `{name}` ({url}{f' at {endpoint}' if endpoint else ''})"
    s3 = s3_client(endpoint, remote.get("access_key_id"), remote.get("secret_access_key"),
                   region=remote.get("region", "us-east-1"), timeout=CHECK_SECONDS, attempts=1)
    try:
        s3.head_bucket(Bucket=bucket)
    except EndpointConnectionError:
        raise ServerError(
            f"{where} does not answer: start the team stack with `make server` (`nnlab "
            f"server status` shows what is down), or point the remote at the server with "
            f"`dvc remote modify --local {name} endpointurl http://HOST:PORT`") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ServerError(
                f"{where} refused its credentials ({code}): set them with `dvc remote modify "
                f"--local {name} access_key_id ...` and `... secret_access_key ...` (the "
                "values are in .nnlab/server/env on the server's machine)") from None
        if code in ("404", "NoSuchBucket"):
            raise ServerError(f"{where} has no bucket `{bucket}`: `nnlab server start` "
                              "creates it") from None
        raise ServerError(f"{where} answered {code}: {error}") from None
    except BotoCoreError as error:
        raise ServerError(f"{where} cannot be reached ({error}): check `nnlab server "
                          "status` and the remote's endpointurl") from None
