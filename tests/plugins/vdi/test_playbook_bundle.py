"""vdi.playbook_bundle: a reproducible, content-addressed bundle, published to moto's S3."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile

import boto3
import pytest

from vdi.playbook_bundle import ANSIBLE_ROOT, build_playbook_bundle, publish_playbook_bundle


@pytest.fixture
def s3(moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3, request):
    name = "vdi-bundle-" + hashlib.sha256(request.node.name.encode()).hexdigest()[:12]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def tree(tmp_path):
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_ROOT, copy, ignore=shutil.ignore_patterns(".ansible", "__pycache__"))
    return copy


def test_building_twice_gives_identical_bytes():
    assert build_playbook_bundle().data == build_playbook_bundle().data


def test_bundle_holds_the_playbook_and_roles_but_no_dotfiles(tree):
    (tree / ".ansible").mkdir()
    (tree / ".ansible" / "cache.json").write_text("{}")
    names = tarfile.open(fileobj=io.BytesIO(build_playbook_bundle(tree).data)).getnames()
    assert "desktop.yml" in names and "ansible.cfg" in names
    assert "roles/leostream_agent/tasks/main.yml" in names
    assert "roles/windows_desktop/files/Install-VdiDesktop.ps1" in names
    assert not [name for name in names if any(part.startswith(".") for part in name.split("/"))]


def test_changing_a_file_changes_the_hash(tree):
    before = build_playbook_bundle(tree).sha256
    tasks = tree / "roles" / "vdi_base" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n")
    assert build_playbook_bundle(tree).sha256 != before


def test_bundle_holding_secret_material_is_refused(tree):
    (tree / "group_vars" / "all" / "oops.yml").write_text("leostream_admin: 'password: Sup3rS3cret'\n")
    with pytest.raises(ValueError, match="oops.yml holds secret-looking material"):
        build_playbook_bundle(tree)


def test_publish_uploads_under_the_content_hash_and_returns_its_uri(s3, bucket):
    uri = publish_playbook_bundle(s3, bucket)
    bundle = build_playbook_bundle()
    assert uri == f"s3://{bucket}/vdi/playbooks/{bundle.sha256}.tar.gz"
    stored = s3.get_object(Bucket=bucket, Key=f"vdi/playbooks/{bundle.sha256}.tar.gz")
    body = stored["Body"].read()
    assert hashlib.sha256(body).hexdigest() == bundle.sha256
    assert stored["Metadata"]["sha256"] == bundle.sha256


def test_publishing_the_same_content_again_uploads_nothing(s3, bucket):
    uri = publish_playbook_bundle(s3, bucket, prefix="bundles")
    key = uri.removeprefix(f"s3://{bucket}/")
    # Replace the object: a second publish that uploaded again would overwrite this.
    s3.put_object(Bucket=bucket, Key=key, Body=b"left alone")
    assert publish_playbook_bundle(s3, bucket, prefix="bundles") == uri
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"left alone"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_changed_content_is_published_under_a_new_key_beside_the_old_one(s3, bucket, tree):
    first = publish_playbook_bundle(s3, bucket, root=tree)
    tasks = tree / "roles" / "vdi_base" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n")
    second = publish_playbook_bundle(s3, bucket, root=tree)
    assert second != first
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2


def test_publishing_to_a_missing_bucket_raises(s3):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        publish_playbook_bundle(s3, "vdi-no-such-bucket")
