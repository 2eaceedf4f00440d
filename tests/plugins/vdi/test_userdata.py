"""vdi.userdata: rendering for both OSes, its guards, and the Linux user data run for real against moto."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from tests.include.ansible.powershell import syntax_errors
from vdi.catalog import DEFAULT_CATALOG_PATH, load_catalog
from vdi.ec2 import BOOTSTRAP_CAUSE_TAG_KEY, BOOTSTRAP_TAG_KEY, bootstrap_outcome
from vdi.playbook_bundle import publish_playbook_bundle
from vdi.request import parse_issue
from vdi.userdata import (MAX_USER_DATA_BYTES, allowed_settings, desktop_user_data, installable_display_protocols,
                          render_user_data)

REPO_ROOT = Path(__file__).resolve().parents[3]
S3_URI = "s3://vdi-artifacts/vdi/playbooks/" + "ab" * 32 + ".tar.gz"
BASE = dict(broker_address="broker.studio.internal", bundle="comp-ws", issue_key="VDI-42", request_id="req-42",
            region="eu-west-1")


def render(os_family: str = "linux", playbook_s3_uri: str | None = S3_URI, **overrides) -> str:
    return render_user_data(**{**BASE, "os_family": os_family, "playbook_s3_uri": playbook_s3_uri, **overrides})


def embedded_vars(text: str) -> dict:
    """The playbook variables the user data hands to Ansible (Linux) or to the Windows script."""
    linux = re.search(r"<<'JSON'\n(.*)\nJSON\n", text)
    if linux:
        return json.loads(linux.group(1))
    windows = re.search(r"\$Vars = '(.*)' \| ConvertFrom-Json", text)
    return json.loads(windows.group(1).replace("''", "'"))


@pytest.mark.parametrize("os_family", ["linux", "windows"])
@pytest.mark.parametrize("playbook_s3_uri", [S3_URI, None], ids=["s3", "embedded"])
def test_user_data_fits_in_16_kb_for_both_oses_and_both_bundle_sources(os_family, playbook_s3_uri):
    text = render(os_family, playbook_s3_uri)
    assert len(text.encode("utf-8")) <= MAX_USER_DATA_BYTES


def test_linux_user_data_is_a_bash_script_and_windows_a_powershell_block():
    assert render("linux").startswith("#!/bin/bash\n")
    windows = render("windows")
    assert windows.startswith("<powershell>\n") and windows.rstrip().endswith("</powershell>")


def test_a_requests_user_data_embeds_the_playbook_without_a_bucket_and_fetches_it_from_one(
        jira_issue, field_config, field_names, moto_endpoint):
    request = parse_issue(jira_issue, field_config, field_names)
    embedded = desktop_user_data(request, "linux", display_protocol="rdp", broker_address="broker.studio.internal",
                                 region="us-east-1")
    variables = embedded_vars(embedded)
    assert (variables["vdi_issue_key"], variables["vdi_request_id"], variables["vdi_bundle"]) == (
        "VDI-12", str(request.request_id), "standard")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="vdi-compose-test")
    fetched = desktop_user_data(request, "linux", display_protocol="rdp", broker_address="broker.studio.internal",
                                region="us-east-1", playbook_bucket="vdi-compose-test", s3_client=s3)
    published = [o["Key"] for o in s3.list_objects_v2(Bucket="vdi-compose-test")["Contents"]]
    assert len(published) == 1 and published[0] in fetched and published[0] not in embedded
    assert len(fetched) < len(embedded)


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_broker_address_bundle_and_identity_are_applied(os_family):
    variables = embedded_vars(render(os_family))
    assert variables["vdi_broker_address"] == "broker.studio.internal"
    assert variables["vdi_bundle"] == "comp-ws"
    assert (variables["vdi_issue_key"], variables["vdi_request_id"], variables["vdi_region"]) == (
        "VDI-42", "req-42", "eu-west-1")


def test_windows_installer_arguments_are_resolved_with_the_broker_address():
    variables = embedded_vars(render("windows", broker_address="10.1.2.3:8443"))
    assert variables["windows_desktop_agent_install_args"] == "/S /BROKER=10.1.2.3:8443"


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_s3_bundle_uri_and_its_hash_are_applied(os_family):
    text = render(os_family)
    assert "ab" * 32 in text
    assert "vdi-artifacts" in text and "vdi/playbooks/" + "ab" * 32 + ".tar.gz" in text


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_settings_override_playbook_variables(os_family):
    variables = embedded_vars(render(os_family, settings={"vdi_display_protocol": "none",
                                                          "leostream_agent_port": 9090}))
    assert variables["vdi_display_protocol"] == "none"
    assert variables["leostream_agent_port"] == 9090


@pytest.mark.parametrize("os_family", ["linux", "windows"])
@pytest.mark.parametrize("protocol", ["rdp", "none"])
def test_the_bundles_display_protocol_reaches_the_desktop(jira_issue, field_config, field_names, os_family, protocol):
    request = parse_issue(jira_issue, field_config, field_names)
    text = desktop_user_data(request, os_family, display_protocol=protocol, broker_address="broker.studio.internal",
                             region="us-east-1", playbook_bucket=None)
    assert embedded_vars(text)["vdi_display_protocol"] == protocol


def test_the_shipped_catalogs_protocols_are_ones_the_bootstrap_installs():
    for bundle in load_catalog(DEFAULT_CATALOG_PATH).bundles.values():
        for os_family in bundle.images:
            assert bundle.leostream.display_protocol in installable_display_protocols(os_family)


def test_dcv_is_installable_on_windows_and_on_linux_only_with_its_packages():
    assert installable_display_protocols("windows") == {"rdp", "dcv", "none"}
    assert installable_display_protocols("linux") == {"rdp", "none"}
    with pytest.raises(ValueError, match="cannot install the display protocol 'dcv' on linux .*"
                                         "remote_display_dcv_package_urls"):
        render("linux", settings={"vdi_display_protocol": "dcv"})
    packages = {"RedHat": ["https://packages.example.com/nice-dcv-server.el9.x86_64.rpm"], "Debian": []}
    assert "dcv" in installable_display_protocols("linux", {"remote_display_dcv_package_urls": packages})
    variables = embedded_vars(render("linux", settings={"vdi_display_protocol": "dcv",
                                                        "remote_display_dcv_package_urls": packages}))
    assert variables["vdi_display_protocol"] == "dcv"
    with pytest.raises(ValueError, match="cannot install the display protocol 'dcv' on windows"):
        render("windows", settings={"vdi_display_protocol": "dcv", "windows_desktop_dcv_msi_url": ""})


@pytest.mark.parametrize("os_family", ["linux", "windows"])
@pytest.mark.parametrize("settings", [
    {"leostream_password": "hunter22"},
    {"broker_api_token": "abc"},
    {"vdi_display_protocol": "AKIAIOSFODNN7EXAMPLE"},
    {"leostream_agent_port": "-----BEGIN RSA PRIVATE KEY-----"},
    {"vdi_display_protocol": "https://admin:s3cr3t@broker.studio.internal/"},
    {"vdi_secrets": {"agent_key": "not a secret id: it has spaces"}},
], ids=["password-name", "token-name", "aws-key", "private-key", "url-password", "secret-value-not-id"])
def test_secret_looking_settings_are_refused(os_family, settings):
    with pytest.raises(ValueError, match="secret"):
        render(os_family, settings=settings)


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_secrets_are_named_by_secrets_manager_id_not_carried(os_family):
    text = render(os_family, settings={"vdi_secrets": {"agent_key": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}})
    assert embedded_vars(text)["vdi_secrets"] == {"agent_key": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_rendered_user_data_holds_no_credentials_from_the_environment(os_family, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    text = render(os_family, playbook_s3_uri=None)
    assert "wJalrXUtnFEMI" not in text
    assert not re.search(r"AKIA[A-Z0-9]{16}|PRIVATE KEY|aws_secret_access_key", text)


@pytest.mark.parametrize(("field", "value"), [
    ("os_family", "macos"), ("broker_address", "broker.example.com; rm -rf /"), ("broker_address", "https://b.x"),
    ("broker_address", "broker:70000"), ("broker_address", ""), ("bundle", "a b"), ("bundle", "$(id)"),
    ("issue_key", "vdi-1"), ("request_id", "x'y"), ("region", "moon-1"),
    ("playbook_s3_uri", "s3://bucket/not-content-addressed.tar.gz"), ("playbook_s3_uri", "https://x/y.tar.gz"),
])
def test_bad_arguments_are_refused_with_a_clear_value_error(field, value):
    with pytest.raises(ValueError, match=field):
        render(**{field: value})


def test_unknown_setting_is_refused_and_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown settings for linux: vdi_display_protcol"):
        render(settings={"vdi_display_protcol": "dcv"})


def test_identity_cannot_be_overridden_through_settings():
    with pytest.raises(ValueError, match="pass them as arguments"):
        render(settings={"vdi_broker_address": "evil.example.com"})


def test_os_specific_settings_are_refused_for_the_other_os():
    assert "leostream_agent_linux_url" in allowed_settings("linux")
    assert "windows_desktop_agent_url" in allowed_settings("windows")
    with pytest.raises(ValueError, match="unknown settings for windows"):
        render("windows", settings={"leostream_agent_linux_url": "https://example.com/a.jar"})


def test_user_data_over_16_kb_is_refused():
    big = [f"package-{n:05d}" for n in range(2000)]
    with pytest.raises(ValueError, match="over the EC2 limit of 16384"):
        render(settings={"vdi_base_bundle_packages": {"comp-ws": big}})


@pytest.mark.parametrize("playbook_s3_uri", [S3_URI, None], ids=["s3", "embedded"])
def test_windows_user_data_parses_as_powershell(playbook_s3_uri):
    text = render("windows", playbook_s3_uri, settings={"windows_desktop_agent_install_args": "/S 'quoted' \"x\""})
    body = text.removeprefix("<powershell>\n").rstrip().removesuffix("</powershell>")
    assert syntax_errors(body) == []


def test_linux_user_data_parses_as_bash(tmp_path):
    script = tmp_path / "user-data.sh"
    script.write_text(render("linux", None, settings={"leostream_agent_linux_install_args": "-s 'quoted' \"x\""}))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_quotes_in_settings_cannot_break_out_of_the_scripts():
    hostile = "x' ; touch /tmp/pwned ; echo '"
    linux = render("linux", settings={"leostream_agent_linux_install_args": hostile})
    assert embedded_vars(linux)["leostream_agent_linux_install_args"] == hostile
    windows = render("windows", settings={"windows_desktop_agent_install_args": hostile})
    assert embedded_vars(windows)["windows_desktop_agent_install_args"] == hostile


def test_bootstrap_versions_match_the_pinned_ones_this_repo_tests_with():
    from vdi import userdata

    requirements = (REPO_ROOT / "requirements.txt").read_text()
    lock = (REPO_ROOT / "requirements.lock").read_text()
    assert f"ansible-core=={userdata.ANSIBLE_CORE_VERSION}" in requirements
    assert re.search(rf"^boto3=={re.escape(userdata.BOTO3_VERSION)}$", lock, re.MULTILINE)


# --- the Linux user data, run for real --------------------------------------------------------------

class _Imdsv2Handler(BaseHTTPRequestHandler):
    """EC2's instance metadata service, IMDSv2 only: a PUT gets a session token, reads without it get 401."""

    token = "imdsv2-session-token"
    instance_id = ""

    def do_PUT(self):  # noqa: N802 (http.server's naming)
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._answer(400, "")
        self._answer(200, self.token)

    def do_GET(self):  # noqa: N802
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            return self._answer(401, "")
        if self.path != "/latest/meta-data/instance-id":
            return self._answer(404, "")
        self._answer(200, self.instance_id)

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def ec2(moto_endpoint):
    return boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def instance_id(ec2) -> str:
    return ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]


