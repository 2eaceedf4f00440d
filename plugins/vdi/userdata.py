"""EC2 user data that bootstraps a Leostream desktop at first boot.

``desktop_user_data`` composes a request's user data (publishing the playbook bundle first when a bucket is
configured); ``render_user_data`` renders ``templates/userdata/linux.sh.j2`` (a bash script that cloud-init runs once)
or ``templates/userdata/windows.ps1.j2`` (a ``<powershell>`` block that EC2Launch runs once). Either one:

- logs everything to a known file (``/var/log/vdi-bootstrap.log``, ``C:\\ProgramData\\VDI\\bootstrap.log``);
- reads the instance id through IMDSv2 and reports progress as the instance tag ``vdi:bootstrap``
  (``running``, then ``done`` or ``failed``), written with the instance role: the desktop's completion signal;
  a failure also writes ``vdi:bootstrap-cause``, the step that failed in plain words (``vdi.ec2.bootstrap_outcome``
  reads both);
- fetches the playbook bundle (``vdi.playbook_bundle``) from S3 with the instance role, or unpacks it from
  the user data itself when no S3 URI is given, and checks its sha256 before using it;
- runs ``include/ansible/desktop.yml`` (Linux, in a pinned ansible-core venv) or the Windows bootstrap
  script from the same bundle, with this desktop's variables;
- is safe to run again: a lock, a marker that skips a finished bootstrap, idempotent steps.

It never carries a secret: secrets are named by Secrets Manager id in ``vdi_secrets`` and read at boot with
the instance role. Rendering refuses secret-looking settings and material, and user data over 16 KB.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jinja2
import yaml

from vdi.ec2 import aws_client
from vdi.playbook_bundle import ANSIBLE_ROOT, build_playbook_bundle, find_secret_material, publish_playbook_bundle
from vdi.request import BUNDLE_PATTERN, ISSUE_KEY_PATTERN, DesktopRequest

MAX_USER_DATA_BYTES = 16 * 1024

TEMPLATES = Path(__file__).resolve().parent / "templates" / "userdata"

# The versions installed into the bootstrap venv on Linux: the ones this repo lints and tests with.
ANSIBLE_CORE_VERSION = "2.19.14"
BOTO3_VERSION = "1.44.8"

LINUX_ROLES = ("vdi_base", "leostream_agent", "remote_display", "desktop_firewall", "vdi_instance")
WINDOWS_ROLES = ("windows_desktop",)

# Set from render_user_data's arguments (and vdi_instance_id at boot), never from settings.
IDENTITY_VARIABLES = frozenset({
    "vdi_os_family", "vdi_broker_address", "vdi_bundle", "vdi_issue_key", "vdi_request_id", "vdi_region",
    "vdi_instance_id",
})

# Settings of the user data itself (the playbook's variables are the rest), with their defaults.
BOOT_SETTINGS: dict[str, dict[str, Any]] = {
    "linux": {
        "bootstrap_log_file": "/var/log/vdi-bootstrap.log",
        "bootstrap_imds_endpoint": "http://169.254.169.254",
        "bootstrap_venv": "/opt/vdi/ansible",
        "bootstrap_ansible_core_version": ANSIBLE_CORE_VERSION,
        "bootstrap_boto3_version": BOTO3_VERSION,
        "bootstrap_pip_index_url": "",
    },
    "windows": {
        "bootstrap_log_file": "C:\\ProgramData\\VDI\\bootstrap.log",
        "bootstrap_imds_endpoint": "http://169.254.169.254",
    },
}

_SECRET_NAME = re.compile(r"(?i)passw|secret|token|private[_-]?key|api[_-]?key|credential|access[_-]?key")
_SECRET_NAME_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9/_+=.@:-]{1,2048}$")
_HOST = re.compile(r"^(?=.{1,253}(?::\d{1,5})?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::(\d{1,5}))?$")
_BUNDLE = re.compile(BUNDLE_PATTERN)
_ISSUE_KEY = re.compile(ISSUE_KEY_PATTERN)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_S3_BUNDLE_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/"
                            r"(?P<key>(?:[A-Za-z0-9!_.*'()/-]+/)?(?P<sha256>[0-9a-f]{64})\.tar\.gz)$")
_SAFE_TEXT = re.compile(r"^[^\x00-\x1f\x7f]*$")


def desktop_user_data(request: DesktopRequest, os_family: str, *, display_protocol: str, broker_address: str,
                      region: str, playbook_bucket: str | None = None, s3_client=None) -> str:
    """The request's first-boot user data. ``display_protocol`` is the bundle's (the catalog's
    ``leostream.display_protocol``). With ``playbook_bucket`` (``VDI_PLAYBOOK_BUCKET``) the playbook bundle
    is published there (through ``s3_client``, default: from ``aws_default``) and fetched at boot; without
    one it is embedded."""
    playbook_uri = None
    if playbook_bucket:
        playbook_uri = publish_playbook_bundle(s3_client or aws_client("s3"), playbook_bucket)
    return render_user_data(os_family=os_family, broker_address=broker_address, bundle=request.bundle,
                            issue_key=request.issue_key, request_id=str(request.request_id),
                            playbook_s3_uri=playbook_uri, region=region,
                            settings={"vdi_display_protocol": display_protocol})


def render_user_data(*, os_family: str, broker_address: str, bundle: str, issue_key: str, request_id: str,
                     playbook_s3_uri: str | None, region: str, settings: dict | None = None) -> str:
    """Render the first-boot user data for one desktop.

    - ``os_family``: ``"linux"`` (bash script for cloud-init) or ``"windows"`` (``<powershell>`` block).
    - ``broker_address``: the Leostream broker the agent registers with (host name or IP, optional ``:port``).
    - ``bundle``: the catalog's desktop bundle name; the playbook installs its extra packages.
    - ``issue_key``, ``request_id``: recorded on the desktop and in the log (no secret).
    - ``playbook_s3_uri``: the URI returned by ``vdi.playbook_bundle.publish_playbook_bundle``
      (``s3://bucket/prefix/<sha256>.tar.gz``), fetched at boot with the instance role; ``None`` embeds the
      bundle in the user data instead, which only fits while the playbook is small.
    - ``region``: the instance's region (S3 and EC2 calls at boot).
    - ``settings``: overrides of the playbook's variables (``include/ansible/group_vars`` and role
      defaults, e.g. ``vdi_display_protocol``, ``leostream_agent_linux_url``) and of the user data's own
      ``bootstrap_*`` settings. Secrets go in ``vdi_secrets`` as ``{name: Secrets Manager id}``.

    Returns the user data text (pass it as ``UserData``; boto3 base64-encodes it). Raises ``ValueError``
    for a bad argument, an unknown setting, secret-looking material, a display protocol the bootstrap cannot
    install on ``os_family`` with these settings, or a result over 16 KB.
    """
    if os_family not in BOOT_SETTINGS:
        raise ValueError(f"os_family must be 'linux' or 'windows', not {os_family!r}")
    if not isinstance(broker_address, str) or not _HOST.match(broker_address) or not _valid_port(broker_address):
        raise ValueError(f"broker_address must be a host name or IP address with an optional :port, "
                         f"not {broker_address!r}")
    _check(bundle, _BUNDLE, "bundle", "a catalog bundle name (letters, digits, '.', '_', '-')")
    _check(issue_key, _ISSUE_KEY, "issue_key", "a Jira issue key such as VDI-42")
    _check(request_id, _REQUEST_ID, "request_id", "letters, digits, '.', '_', ':', '-'")
    _check(region, _REGION, "region", "an AWS region such as us-east-1")

    settings = dict(settings or {})
    _check_settings(os_family, settings)
    boot = {key: settings.pop(key, default) for key, default in BOOT_SETTINGS[os_family].items()}
    protocol = settings.get("vdi_display_protocol", _defaults(os_family)["vdi_display_protocol"])
    installable = installable_display_protocols(os_family, settings)
    if protocol not in installable:
        raise ValueError(f"the bootstrap cannot install the display protocol {protocol!r} on {os_family} "
                         f"(it can: {', '.join(sorted(installable))}){_protocol_hint(os_family, protocol)}")

    identity = {
        "vdi_os_family": os_family, "vdi_broker_address": broker_address, "vdi_bundle": bundle,
        "vdi_issue_key": issue_key, "vdi_request_id": request_id, "vdi_region": region,
    }
    if playbook_s3_uri is None:
        other_roles = WINDOWS_ROLES if os_family == "linux" else LINUX_ROLES
        built = build_playbook_bundle(without_roles=frozenset(other_roles))
        source = {"kind": "embedded", "sha256": built.sha256, "base64": base64.b64encode(built.data).decode()}
    else:
        match = _S3_BUNDLE_URI.match(playbook_s3_uri) if isinstance(playbook_s3_uri, str) else None
        if not match:
            raise ValueError(f"playbook_s3_uri must be a content-addressed bundle URI "
                             f"s3://<bucket>/<prefix>/<sha256>.tar.gz, not {playbook_s3_uri!r}")
        source = {"kind": "s3", **match.groupdict()}

    if os_family == "linux":
        playbook_vars = {**identity, **settings}
        state_dir = settings.get("vdi_state_dir", _defaults("linux")["vdi_state_dir"])
    else:
        playbook_vars = _windows_vars(identity, settings)
        state_dir = playbook_vars["windows_desktop_state_dir"]

    text = _environment().get_template(f"{os_family}.{'sh' if os_family == 'linux' else 'ps1'}.j2").render(
        identity=identity, boot=boot, source=source, state_dir=state_dir,
        tag_key=settings.get("vdi_bootstrap_tag_key", _defaults(os_family)["vdi_bootstrap_tag_key"]),
        cause_tag_key=settings.get("vdi_bootstrap_cause_tag_key",
                                   _defaults(os_family)["vdi_bootstrap_cause_tag_key"]),
        vars_json=json.dumps(playbook_vars, sort_keys=True, separators=(",", ":")),
    )
    found = find_secret_material(text)
    if found:
        raise ValueError(f"user data would carry secret-looking material ({', '.join(found)}): "
                         f"name secrets in vdi_secrets and let the instance role read them")
    size = len(text.encode("utf-8"))
    if size > MAX_USER_DATA_BYTES:
        hint = ""
        if source["kind"] == "embedded":
            hint = " (publish the playbook with publish_playbook_bundle and pass its URI)"
        raise ValueError(f"user data is {size} bytes, over the EC2 limit of {MAX_USER_DATA_BYTES}{hint}")
    return text


def installable_display_protocols(os_family: str, settings: dict | None = None) -> frozenset[str]:
    """The display protocols (``vdi_display_protocol``) the bootstrap can install on ``os_family`` with these
    playbook settings (default: the playbook's defaults): the roles remote_display (Linux) and
    windows_desktop (Windows). DCV needs its packages: ``remote_display_dcv_package_urls`` for at least one
    OS family on Linux (the image's family is checked at boot), ``windows_desktop_dcv_msi_url`` on Windows."""
    if os_family not in BOOT_SETTINGS:
        raise ValueError(f"the bootstrap knows the OS families linux and windows, not {os_family!r}")
    values = {**_defaults(os_family), **(settings or {})}
    if os_family == "linux":
        dcv = any(values["remote_display_dcv_package_urls"].values())
    else:
        dcv = bool(values["windows_desktop_dcv_msi_url"])
    return frozenset({"none", "rdp"} | ({"dcv"} if dcv else set())) & frozenset(values["remote_display_ports"])


def _protocol_hint(os_family: str, protocol: str) -> str:
    if protocol != "dcv":
        return ""
    setting = "remote_display_dcv_package_urls" if os_family == "linux" else "windows_desktop_dcv_msi_url"
    return f"; dcv needs the playbook variable {setting}"


def allowed_settings(os_family: str) -> frozenset[str]:
    """The setting names ``render_user_data`` accepts for ``os_family``."""
    return frozenset(_defaults(os_family)) - IDENTITY_VARIABLES | frozenset(BOOT_SETTINGS[os_family])


def _check(value: object, pattern: re.Pattern[str], name: str, expected: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{name} must be {expected}, not {value!r}")


def _valid_port(address: str) -> bool:
    match = _HOST.match(address)
    return match.group(1) is None or 0 < int(match.group(1)) < 65536


def _check_settings(os_family: str, settings: dict) -> None:
    for name in settings:
        if name != "vdi_secrets" and _SECRET_NAME.search(str(name)):
            raise ValueError(f"setting {name} looks like a secret: user data carries no secret; "
                             f"put it in Secrets Manager and name it in vdi_secrets")
    allowed = allowed_settings(os_family)
    unknown = sorted(set(settings) - allowed)
    if unknown:
        identity = [name for name in unknown if name in IDENTITY_VARIABLES]
        if identity:
            raise ValueError(f"settings cannot set {', '.join(identity)}: pass them as arguments")
        raise ValueError(f"unknown settings for {os_family}: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(allowed))})")
    for name, value in settings.items():
        if name == "vdi_secrets":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and _SECRET_NAME_KEY.match(k) and isinstance(v, str) and _SECRET_ID.match(v)
                    for k, v in value.items()):
                raise ValueError("vdi_secrets must map lower_snake names to Secrets Manager secret ids or ARNs")
            continue
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"setting {name} is not plain data: {error}") from None
        found = find_secret_material(encoded)
        if found:
            raise ValueError(f"setting {name} holds secret-looking material ({', '.join(found)})")
        for text in _strings(value):
            if not _SAFE_TEXT.match(text):
                raise ValueError(f"setting {name} holds control characters")


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _defaults(os_family: str) -> dict[str, Any]:
    """The playbook's variables and their defaults for one OS: group_vars, then the roles' defaults."""
    merged: dict[str, Any] = {}
    for path in sorted((ANSIBLE_ROOT / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    for role in LINUX_ROLES if os_family == "linux" else WINDOWS_ROLES:
        path = ANSIBLE_ROOT / "roles" / role / "defaults" / "main.yml"
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _windows_vars(identity: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """The variables Install-VdiDesktop.ps1 reads, resolved as Ansible would resolve them.

    The keys are those of ``windows_desktop_vars`` in the windows_desktop role. Jinja references between
    variables are resolved here; ``{{ vdi_instance_secret_values.NAME }}`` stays as written for the script
    to fill in at boot from Secrets Manager.
    """
    context = {**_defaults("windows"), **settings, **identity, "vdi_instance_id": ""}
    context["vdi_instance_secret_values"] = {
        name: f"{{{{ vdi_instance_secret_values.{name} }}}}" for name in context.get("vdi_secrets") or {}}
    role_vars = yaml.safe_load((ANSIBLE_ROOT / "roles" / "windows_desktop" / "vars" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)

    def resolve(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str) and "{{" in value:
            rendered = env.from_string(value).render(context)
            if depth > 8:
                raise ValueError(f"variable reference loop around {value!r}")
            return resolve(rendered, depth + 1) if rendered != value else rendered
        if isinstance(value, dict):
            return {key: resolve(item, depth) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, depth) for item in value]
        return value

    try:
        return {name: resolve(context[name]) for name in role_vars["windows_desktop_vars"]}
    except jinja2.TemplateError as error:
        raise ValueError(f"cannot resolve the Windows variables: {error}") from None


def _powershell_literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["sh"] = lambda value: shlex.quote(str(value))
    env.filters["ps"] = _powershell_literal
    return env
