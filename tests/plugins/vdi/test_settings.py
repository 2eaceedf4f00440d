from dataclasses import fields

import pytest

from vdi.settings import SETTINGS, VdiSettings, load


def test_every_setting_has_one_row_and_every_row_one_setting():
    assert [s.name for s in SETTINGS] == [f.name for f in fields(VdiSettings)]
    variables = [s.variable for s in SETTINGS]
    assert len(set(variables)) == len(variables)
    assert all(v.startswith("VDI_") and s.meaning for v, s in zip(variables, SETTINGS))


def test_an_empty_environment_gives_the_documented_defaults():
    settings = load({})
    for setting in SETTINGS:
        expected = None if setting.default is None else setting.parse(setting.default)
        assert getattr(settings, setting.name) == expected, setting.variable
    assert (settings.task_retries, settings.jira_trigger_status, settings.playbook_bucket) == (3, "Approved", None)


def test_values_are_read_and_parsed_from_the_environment():
    settings = load({"VDI_TASK_RETRIES": "5", "VDI_POKE_INTERVAL_S": "2.5", "VDI_PLAYBOOK_BUCKET": "playbooks",
                     "VDI_JIRA_TRIGGER_STATUS": "Go"})
    assert (settings.task_retries, settings.poke_interval_s) == (5, 2.5)
    assert (settings.playbook_bucket, settings.jira_trigger_status) == ("playbooks", "Go")


def test_an_empty_value_means_the_default():
    assert load({"VDI_TASK_RETRIES": "", "VDI_CATALOG_PATH": ""}) == load({})


def test_a_bad_number_names_its_variable():
    with pytest.raises(ValueError, match="VDI_TASK_RETRIES='three' is not a valid int"):
        load({"VDI_TASK_RETRIES": "three"})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        load({}).task_retries = 9
