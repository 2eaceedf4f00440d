"""The IAM policies the product needs, rendered from the catalog: the Airflow workers' and the desktops' role.

``include/iam/`` holds them rendered for ``include/catalog.yaml`` and the bucket ``vdi-playbooks``
(``tests/plugins/vdi/test_iam.py`` keeps them equal); a studio renders its own with
``python -m vdi.iam workers|desktop --playbook-bucket NAME [--account ID] [--catalog PATH]``.

The workers may launch only the catalog's images, instance types and subnets (any subnet of the account when a
bundle leaves ``subnet_id`` to the default VPC), only with the product's tags set in the launch call itself; read
what the steps read; start, stop and terminate only instances that carry the product's ``vdi:request`` tag, and
snapshot only such volumes (the removal steps keep a root volume when the bundle says so), tagged in the call; pass
only the desktops' role (named as the catalog's ``instance_profile``; the role must have the profile's name) to
EC2; write only under the playbook prefix; read only Airflow's secrets. The desktop may read the playbook
bundles, read its own secrets (``vdi/desktop/``), and set only the bootstrap's two tags on its own instance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vdi.catalog import Catalog, load_catalog
from vdi.ec2 import BOOTSTRAP_CAUSE_TAG_KEY, BOOTSTRAP_TAG_KEY, TAG_ISSUE, TAG_REQUEST, TAG_USER
from vdi.playbook_bundle import DEFAULT_PREFIX

IAM_DIR = Path(__file__).resolve().parents[2] / "include" / "iam"
WORKERS_POLICY_PATH = IAM_DIR / "airflow-workers-policy.json"
DESKTOP_POLICY_PATH = IAM_DIR / "desktop-role-policy.json"
DESKTOP_TRUST_PATH = IAM_DIR / "desktop-role-trust.json"
# The bucket the committed documents name: the local stack's VDI_PLAYBOOK_BUCKET.
EXAMPLE_PLAYBOOK_BUCKET = "vdi-playbooks"
# Where Airflow's SecretsManagerBackend looks (docs/security.md) and where desktops' own secrets live.
AIRFLOW_SECRET_PREFIXES = ("airflow/connections", "airflow/variables")
DESKTOP_SECRET_PREFIX = "vdi/desktop"
# The tags run_instances_params sets at launch (Name included); a launch that sets any other is refused.
LAUNCH_TAG_KEYS = ("Name", TAG_ISSUE, TAG_REQUEST, TAG_USER)
# The EC2 calls the steps make that EC2 cannot scope to a resource.
# (``vdi check`` reads the subnets and the default VPC; the removal steps look up their snapshots.)
DESCRIBE_ACTIONS = ("ec2:DescribeImages", "ec2:DescribeInstanceStatus", "ec2:DescribeInstances",
                    "ec2:DescribeSnapshots", "ec2:DescribeSubnets", "ec2:DescribeTags", "ec2:DescribeVpcs")
INSTANCE_ACTIONS = ("ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances")


def _ec2_arn(region: str, account: str, resource: str) -> str:
    return f"arn:aws:ec2:{region}:{account}:{resource}"


def workers_policy(catalog: Catalog, *, playbook_bucket: str, playbook_prefix: str = DEFAULT_PREFIX,
                   account: str = "*") -> dict[str, Any]:
    """The Airflow workers' identity policy for ``catalog`` (``account``: the AWS account id, ``*`` for any)."""
    region = catalog.region
    bundles = [catalog.bundles[name] for name in sorted(catalog.bundles)]
    images = sorted({f"arn:aws:ec2:{image_region}::image/{ami}"
                     for bundle in bundles for by_region in bundle.images.values()
                     for image_region, ami in by_region.items()})
    if any(bundle.subnet_id is None for bundle in bundles):
        subnets = [_ec2_arn(region, account, "subnet/*")]
    else:
        subnets = sorted({_ec2_arn(region, account, f"subnet/{bundle.subnet_id}") for bundle in bundles})
    if any(not bundle.security_group_ids for bundle in bundles):
        groups = [_ec2_arn(region, account, "security-group/*")]
    else:
        groups = sorted({_ec2_arn(region, account, f"security-group/{group}")
                         for bundle in bundles for group in bundle.security_group_ids})
    instance_types = sorted({bundle.instance_type for bundle in bundles})
    roles = sorted({f"arn:aws:iam::{account}:role/{bundle.instance_profile}"
                    for bundle in bundles if bundle.instance_profile})
    instances = _ec2_arn(region, account, "instance/*")
    volumes = _ec2_arn(region, account, "volume/*")
    snapshots = f"arn:aws:ec2:{region}::snapshot/*"
    prefix = playbook_prefix.strip("/")
    launch_tags = {"Null": {f"aws:RequestTag/{key}": "false" for key in (TAG_ISSUE, TAG_REQUEST, TAG_USER)},
                   "ForAllValues:StringEquals": {"aws:TagKeys": list(LAUNCH_TAG_KEYS)}}
    statements: list[dict[str, Any]] = [
        {"Sid": "LaunchFromCatalogImages", "Effect": "Allow", "Action": "ec2:RunInstances", "Resource": images},
        {"Sid": "LaunchIntoCatalogNetwork", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": [*subnets, *groups, _ec2_arn(region, account, "network-interface/*")]},
        {"Sid": "LaunchCatalogInstancesTagged", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": instances,
         "Condition": {**launch_tags, "StringEquals": {"ec2:InstanceType": instance_types,
                                                       "ec2:MetadataHttpTokens": "required"}}},
        {"Sid": "LaunchEncryptedVolumesTagged", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": volumes, "Condition": {**launch_tags, "Bool": {"ec2:Encrypted": "true"}}},
        {"Sid": "TagOnlyInTheLaunchCall", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": [instances, volumes], "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
        {"Sid": "DescribeDesktops", "Effect": "Allow", "Action": list(DESCRIBE_ACTIONS), "Resource": "*"},
        {"Sid": "StartStopTerminateProductInstancesOnly", "Effect": "Allow", "Action": list(INSTANCE_ACTIONS),
         "Resource": instances, "Condition": {"Null": {f"aws:ResourceTag/{TAG_REQUEST}": "false"}}},
        {"Sid": "SnapshotProductVolumesOnly", "Effect": "Allow", "Action": "ec2:CreateSnapshot",
         "Resource": volumes, "Condition": {"Null": {f"aws:ResourceTag/{TAG_REQUEST}": "false"}}},
        {"Sid": "SnapshotsTaggedForTheirRequest", "Effect": "Allow", "Action": "ec2:CreateSnapshot",
         "Resource": snapshots, "Condition": {"Null": {f"aws:RequestTag/{TAG_REQUEST}": "false"}}},
        {"Sid": "TagSnapshotsOnlyInTheSnapshotCall", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": snapshots, "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSnapshot"}}},
    ]
    if roles:
        statements.append({"Sid": "PassOnlyTheDesktopRoleToEc2", "Effect": "Allow", "Action": "iam:PassRole",
                           "Resource": roles,
                           "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}})
    statements += [
        {"Sid": "PublishPlaybookBundles", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{playbook_bucket}/{prefix}/*"},
        # Without ListBucket, HeadObject answers 403 instead of 404 for a bundle not published yet.
        {"Sid": "SeeWhetherABundleIsPublished", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{playbook_bucket}"},
        {"Sid": "ReadAirflowConnectionsAndVariables", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": [f"arn:aws:secretsmanager:{region}:{account}:secret:{name}/*"
                      for name in AIRFLOW_SECRET_PREFIXES]},
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def desktop_policy(*, region: str, playbook_bucket: str, playbook_prefix: str = DEFAULT_PREFIX,
                   account: str = "*") -> dict[str, Any]:
    """The desktops' role policy: the playbook bundles, their own secrets, the bootstrap's tags on themselves."""
    prefix = playbook_prefix.strip("/")
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "FetchPlaybookBundles", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{playbook_bucket}/{prefix}/*"},
        {"Sid": "ReadDesktopSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": f"arn:aws:secretsmanager:{region}:{account}:secret:{DESKTOP_SECRET_PREFIX}/*"},
        # aws:ARN is the tagged resource's ARN: only the instance the credentials were issued to.
        {"Sid": "TagOnlyItselfWithTheBootstrapOutcome", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": _ec2_arn(region, account, "instance/*"),
         "Condition": {"StringEquals": {"aws:ARN": "${ec2:SourceInstanceARN}"},
                       "ForAllValues:StringEquals": {"aws:TagKeys": [BOOTSTRAP_TAG_KEY, BOOTSTRAP_CAUSE_TAG_KEY]}}},
    ]}


def desktop_trust_policy() -> dict[str, Any]:
    """The desktops' role trust policy: EC2 assumes it for the instance profile."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def render(document: dict[str, Any]) -> str:
    """A policy as the committed files hold it."""
    return json.dumps(document, indent=2) + "\n"


def committed_documents(catalog: Catalog | None = None) -> dict[Path, str]:
    """What ``include/iam/`` holds for ``catalog`` (default: ``include/catalog.yaml``)."""
    from vdi.catalog import DEFAULT_CATALOG_PATH

    catalog = catalog or load_catalog(DEFAULT_CATALOG_PATH)
    return {
        WORKERS_POLICY_PATH: render(workers_policy(catalog, playbook_bucket=EXAMPLE_PLAYBOOK_BUCKET)),
        DESKTOP_POLICY_PATH: render(desktop_policy(region=catalog.region, playbook_bucket=EXAMPLE_PLAYBOOK_BUCKET)),
        DESKTOP_TRUST_PATH: render(desktop_trust_policy()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdi.iam", description=__doc__.splitlines()[0])
    parser.add_argument("document", choices=("workers", "desktop", "desktop-trust", "write-committed"))
    parser.add_argument("--playbook-bucket", default=EXAMPLE_PLAYBOOK_BUCKET)
    parser.add_argument("--playbook-prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--account", default="*", help="AWS account id (default: any)")
    parser.add_argument("--catalog", help="catalog YAML (default: VDI_CATALOG_PATH or include/catalog.yaml)")
    args = parser.parse_args(argv)
    if args.document == "write-committed":
        for path, text in committed_documents().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return 0
    catalog = load_catalog(args.catalog)
    if args.document == "workers":
        document = workers_policy(catalog, playbook_bucket=args.playbook_bucket,
                                  playbook_prefix=args.playbook_prefix, account=args.account)
    elif args.document == "desktop":
        document = desktop_policy(region=catalog.region, playbook_bucket=args.playbook_bucket,
                                  playbook_prefix=args.playbook_prefix, account=args.account)
    else:
        document = desktop_trust_policy()
    sys.stdout.write(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
