"""The `exporters.xray` section: KrakenD's keys plus a test-only endpoint override."""

from __future__ import annotations

import attrs
from gatescope.settings import boolean, setting, string, url

DEFAULT_VERSION = "KrakenD-opencensus"


@attrs.frozen
class XRayConfig:
    """Credentials come either from the two keys or, with `use_env`, from the default chain.

    Every section KrakenD's schema accepts parses; a section without usable static keys and
    without `use_env` is refused when the exporter starts (KrakenD would sign with empty keys
    and fail every export). With `use_env` true the keys are ignored, as KrakenD ignores them.
    """

    region: str = setting(
        string(), required=True,
        doc='AWS region, e.g. "eu-west-1"; "" falls back to AWS_DEFAULT_REGION, the shared '
            "config's region, then AWS_REGION",
    )
    version: str = setting(
        string(), default=DEFAULT_VERSION, doc="written to every segment's service.version",
    )
    use_env: bool = setting(
        boolean, default=False,
        doc="take credentials from the environment and botocore's default chain",
    )
    access_key_id: str | None = setting(
        string(), default=None, doc="static credentials (when use_env is false)",
    )
    secret_access_key: str | None = setting(
        string(), default=None, secret=True, doc="static credentials (when use_env is false)",
    )
    endpoint_url: str | None = setting(
        url(), default=None, extension=True,
        doc="send to this X-Ray endpoint instead of AWS's (for tests and private endpoints)",
    )

    def __repr__(self) -> str:
        """Redacts both credential keys (the id identifies the account; keep it out of logs)."""
        return (
            f"XRayConfig(region={self.region!r}, version={self.version!r}, "
            f"use_env={self.use_env!r}, access_key_id={_mask(self.access_key_id)}, "
            f"secret_access_key={_mask(self.secret_access_key)}, "
            f"endpoint_url={self.endpoint_url!r})"
        )


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"