@pytest.fixture
def imds(instance_id):
    handler = type("Handler", (_Imdsv2Handler,), {"instance_id": instance_id})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.fixture
def boot(tmp_path, moto_endpoint, imds, ec2, instance_id, stand_in_agent_vars):
    """Runs rendered Linux user data with bash as cloud-init would, kept inside tmp_path: instance metadata
    from a local IMDSv2 endpoint naming a moto instance, AWS calls to the moto server, the bootstrap venv is
    this test venv (it holds the pinned ansible-core and boto3), and the playbook skips root-only changes."""
    settings = {
        "bootstrap_log_file": str(tmp_path / "log" / "vdi-bootstrap.log"),
        "bootstrap_imds_endpoint": imds,
        "bootstrap_venv": sys.prefix,
        **stand_in_agent_vars,
    }
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "HOME": str(tmp_path)}

    def run(playbook_s3_uri: str | None, more_settings: dict | None = None) -> subprocess.CompletedProcess:
        script = tmp_path / "user-data.sh"
        script.write_text(render_user_data(**{**BASE, "region": "us-east-1"}, os_family="linux",
                                           playbook_s3_uri=playbook_s3_uri,
                                           settings={**settings, **(more_settings or {})}))
        return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)

    def bootstrap_tag() -> str | None:
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]},
                                          {"Name": "key", "Values": [BOOTSTRAP_TAG_KEY]}])["Tags"]
        return tags[0]["Value"] if tags else None

    run.tag = bootstrap_tag
    run.outcome = lambda: bootstrap_outcome(ec2, instance_id)
    run.instance_id = instance_id
    run.log = Path(settings["bootstrap_log_file"])
    run.state = Path(settings["vdi_state_dir"])
    run.agent_dir = Path(stand_in_agent_vars["leostream_agent_linux_creates"])
    return run


