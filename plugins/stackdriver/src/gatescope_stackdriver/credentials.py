"""Which project and credentials to use, with errors that say what is missing and how to fix it."""

from __future__ import annotations

from typing import Any

from gatescope.exporter import ExporterStartError

from gatescope_stackdriver.config import StackdriverConfig

SCOPES = (
    "https://www.googleapis.com/auth/trace.append",
    "https://www.googleapis.com/auth/monitoring.write",
)
ADC_HELP = ("set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run "
            "`gcloud auth application-default login`, or run on Google Cloud with a service "
            "account attached")


def resolve(config: StackdriverConfig) -> tuple[str, Any]:
    """(project id, credentials or None for the plaintext endpoint override)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    if config.endpoint is not None and config.project_id:
        return config.project_id, None
    try:
        credentials, detected = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        if config.project_id:
            raise ExporterStartError(
                f"stackdriver: no Google credentials found for project {config.project_id!r}: "
                f"{ADC_HELP} ({exc})") from exc
        raise ExporterStartError(
            "stackdriver: no project_id configured and no Application Default Credentials to "
            f"take it from: set exporters.stackdriver.project_id, and {ADC_HELP} ({exc})"
        ) from exc
    project = config.project_id or detected or ""
    if not project:
        raise ExporterStartError(
            "stackdriver: no project_id configured and the Application Default Credentials name "
            "no project: set exporters.stackdriver.project_id or the GOOGLE_CLOUD_PROJECT "
            "environment variable")
    return project, (None if config.endpoint is not None else credentials)
