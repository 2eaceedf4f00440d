"""The desktop playbook bundle: ``include/ansible`` as one reproducible, content-addressed archive.

A desktop's user data names the bundle by its sha256 and checks it after download, so a desktop runs
exactly the playbook the DAG meant, and a bundle once published never changes under a running fleet.
The archive is deterministic (sorted members, zeroed times and owners, fixed modes, gzip without a
timestamp): the same tree gives the same bytes and so the same key, and publishing again uploads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

ANSIBLE_ROOT = Path(__file__).resolve().parents[2] / "include" / "ansible"
DEFAULT_PREFIX = "vdi/playbooks"

# Material that must never travel to a desktop in user data or in the bundle.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_?secret_?access_?key\s*[:=]\s*\S+"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    "password assignment": re.compile(r"(?i)\b(?:password|passwd|pwd)\s*[:=]\s*['\"]?[^\s'\"{}]{4,}"),
}


def find_secret_material(text: str) -> list[str]:
    """Names of the kinds of secret-looking material found in ``text`` (empty when none)."""
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


@dataclass(frozen=True)
class PlaybookBundle:
    """A built bundle: the ``.tar.gz`` bytes and their sha256 (hex), which names it."""

    data: bytes
    sha256: str

    def key(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The content-addressed object key of this bundle under ``prefix``."""
        prefix = prefix.strip("/")
        return f"{prefix}/{self.sha256}.tar.gz" if prefix else f"{self.sha256}.tar.gz"


def _bundle_files(root: Path, without_roles: frozenset[str]) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue  # lint config, ansible-lint's cache, editor and byte-code files stay home
        if len(relative.parts) > 1 and relative.parts[0] == "roles" and relative.parts[1] in without_roles:
            continue
        if path.is_file() and path.suffix != ".pyc":
            files.append(path)
    return files


def build_playbook_bundle(root: Path = ANSIBLE_ROOT, *, without_roles: frozenset[str] = frozenset()) -> PlaybookBundle:
    """Archive the playbook tree under ``root`` reproducibly.

    ``without_roles`` leaves roles out (user data that embeds the bundle carries only its OS's roles).

    Raises ValueError when a file in it holds secret-looking material: a bundle is readable by every
    desktop that uses it, so secrets belong in Secrets Manager (see ``vdi_secrets``).
    """
    root = Path(root)
    if not (root / "desktop.yml").is_file():
        raise ValueError(f"{root} is not a playbook tree: desktop.yml is missing")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in _bundle_files(root, frozenset(without_roles)):
            content = path.read_bytes()
            found = find_secret_material(content.decode("utf-8", errors="replace"))
            if found:
                raise ValueError(f"{path.relative_to(root)} holds secret-looking material ({', '.join(found)})")
            member = tarfile.TarInfo(path.relative_to(root).as_posix())
            member.size = len(content)
            member.mtime = 0
            member.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            archive.addfile(member, io.BytesIO(content))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = compressed.getvalue()
    return PlaybookBundle(data=data, sha256=hashlib.sha256(data).hexdigest())


def publish_playbook_bundle(s3_client, bucket: str, prefix: str = DEFAULT_PREFIX, *,
                            root: Path = ANSIBLE_ROOT) -> str:
    """Publish the playbook bundle to S3 under its content hash and return its ``s3://`` URI.

    ``s3_client`` is a boto3 S3 client (for example ``S3Hook().get_conn()``). The key is
    ``<prefix>/<sha256>.tar.gz``; when an object is already there the bundle is not uploaded again
    (same content, same key), so calling this on every DAG run is cheap and safe. The object carries
    its sha256 in metadata; desktops fetch it with their instance role (``s3:GetObject`` on the prefix)
    and check the hash before running it. Pass the URI to ``vdi.userdata.render_user_data``.
    """
    if not bucket or "/" in bucket:
        raise ValueError(f"not an S3 bucket name: {bucket!r}")
    bundle = build_playbook_bundle(root)
    key = bundle.key(prefix)
    if not _object_exists(s3_client, bucket, key):
        s3_client.put_object(Bucket=bucket, Key=key, Body=bundle.data, ContentType="application/gzip",
                             Metadata={"sha256": bundle.sha256})
    return f"s3://{bucket}/{key}"


def _object_exists(s3_client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True
