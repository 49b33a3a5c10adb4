"""examples/ against the real API server and the API models: every example is a valid request
as written (server-side dry run into a test namespace, with the generated CRDs' schema and CEL
rules), parses with the pydantic models the operator uses, and the examples agree with each
other. Also: argocd/argocd-cm-patch.yaml patches an argocd-cm ConfigMap as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from walwarden.api import BackupRequest, RestoreRequest
from walwarden.api.schedule import BackupSchedule

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXAMPLE_FILES = [
    "backup.yaml",
    "restore-inplace.yaml",
    "restore-redirected.yaml",
    "argocd-presync-backup.yaml",
    "backup-schedule.yaml",
]
MODELS = {"BackupRequest": BackupRequest, "RestoreRequest": RestoreRequest, "BackupSchedule": BackupSchedule}
PLURALS = {"BackupRequest": "backuprequests", "RestoreRequest": "restorerequests", "BackupSchedule": "backupschedules"}
HEALTH_DIR = REPO / "argocd" / "health"
CM_PATCH = REPO / "argocd" / "argocd-cm-patch.yaml"


def load(name: str) -> dict:
    documents = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d is not None]
    assert len(documents) == 1, f"{name} should hold exactly one request"
    return documents[0]


def assert_subset(expected, actual, where: str = "spec") -> None:
    """Everything the example says came back from the API server unchanged (nothing pruned);
    the server may add defaults."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} was dropped by the API server"
            assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):  # element by element: the server may default keys inside
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (sent, kept) in enumerate(zip(expected, actual, strict=False)):
            assert_subset(sent, kept, f"{where}[{index}]")
    else:
        assert expected == actual, f"{where}: sent {expected!r}, the API server has {actual!r}"


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_FILES)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_parses_with_the_api_models(name):
    document = load(name)
    request = MODELS[document["kind"]].model_validate(document)
    assert request.api_version == "walwarden.io/v1alpha1"
    # No namespace in the file: `kubectl apply -n <vault namespace> -f` puts it where the vault is.
    assert "namespace" not in document["metadata"]
    assert request.status is None


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_is_accepted_by_the_api_server(cluster, crds, namespace, name):
    document = load(name)
    path = str(EXAMPLES / name)
    # `kubectl apply` refuses generateName; such a request is made with `kubectl create`.
    verb = "create" if "generateName" in document["metadata"] else "apply"
    result = cluster.kubectl([verb, "--dry-run=server", "-n", namespace, "-f", path, "-o", "yaml"], check=False)
    assert result.returncode == 0, result.stderr
    returned = yaml.safe_load(result.stdout)
    assert returned["kind"] == document["kind"] and returned["metadata"]["namespace"] == namespace
    if verb == "create":
        assert returned["metadata"]["name"].startswith(document["metadata"]["generateName"])
        assert len(returned["metadata"]["name"]) > len(document["metadata"]["generateName"])
    else:
        assert returned["metadata"]["name"] == document["metadata"]["name"]
    assert_subset(document["spec"], returned["spec"])
    for key, value in (document["metadata"].get("annotations") or {}).items():
        assert returned["metadata"]["annotations"][key] == value
    # What the server returned is still a valid request for the operator's models.
    MODELS[returned["kind"]].model_validate(returned)
    # A dry run: nothing was stored.
    stored = cluster.kubectl_json(["get", PLURALS[document["kind"]], "-n", namespace])
    assert stored["items"] == []


def test_the_examples_fit_together():
    backup = load("backup.yaml")
    for name in ("restore-inplace.yaml", "restore-redirected.yaml"):
        restore = load(name)
        assert restore["spec"]["source"]["backupRef"]["name"] == backup["metadata"]["name"], name
    assert load("restore-inplace.yaml")["spec"]["mode"] == "InPlace"
    redirected = load("restore-redirected.yaml")
    assert redirected["spec"]["mode"] == "Redirected" and "redirect" in redirected["spec"]

    hook = load("argocd-presync-backup.yaml")
    assert hook["kind"] == "BackupRequest"
    assert "name" not in hook["metadata"] and hook["metadata"]["generateName"].endswith("-")
    assert hook["metadata"]["annotations"] == {
        "argocd.argoproj.io/hook": "PreSync",
        "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
    }

    schedule = load("backup-schedule.yaml")
    assert schedule["spec"]["backupTemplate"]["spec"]["database"] == backup["spec"]["database"]
    assert schedule["spec"]["backupTemplate"]["spec"]["encryptorSecrets"] == backup["spec"]["encryptorSecrets"]


def test_two_creates_of_the_presync_hook_make_two_requests(cluster, crds, namespace):
    """generateName gives every sync its own, new one-shot BackupRequest."""
    path = str(EXAMPLES / "argocd-presync-backup.yaml")
    first = cluster.kubectl_json(["create", "-n", namespace, "-f", path])
    second = cluster.kubectl_json(["create", "-n", namespace, "-f", path])
    assert first["metadata"]["name"] != second["metadata"]["name"]
    names = {
        item["metadata"]["name"] for item in cluster.kubectl_json(["get", "backuprequests", "-n", namespace])["items"]
    }
    assert names == {first["metadata"]["name"], second["metadata"]["name"]}


def test_the_argocd_cm_patch_installs_every_health_check(cluster, namespace):
    """The documented command, against a stand-in argocd-cm in the test namespace."""
    cluster.kubectl(["create", "configmap", "argocd-cm", "-n", namespace, "--from-literal=url=https://argocd.example"])
    cluster.kubectl(
        ["patch", "configmap", "argocd-cm", "-n", namespace, "--type", "merge", "--patch-file", str(CM_PATCH)]
    )
    data = cluster.kubectl_json(["get", "configmap", "argocd-cm", "-n", namespace])["data"]
    assert data["url"] == "https://argocd.example"  # the rest of argocd-cm is kept
    for kind in ("BackupRequest", "RestoreRequest", "BackupSchedule"):
        key = f"resource.customizations.health.walwarden.io_{kind}"
        assert data[key] == (HEALTH_DIR / f"walwarden.io_{kind}.lua").read_text(), key