def test_linux_user_data_with_embedded_bundle_bootstraps_and_tags_done(boot):
    result = boot(None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert boot.outcome() == ("done", None)
    assert (boot.agent_dir / "installer-args").read_text().split() == ["-s", "-b", "broker.studio.internal"]
    assert json.loads((boot.state / "bootstrap.json").read_text())["status"] == "done"
    log = boot.log.read_text()
    assert "[vdi-bootstrap]" in log and "done" in log and f"instance {boot.instance_id}" in log


def test_linux_user_data_fetches_the_published_bundle_from_s3(boot, moto_endpoint):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="vdi-boot-test")
    uri = publish_playbook_bundle(s3, "vdi-boot-test")
    result = boot(uri)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"fetching {uri}" in boot.log.read_text()
    assert boot.tag() == "done"


def test_linux_user_data_run_again_does_nothing(boot):
    assert boot(None).returncode == 0
    installed_at = (boot.agent_dir / "installer-args").stat().st_mtime_ns
    again = boot(None)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already done with this bundle" in boot.log.read_text()
    assert (boot.agent_dir / "installer-args").stat().st_mtime_ns == installed_at


def test_linux_user_data_refuses_a_tampered_bundle_and_tags_failed(boot, moto_endpoint):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="vdi-tamper-test")
    uri = publish_playbook_bundle(s3, "vdi-tamper-test")
    key = uri.removeprefix("s3://vdi-tamper-test/")
    s3.put_object(Bucket="vdi-tamper-test", Key=key, Body=b"not the bundle that was published")

    result = boot(uri)

    assert result.returncode != 0
    assert boot.outcome() == ("failed", "Setup step failed: Verify the checksum of the setup files")
    assert not (boot.agent_dir / "installer-args").exists()
    log = boot.log.read_text()
    assert "checksum did NOT match" in log and "failed" in log


