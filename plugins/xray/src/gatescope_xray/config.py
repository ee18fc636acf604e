"""The `exporters.xray` section: KrakenD's keys plus a test-only endpoint override."""

from __future__ import annotations

import attrs
from gatescope.settings import Problems, boolean, setting, string, url

DEFAULT_VERSION = "KrakenD-opencensus"


@attrs.frozen
class XRayConfig:
    """Credentials come either from the two keys or, with `use_env`, from the default chain."""

    region: str = setting(
        string(), required=True,
        doc='AWS region, e.g. "eu-west-1"; "" falls back to AWS_REGION / AWS_DEFAULT_REGION / '
            "the shared config",
    )
    version: str = setting(
        string(), default=DEFAULT_VERSION, doc="written to every segment's service.version",
    )
    use_env: bool = setting(
        boolean, default=False,
        doc="take credentials from the environment and botocore's default chain",
    )
    access_key_id: str | None = setting(
        string(non_empty=True), default=None, doc="static credentials (when use_env is false)",
    )
    secret_access_key: str | None = setting(
        string(non_empty=True), default=None, secret=True,
        doc="static credentials (when use_env is false)",
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

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        """KrakenD's schema: either both static keys, or `use_env` (then no keys at all)."""
        keys = [k for k in ("access_key_id", "secret_access_key") if k in present]
        if self.use_env:
            for key in keys:
                problems.add(
                    f"{path}.{key}",
                    "must not be set when use_env is true (credentials then come from the "
                    "environment); remove it or set use_env to false",
                )
            return
        for key in ("access_key_id", "secret_access_key"):
            if key in present:
                continue
            problems.add(
                f"{path}.{key}",
                "is required unless use_env is true (give both access_key_id and "
                "secret_access_key, or set use_env to true)",
            )


def _mask(value: str | None) -> str:
    return "None" if value is None else "'***'"
