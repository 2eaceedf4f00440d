"""Talk to AWS as this instance: the completion tag and Secrets Manager reads.

Runs with the Python that runs Ansible at first boot (the bootstrap venv, which has boto3).
Credentials come from the instance role through IMDSv2, as boto3 does by default; nothing
secret is passed on the command line. ``AWS_ENDPOINT_URL`` redirects it (tests use moto).

    vdi_instance.py tag --region R --instance-id I --tag KEY=VALUE [--tag KEY=VALUE ...]   (one CreateTags call)
    vdi_instance.py secret --region R --secret-id S     (prints the SecretString to stdout)
"""

import argparse
import sys

import boto3


def _key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not key or not separator:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vdi_instance.py")
    commands = parser.add_subparsers(dest="command", required=True)
    tag = commands.add_parser("tag")
    tag.add_argument("--region", required=True)
    tag.add_argument("--instance-id", required=True)
    tag.add_argument("--tag", dest="tags", action="append", required=True, type=_key_value, metavar="KEY=VALUE")
    secret = commands.add_parser("secret")
    secret.add_argument("--region", required=True)
    secret.add_argument("--secret-id", required=True)
    args = parser.parse_args(argv)

    if args.command == "tag":
        ec2 = boto3.client("ec2", region_name=args.region)
        ec2.create_tags(Resources=[args.instance_id], Tags=[{"Key": key, "Value": value} for key, value in args.tags])
        return 0
    client = boto3.client("secretsmanager", region_name=args.region)
    sys.stdout.write(client.get_secret_value(SecretId=args.secret_id)["SecretString"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
