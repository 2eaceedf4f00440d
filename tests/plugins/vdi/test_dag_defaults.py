from datetime import timedelta

from vdi.dag_defaults import sensor_settings, task_defaults, wait_settings
from vdi.settings import load


def test_task_retries_and_their_first_delay_come_from_the_settings_and_back_off_to_ten_minutes():
    defaults = task_defaults(load({"VDI_TASK_RETRIES": "5", "VDI_RETRY_DELAY_S": "7"}))
    assert (defaults["retries"], defaults["retry_delay"]) == (5, timedelta(seconds=7))
    assert defaults["retry_exponential_backoff"] and defaults["max_retry_delay"] == timedelta(minutes=10)


def test_every_try_of_a_task_is_bounded_by_the_task_timeout_setting():
    assert task_defaults(load({"VDI_TASK_TIMEOUT_S": "90"}))["execution_timeout"] == timedelta(seconds=90)


def test_sensors_reschedule_with_the_settings_timing():
    assert sensor_settings(load({"VDI_POKE_INTERVAL_S": "3", "VDI_WAIT_TIMEOUT_S": "60"})) == {
        "mode": "reschedule", "poke_interval": 3.0, "timeout": 60.0}


def test_deferred_waits_check_and_give_up_with_the_settings_timing():
    assert wait_settings(load({"VDI_POKE_INTERVAL_S": "3", "VDI_WAIT_TIMEOUT_S": "60"})) == {
        "poke_interval_s": 3.0, "wait_timeout_s": 60.0}
