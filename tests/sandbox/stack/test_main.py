import pytest

from sandbox.stack import __main__ as stack
from sandbox.stack.errors import StackError
from sandbox.stack.settings import StackSettings
from tests.conftest import free_port


@pytest.fixture
def environ(tmp_path, monkeypatch):
    for variable in ("JIRA_URL", "LEOSTREAM_URL", "AIRFLOW_CONN_JIRA_DEFAULT", "AIRFLOW_CONN_LEOSTREAM_DEFAULT",
                     "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW__SECRETS__BACKEND", "VDI_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("VDI_LOCAL_DIR", str(tmp_path / "local"))
    return {"VDI_LOCAL_DIR": str(tmp_path / "local")}


def test_incomplete_real_settings_stop_make_run_before_anything_starts(environ, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("JIRA_URL", "https://studio.atlassian.net")
    assert stack.main(["run"]) == 1
    error = capsys.readouterr().err
    assert "JIRA_USER is missing (JIRA_URL is given)" in error and "JIRA_TOKEN is missing" in error
    assert not (tmp_path / "local" / "run").exists()


def test_a_real_jira_that_does_not_answer_fails_the_start_up_check_by_name(environ, capsys):
    settings = StackSettings.from_environment({
        **environ, "JIRA_URL": f"http://127.0.0.1:{free_port()}", "JIRA_USER": "bot@studio.example",
        "JIRA_TOKEN": "not-shown-anywhere"})
    with pytest.raises(StackError, match="^jira failed the connection check"):
        stack.check_real_services(settings)
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.strip().startswith("jira:")]
    assert "FAILED" in line
    assert "not-shown-anywhere" not in out
    # Only the real system is judged: the sandboxes are not up yet and are not checked.
    assert not [line for line in out.splitlines() if line.strip().startswith(("leostream:", "aws:", "database:"))]


def test_a_stack_of_sandboxes_checks_nothing_at_start(environ, capsys):
    stack.check_real_services(StackSettings.from_environment(environ))
    assert capsys.readouterr().out == ""
