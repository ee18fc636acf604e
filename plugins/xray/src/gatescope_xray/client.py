"""botocore's X-Ray client: built from the config, PutTraceSegments in API-sized chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from gatescope import ExporterStartError
from gatescope.pipeline import ExportError

from gatescope_xray.config import XRayConfig

#: Segment documents per PutTraceSegments call: the X-Ray daemon's and the OpenTelemetry
#: awsxray exporter's batch size, which AWS's service enforces.
MAX_DOCUMENTS_PER_CALL = 50
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "ThrottledException", "Throttling", "TooManyRequestsException",
    "RequestLimitExceeded", "ServiceUnavailable", "ServiceUnavailableException",
    "InternalFailure", "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})


def chunks(documents: Sequence[str], size: int = MAX_DOCUMENTS_PER_CALL) -> Iterator[Sequence[str]]:
    for index in range(0, len(documents), size):
        yield documents[index:index + size]


class Redactor:
    """Removes the configured credentials from any text before it is raised or logged."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def make_client(config: XRayConfig, timeout: float, user_agent: str) -> Any:
    """An X-Ray client; raises ExporterStartError when no region or no credentials resolve."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError
    from botocore.session import Session

    session = Session()
    # "" falls back like the Go exporter: AWS_DEFAULT_REGION (and the shared config), AWS_REGION.
    region = config.region or session.get_config_variable("region") or os.environ.get("AWS_REGION")
    if not region:
        raise ExporterStartError(
            'xray: no AWS region: set "region" in exporters.xray (when it is "", '
            "AWS_DEFAULT_REGION, AWS_REGION or the shared config's region is used)"
        )
    options: dict[str, Any] = {}
    if config.use_env:
        try:
            credentials = session.get_credentials()
        except BotoCoreError as exc:
            raise ExporterStartError(f"xray: cannot read AWS credentials: {exc}") from exc
        if credentials is None:
            raise ExporterStartError(
                "xray: use_env is true but no AWS credentials were found (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE / shared credentials file, or an instance or "
                "container role)"
            )
    elif not config.access_key_id or not config.secret_access_key:
        raise ExporterStartError(
            "xray: use_env is false, so access_key_id and secret_access_key must both be given "
            "and non-empty; or set use_env to true to take credentials from the environment"
        )
    else:
        options["aws_access_key_id"] = config.access_key_id
        options["aws_secret_access_key"] = config.secret_access_key
    client_config = Config(
        connect_timeout=timeout, read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": 1},  # gatescope's core retries
        user_agent_extra=user_agent,
    )
    try:
        return session.create_client(
            "xray", region_name=region, endpoint_url=config.endpoint_url, config=client_config,
            **options,
        )
    except BotoCoreError as exc:
        raise ExporterStartError(f"xray: cannot create the X-Ray client: {exc}") from exc


def export_error(exc: Exception, redact: Redactor) -> ExportError:
    """botocore's failure as an ExportError: network, throttling and 5xx are retried."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        HTTPClientError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        retryable = status == 429 or status >= 500 or code in RETRYABLE_CODES
        message = f"PutTraceSegments failed: HTTP {status} {code}: {error.get('Message', '')}"
        return ExportError(redact(message), retryable=retryable)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError
                  | HTTPClientError):
        return ExportError(redact(f"X-Ray endpoint unreachable: {exc}"), retryable=True)
    if isinstance(exc, NoCredentialsError):
        return ExportError("no AWS credentials available", retryable=False)
    return ExportError(redact(f"PutTraceSegments failed: {type(exc).__name__}: {exc}"),
                       retryable=False)
