"""Reading the runner's reason out of a pod's termination message."""

from walwarden.kube.jobs import parse_runner_error


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
