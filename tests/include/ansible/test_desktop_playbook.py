"""include/ansible: syntax, lint, and the Linux play run against localhost (check mode and for real)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.include.ansible.powershell import syntax_errors
from vdi.ec2 import bootstrap_outcome

REPO_ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_ROOT = REPO_ROOT / "include" / "ansible"
BIN = Path(sys.executable).parent
WINDOWS_SCRIPT = ANSIBLE_ROOT / "roles" / "windows_desktop" / "files" / "Install-VdiDesktop.ps1"


@pytest.fixture
def playbook_copy(tmp_path) -> Path:
    """A copy of include/ansible, so ansible-lint's cache and run artefacts stay out of the tree."""
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_ROOT, copy, ignore=shutil.ignore_patterns(".ansible", "__pycache__"))
    return copy


@pytest.fixture
def ansible_env(tmp_path) -> dict[str, str]:
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(ANSIBLE_ROOT / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AWS_ENDPOINT_URL", None)
    return env


@pytest.fixture
def prefix_vars(stand_in_agent_vars) -> dict:
    """A real Linux run kept inside tmp_path (see ``stand_in_agent_vars``) for one request."""
    return {
        "vdi_broker_address": "broker.studio.internal", "vdi_bundle": "comp", "vdi_issue_key": "VDI-7",
        "vdi_request_id": "req-7", "vdi_region": "us-east-1", **stand_in_agent_vars,
    }


def run_playbook(env: dict, extra_vars: dict, tmp_path: Path, *args: str,
                 playbook: Path = ANSIBLE_ROOT / "desktop.yml") -> subprocess.CompletedProcess:
    vars_file = tmp_path / f"vars-{len(list(tmp_path.glob('vars-*.json')))}.json"
    vars_file.write_text(json.dumps(extra_vars))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), "-e", f"@{vars_file}",
         "-e", f"ansible_python_interpreter={sys.executable}", *args],
        env=env, capture_output=True, text=True, timeout=300)


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"localhost\s+:\s+(.*)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_desktop_playbook_passes_syntax_check(ansible_env):
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "--syntax-check",
                             str(ANSIBLE_ROOT / "desktop.yml")], env=ansible_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_passes_with_the_production_profile_offline(playbook_copy, ansible_env):
    result = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "-f", "pep8"],
                            cwd=playbook_copy, env=ansible_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stderr


def test_ansible_lint_catches_a_violation(playbook_copy, ansible_env):
    """The lint test can fail: a task without a name and a bare command are reported."""
    tasks = playbook_copy / "roles" / "vdi_base" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n- ansible.builtin.shell: echo hi\n")
    result = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "-f", "pep8"],
                            cwd=playbook_copy, env=ansible_env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "name[missing]" in result.stdout


