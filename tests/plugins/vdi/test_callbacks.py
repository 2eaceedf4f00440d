"""``vdi.callbacks.task_outcome``: what a step's outcome means to Airflow."""

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from vdi.callbacks import task_outcome
from vdi.provision import BootstrapFailed, NotOwner


def test_a_run_that_no_longer_owns_its_request_skips_the_rest_of_its_steps():
    with pytest.raises(AirflowSkipException, match="changes nothing"):
        with task_outcome():
            raise NotOwner("delivery-2 no longer owns VDI-7: wait_bootstrap changes nothing")


def test_a_failure_no_retry_mends_fails_the_task_at_once_keeping_its_words():
    with pytest.raises(AirflowFailException) as failed:
        with task_outcome():
            raise BootstrapFailed("it failed (the DCV server package could not be installed)")
    assert str(failed.value) == "it failed (the DCV server package could not be installed)"
    assert isinstance(failed.value.__cause__, BootstrapFailed)


def test_any_other_error_is_left_to_the_tasks_retries():
    with pytest.raises(ConnectionError):
        with task_outcome():
            raise ConnectionError("broker unreachable")
