"""Reading the runner's reason out of a pod's termination message."""

from tests.unit.fakes import NAMESPACE, FakeKube
from walwarden.kube.jobs import JobOutcome, JobState, ensure_job, job_outcome, parse_runner_error

JOB_NAME = "restore-1-restore-5e5f0e3c"
OWNER = {"apiVersion": "walwarden.io/v1alpha1", "kind": "RestoreRequest", "name": "restore-1", "uid": "u-1"}
JOB = {"metadata": {"name": JOB_NAME, "ownerReferences": [OWNER]}, "spec": {}}


def test_the_last_walwarden_error_line_wins():
    text = (
        "dumping...\nwalwarden-error: DumpFailed: first\nmore output\nwalwarden-error: AuthenticationFailed: "
        'password authentication failed for user "postgres"'
    )
    assert parse_runner_error(text) == ("AuthenticationFailed", 'password authentication failed for user "postgres"')


def test_without_a_reason_the_last_line_is_the_message():
    assert parse_runner_error("Traceback...\nKeyError: 'x'\n") == ("", "KeyError: 'x'")


def test_empty_message():
    assert parse_runner_error("") == ("", "")


def test_a_pod_labelled_with_a_jobs_name_is_not_that_jobs_pod_unless_the_job_made_it():
    """Whoever may create pods can label one job-name=<our Job>: its exit 0 is not our runner's."""
    kube = FakeKube()
    ensure_job(kube, NAMESPACE, JOB)
    kube.add_pod("impostor", {"job-name": JOB_NAME}, phase="Succeeded", made_by_its_job=False)
    assert job_outcome(kube, NAMESPACE, JOB_NAME, OWNER["uid"]) == JobOutcome(JobState.RUNNING)
    kube.add_pod("runner", {"job-name": JOB_NAME}, phase="Succeeded")
    assert job_outcome(kube, NAMESPACE, JOB_NAME, OWNER["uid"]) == JobOutcome(JobState.SUCCEEDED)


def test_a_job_made_first_under_a_requests_job_name_is_never_taken_for_its_own():
    kube = FakeKube()
    ensure_job(kube, NAMESPACE, {**JOB, "metadata": {"name": JOB_NAME}})  # made by someone else, first
    ensure_job(kube, NAMESPACE, JOB)  # the request's: not created over it
    kube.add_pod("runner", {"job-name": JOB_NAME}, phase="Succeeded")
    outcome = job_outcome(kube, NAMESPACE, JOB_NAME, OWNER["uid"])
    assert outcome is not None and (outcome.state, outcome.reason) == (JobState.FAILED, "JobNotOurs")
