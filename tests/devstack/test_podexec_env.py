"""Kubernetes' $(VAR) expansion as the local pod executor implements it."""

from devstack.podexec import expand


def test_known_variables_are_replaced():
    assert expand("$(A)-$(B)", {"A": "1", "B": "2"}) == "1-2"


def test_unknown_variables_stay_as_written():
    assert expand("$(MISSING)/x", {}) == "$(MISSING)/x"


def test_double_dollar_escapes():
    assert expand("$$(A)", {"A": "1"}) == "$(A)"
