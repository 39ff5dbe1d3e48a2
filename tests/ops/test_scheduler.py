"""The server's scheduler creates the runs of a deployment schedule (prefect.yaml's weekly ``pipeline`` run relies
on it). With SQLAlchemy 2.1 it does not: Prefect 3.8.8's bulk insert of scheduled runs raises
``InvalidRequestError: Can't evaluate bulk DML statement`` (FlowRun.state is a hybrid property without a bulk_dml
setter), logged by ``schedule_recent_deployments``, and no run is ever created; constraints.txt pins
``sqlalchemy<2.1``. About 20-40 s (one server start, shared with the other ops tests).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.slow  # a Prefect server of its own (make test-fast skips the ops tests that start one)


def test_scheduler_creates_the_runs_of_a_schedule(ops, ops_server):
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    with ops.client_for(ops_server) as client:
        flow_id = client.create_flow_from_name("schedule-check")
        # hourly, no work pool: nothing becomes due or is run during the test session
        deployment_id = client.create_deployment(
            flow_id=flow_id, name="hourly",
            schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(hours=1)))])

        def scheduled():
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))

        try:
            runs = ops.wait_for(scheduled, "scheduled flow run of an hourly deployment", 60)
        except TimeoutError as e:
            raise AssertionError(f"{e}; server log:\n{ops_server['procs'].log('server')}") from None
    assert all(r.state_type.value == "SCHEDULED" for r in runs)
    assert "Can't evaluate bulk DML" not in ops_server["procs"].log("server")