def test_linux_play_in_check_mode_against_localhost_succeeds_and_changes_nothing(tmp_path, ansible_env,
                                                                                   prefix_vars):
    check_vars = {**prefix_vars, "vdi_manage_packages": True, "vdi_manage_services": True,
                  "vdi_manage_firewall": True}
    result = run_playbook(ansible_env, check_vars, tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap(result)["failed"] == 0
    assert not Path(prefix_vars["vdi_state_dir"]).exists()
    assert not Path(prefix_vars["leostream_agent_linux_creates"]).exists()


def test_linux_play_runs_for_real_in_a_prefix_and_points_the_agent_at_the_broker(tmp_path, ansible_env,
                                                                                   prefix_vars):
    result = run_playbook(ansible_env, prefix_vars, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    agent_dir = Path(prefix_vars["leostream_agent_linux_creates"])
    assert (agent_dir / "installer-args").read_text().split() == ["-s", "-b", "broker.studio.internal"]
    assert "broker = broker.studio.internal" in (agent_dir / "leostreamagent.conf").read_text()
    downloaded = Path(prefix_vars["vdi_state_dir"]) / "downloads" / "LeostreamAgentJava-5.3.18.0.jar"
    assert downloaded.read_bytes() == b"installer bytes"
    marker = json.loads((Path(prefix_vars["vdi_state_dir"]) / "bootstrap.json").read_text())
    assert marker["status"] == "done"
    assert (marker["issue"], marker["bundle"], marker["broker"]) == ("VDI-7", "comp", "broker.studio.internal")


def test_linux_play_run_again_changes_nothing(tmp_path, ansible_env, prefix_vars):
    first = run_playbook(ansible_env, prefix_vars, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first)["changed"] > 0
    second = run_playbook(ansible_env, prefix_vars, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second)["changed"] == 0, second.stdout


def test_installer_with_a_wrong_checksum_fails_the_play_and_marks_the_bootstrap_failed(tmp_path, ansible_env,
                                                                                        prefix_vars):
    result = run_playbook(ansible_env, {**prefix_vars, "leostream_agent_linux_sha256": "0" * 64}, tmp_path)
    assert result.returncode != 0
    marker = json.loads((Path(prefix_vars["vdi_state_dir"]) / "bootstrap.json").read_text())
    assert marker["status"] == "failed"
    assert marker["failed_task"] == "Download the Leostream agent installer"
    assert not Path(prefix_vars["leostream_agent_linux_creates"]).exists()


def test_missing_broker_address_fails_before_anything_is_installed(tmp_path, ansible_env, prefix_vars):
    result = run_playbook(ansible_env, {**prefix_vars, "vdi_broker_address": ""}, tmp_path)
    assert result.returncode != 0
    assert "vdi_broker_address and vdi_bundle are required" in result.stdout
    assert not (Path(prefix_vars["vdi_state_dir"]) / "downloads").exists()


def test_completion_signal_tags_the_instance_in_ec2(tmp_path, ansible_env, prefix_vars, moto_endpoint):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    env = {**ansible_env, "AWS_ENDPOINT_URL": moto_endpoint}

    result = run_playbook(env, {**prefix_vars, "vdi_instance_id": instance_id}, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    assert {tag["Key"]: tag["Value"] for tag in tags}["vdi:bootstrap"] == "done"
    assert "vdi:bootstrap-cause" not in {tag["Key"] for tag in tags}


def test_failure_signal_tags_the_instance_failed(tmp_path, ansible_env, prefix_vars, moto_endpoint):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    env = {**ansible_env, "AWS_ENDPOINT_URL": moto_endpoint}

    result = run_playbook(env, {**prefix_vars, "vdi_instance_id": instance_id,
                                "leostream_agent_linux_url": (tmp_path / "missing.jar").as_uri()}, tmp_path)

    assert result.returncode != 0
    tags = {tag["Key"]: tag["Value"] for tag in
            ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]}
    assert tags["vdi:bootstrap"] == "failed"
    assert tags["vdi:bootstrap-cause"] == "Setup step failed: Download the Leostream agent installer"
    assert bootstrap_outcome(ec2, instance_id) == ("failed", tags["vdi:bootstrap-cause"])


def test_a_failure_in_a_later_role_names_that_task_as_the_cause(tmp_path, ansible_env, prefix_vars, moto_endpoint):
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    env = {**ansible_env, "AWS_ENDPOINT_URL": moto_endpoint}
    conf = Path(prefix_vars["leostream_agent_linux_conf_path"])
    conf.parent.mkdir(parents=True)
    conf.mkdir()  # a directory where the agent's configuration file goes: lineinfile fails there

    result = run_playbook(env, {**prefix_vars, "vdi_instance_id": instance_id}, tmp_path)

    assert result.returncode != 0
    assert bootstrap_outcome(ec2, instance_id) == (
        "failed", "Setup step failed: Point the agent at the broker in leostreamagent.conf")
    marker = json.loads((Path(prefix_vars["vdi_state_dir"]) / "bootstrap.json").read_text())
    assert marker["cause"] == "Setup step failed: Point the agent at the broker in leostreamagent.conf"


def test_secrets_are_read_from_secrets_manager_and_never_logged(tmp_path, ansible_env, prefix_vars, moto_endpoint):
    import boto3

    secret_value = "agent-key-7f3c9e1d"
    boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1").create_secret(
        Name="vdi/test/leostream-agent-key", SecretString=secret_value)
    env = {**ansible_env, "AWS_ENDPOINT_URL": moto_endpoint}
    extra = {**prefix_vars, "vdi_secrets": {"agent_key": "vdi/test/leostream-agent-key"},
             "leostream_agent_linux_install_args":
                 "-s -b {{ vdi_broker_address }} -k {{ vdi_instance_secret_values.agent_key }}"}

    result = run_playbook(env, extra, tmp_path, "-vv")

    assert result.returncode == 0, result.stdout + result.stderr
    installer_args = (Path(prefix_vars["leostream_agent_linux_creates"]) / "installer-args").read_text().split()
    assert installer_args == ["-s", "-b", "broker.studio.internal", "-k", secret_value]
    assert secret_value not in result.stdout + result.stderr


def test_windows_bootstrap_script_parses_as_powershell():
    assert syntax_errors(WINDOWS_SCRIPT.read_text()) == []


def test_powershell_syntax_check_catches_a_broken_script():
    broken = WINDOWS_SCRIPT.read_text().replace("if (-not $Vars.vdi_instance_id) { return }",
                                                "if (-not $Vars.vdi_instance_id { return }")
    assert syntax_errors(broken)


def _powershell_vars_read(script: str) -> set[str]:
    return set(re.findall(r"\$Vars\.([a-z0-9_]+)", script))


def test_windows_script_reads_only_variables_the_role_and_user_data_pass():
    role_vars = yaml.safe_load((ANSIBLE_ROOT / "roles" / "windows_desktop" / "vars" / "main.yml").read_text())
    passed = set(role_vars["windows_desktop_vars"])
    read = _powershell_vars_read(WINDOWS_SCRIPT.read_text())
    assert read, "the parser found no $Vars.<name> in the script"
    assert read <= passed, f"read by the script but never passed: {sorted(read - passed)}"


def test_windows_variable_check_catches_a_variable_nobody_passes():
    assert "not_passed_anywhere" in _powershell_vars_read("$x = $Vars.not_passed_anywhere")


def test_windows_branch_runs_the_windows_role_and_none_of_the_linux_roles(tmp_path, ansible_env, prefix_vars):
    # In check mode the script module does not run the PowerShell script, so this host can play Windows.
    result = run_playbook(ansible_env, {**prefix_vars, "vdi_os_family": "windows"}, tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TASK [windows_desktop : Run the Windows desktop bootstrap script]" in result.stdout
    assert not re.search(r"TASK \[(vdi_base|leostream_agent|remote_display|desktop_firewall) :", result.stdout)


def test_linux_branch_runs_none_of_the_windows_role(tmp_path, ansible_env, prefix_vars):
    result = run_playbook(ansible_env, prefix_vars, tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TASK [leostream_agent : Install the Leostream agent unattended" in result.stdout
    assert "TASK [windows_desktop :" not in result.stdout