def test_linux_user_data_that_cannot_download_the_bundle_tags_failed_with_the_cause(boot, moto_endpoint):
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="vdi-missing-test")
    uri = publish_playbook_bundle(s3, "vdi-missing-test")
    s3.delete_object(Bucket="vdi-missing-test", Key=uri.removeprefix("s3://vdi-missing-test/"))

    result = boot(uri)

    assert result.returncode != 0
    assert boot.outcome() == ("failed", "Setup step failed: Download the setup files")


def test_a_failed_playbook_task_is_the_cause_and_the_user_data_does_not_overwrite_it(boot, tmp_path):
    result = boot(None, {"leostream_agent_linux_url": (tmp_path / "missing.jar").as_uri()})

    assert result.returncode != 0
    assert boot.outcome() == ("failed", "Setup step failed: Download the Leostream agent installer")
    assert "failed (exit" in boot.log.read_text()


@pytest.mark.parametrize("os_family", ["linux", "windows"])
def test_every_documented_variable_can_be_set_to_its_default(os_family):
    from vdi.userdata import BOOT_SETTINGS, _defaults

    defaults = {**_defaults(os_family), **BOOT_SETTINGS[os_family]}
    for name in sorted(allowed_settings(os_family)):
        render(os_family, settings={name: defaults[name]})


def test_bootstrap_tag_keys_the_reader_uses_are_the_playbook_defaults():
    from vdi.userdata import _defaults

    for os_family in ("linux", "windows"):
        assert _defaults(os_family)["vdi_bootstrap_tag_key"] == BOOTSTRAP_TAG_KEY
        assert _defaults(os_family)["vdi_bootstrap_cause_tag_key"] == BOOTSTRAP_CAUSE_TAG_KEY
