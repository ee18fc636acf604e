"""Project detection from config or Application Default Credentials; clear start-up errors."""

from __future__ import annotations

import json

import pytest
from gatescope.exporter import ExporterStartError
from gatescope.testing import krakend_config


def service_account_file(path, project: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "k1",
        "private_key": pem, "client_email": f"gw@{project}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }))
    return path


def test_no_project_and_no_adc_is_a_clear_error(gatescope_plugins, no_adc, cloud):
    with pytest.raises(ExporterStartError) as info:
        gatescope_plugins.telemetry(krakend_config({"stackdriver": {"endpoint": cloud.address}}))
    message = str(info.value)
    assert "no project_id configured" in message
    assert "exporters.stackdriver.project_id" in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


def test_project_without_credentials_is_a_clear_error(gatescope_plugins, no_adc):
    with pytest.raises(ExporterStartError) as info:
        gatescope_plugins.telemetry(krakend_config({"stackdriver": {"project_id": "p"}}))
    message = str(info.value)
    assert "no Google credentials found for project 'p'" in message
    assert "gcloud auth application-default login" in message


def test_credentials_without_a_project_is_a_clear_error(gatescope_plugins, no_adc, tmp_path,
                                                        cloud):
    adc = tmp_path / "user.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                               "client_secret": "s", "refresh_token": "r"}))
    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    with pytest.raises(ExporterStartError) as info:
        gatescope_plugins.telemetry(krakend_config({"stackdriver": {"endpoint": cloud.address}}))
    assert "GOOGLE_CLOUD_PROJECT" in str(info.value)
    assert "s\"" not in str(info.value) and "refresh_token" not in str(info.value)


def test_project_from_the_service_account_file(gatescope_plugins, no_adc, tmp_path, cloud):
    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                  str(service_account_file(tmp_path / "sa.json", "from-adc")))
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": {"endpoint": cloud.address}}, sample_rate=100))
    root = telemetry.kit.tracer.start_root("/x", 1, None)
    root.end()
    assert telemetry.flush(5)
    (request,) = cloud.wait_for("BatchWriteSpans")
    assert request.name == "projects/from-adc"
    assert request.spans[0].name.startswith("projects/from-adc/traces/")
    # nothing of the credentials reaches the plaintext endpoint
    (_, _, metadata), *_ = cloud.calls
    assert "authorization" not in metadata


def test_project_from_the_environment(gatescope_plugins, no_adc, tmp_path, cloud):
    adc = tmp_path / "user.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                               "client_secret": "s", "refresh_token": "r"}))
    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    no_adc.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": {"endpoint": cloud.address}}, sample_rate=100))
    root = telemetry.kit.tracer.start_root("/x", 1, None)
    root.end()
    assert telemetry.flush(5)
    assert cloud.wait_for("BatchWriteSpans")[0].name == "projects/from-env"


def test_configured_project_wins_over_adc(gatescope_plugins, no_adc, tmp_path, cloud):
    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                  str(service_account_file(tmp_path / "sa.json", "from-adc")))
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": {"project_id": "configured", "endpoint": cloud.address}}, sample_rate=100))
    root = telemetry.kit.tracer.start_root("/x", 1, None)
    root.end()
    assert telemetry.flush(5)
    assert cloud.wait_for("BatchWriteSpans")[0].name == "projects/configured"


def test_google_endpoint_clients_use_the_adc_credentials(no_adc, tmp_path):
    import logging

    from gatescope.exporter import ExporterContext
    from gatescope.metrics import MetricsSnapshot
    from gatescope_stackdriver import StackdriverConfig, StackdriverExporter

    no_adc.setenv("GOOGLE_APPLICATION_CREDENTIALS",
                  str(service_account_file(tmp_path / "sa.json", "from-adc")))
    exporter = StackdriverExporter(StackdriverConfig(), ExporterContext(
        "svc", 0, logging.getLogger("t"), lambda: MetricsSnapshot(0, ())))
    exporter.start()
    try:
        assert exporter.project == "from-adc"
        for client in (exporter._trace, exporter._monitoring):
            credentials = client.transport._credentials
            assert credentials.service_account_email == "gw@from-adc.iam.gserviceaccount.com"
        assert exporter._trace.transport._host.startswith("cloudtrace.googleapis.com")
        assert exporter._monitoring.transport._host.startswith("monitoring.googleapis.com")
    finally:
        exporter.shutdown(1)
