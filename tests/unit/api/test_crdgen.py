"""The CRD generator: structural schemas, names, columns, CEL rules, chart wrapping, drift."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from walwarden.api import crdgen
from walwarden.api.backup import BackupRequest
from walwarden.api.common import IMMUTABLE_SPEC, ConditionType, set_condition
from walwarden.api.restore import RestoreRequest

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in crdgen.build_crds()}

# What a structural schema must not contain (apiextensions.k8s.io/v1 "structural schema" rules,
# plus what we never want: unknown fields kept anywhere).
FORBIDDEN_KEYWORDS = {
    "$ref",
    "$defs",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
    "title",
    "const",
}
FREE_FORM: set[str] = set()  # no field keeps unknown fields: every one is validated


def schema_of(kind: str) -> dict:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict, path: str = ""):
    """Every schema node with its path (`.spec.source`, `.spec.encryptorSecrets[]`, ...)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def node_at(schema: dict, json_path: str) -> dict | None:
    node = schema
    for part in json_path.strip(".").split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node


# --- drift --------------------------------------------------------------------------------


def test_committed_crds_match_the_models():
    drifted = crdgen.drifted_files(REPO_ROOT)
    assert not drifted, (
        f"generated CRDs are out of date with operator/walwarden/api: {', '.join(drifted)}; "
        "run `python -m walwarden.api.crdgen` and commit the result"
    )


def test_rendered_files_are_the_crds_and_the_chart_templates():
    assert sorted(crdgen.render_files()) == [
        "charts/walwarden/templates/crds/backuprequests.yaml",
        "charts/walwarden/templates/crds/backupschedules.yaml",
        "charts/walwarden/templates/crds/restorerequests.yaml",
        "crds/walwarden.io_backuprequests.yaml",
        "crds/walwarden.io_backupschedules.yaml",
        "crds/walwarden.io_restorerequests.yaml",
    ]


def test_rendering_is_deterministic():
    assert crdgen.render_files() == crdgen.render_files()


def test_check_mode_reports_drift_and_write_mode_fixes_it(tmp_path, capsys):
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert "python -m walwarden.api.crdgen" in capsys.readouterr().err

    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 0

    edited = tmp_path / "crds/walwarden.io_restorerequests.yaml"
    edited.write_text(edited.read_text() + "# hand edit\n")
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert "drifted: crds/walwarden.io_restorerequests.yaml" in capsys.readouterr().err


# --- the CRD documents --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "plural", "short_names"),
    [
        (BackupRequest, "backuprequests", ["wwbackup", "bkreq"]),
        (RestoreRequest, "restorerequests", ["wwrestore", "rsreq"]),
    ],
)
def test_names_scope_and_subresources(model, plural, short_names):
    crd = CRDS[model.crd.kind]
    assert crd["metadata"]["name"] == f"{plural}.walwarden.io"
    assert crd["spec"]["group"] == "walwarden.io"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["plural"], names["shortNames"], names["categories"]) == (plural, short_names, ["walwarden"])
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", ["BackupRequest", "RestoreRequest"])
def test_schema_is_structural(kind):
    schema = schema_of(kind)
    assert schema["required"] == ["spec"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in walk(schema):
        assert "type" in node, f"{path or '.'}: no type"
        assert not FORBIDDEN_KEYWORDS & node.keys(), f"{path}: {FORBIDDEN_KEYWORDS & node.keys()}"
        assert not node.get("x-kubernetes-preserve-unknown-fields") or path in FREE_FORM, f"{path}: unknown fields kept"
        free_form = node.get("x-kubernetes-preserve-unknown-fields") is True  # a drill's pod template
        if node["type"] == "object" and path != ".metadata" and not free_form:
            assert "properties" in node or "additionalProperties" in node, f"{path}: untyped object"
            assert isinstance(node.get("additionalProperties", {}), dict), (
                f"{path}: additionalProperties must be a schema"
            )
            assert set(node.get("required", [])) <= node.get("properties", {}).keys(), f"{path}: required unknown field"
        if node["type"] == "array":
            assert "items" in node, f"{path}: array without items"


@pytest.mark.parametrize("kind", ["BackupRequest", "RestoreRequest"])
def test_every_field_is_documented(kind):
    undocumented = [
        path
        for path, node in walk(schema_of(kind))
        if path not in ("", ".metadata") and not node.get("description") and not path.endswith(("[]", ".*"))
    ]
    assert not undocumented, f"fields without a description (kubectl explain shows it): {undocumented}"


@pytest.mark.parametrize("kind", ["BackupRequest", "RestoreRequest"])
def test_spec_is_bounded_for_the_cel_cost_estimator(kind):
    # `self == oldSelf` on the whole spec is only accepted when its size has an upper bound.
    for path, node in walk(schema_of(kind)["properties"]["spec"], ".spec"):
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node, f"{path}: unbounded string"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: unbounded list"
        assert "additionalProperties" not in node, f"{path}: unbounded map"
        # FREE_FORM: the API server accepts it in `self == oldSelf` (tests/integration/test_request_admission.py).


def test_conditions_are_a_map_keyed_by_type():
    for kind in CRDS:
        conditions = schema_of(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert {"type", "status", "reason", "lastTransitionTime"} <= set(conditions["items"]["required"])


def test_dicts_and_enums_and_defaults_survive():
    restore = schema_of("RestoreRequest")["properties"]
    status, spec = restore["status"]["properties"], restore["spec"]["properties"]
    assert status["originalReplicas"] == {
        "type": "object",
        "description": status["originalReplicas"]["description"],
        "additionalProperties": {"type": "integer"},
    }
    assert spec["mode"]["enum"] == ["InPlace", "Redirected", "Drill"]
    assert status["phase"]["enum"] == ["Pending", "Running", "Succeeded", "Failed", "RolledBack"]
    assert status["steps"]["items"]["properties"]["state"]["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Skipped",
    ]
    assert spec["sessionPolicy"]["default"] == {"onRemaining": "Terminate", "waitSeconds": 60}
    wait_seconds = spec["sessionPolicy"]["properties"]["waitSeconds"]
    assert (
        wait_seconds["type"],
        wait_seconds["default"],
        wait_seconds["minimum"],
        wait_seconds["maximum"],
    ) == ("integer", 60, 0, 3600)
    assert "default" not in spec["safetyBackup"]  # unset means "the mode's default"
    assert spec["source"]["properties"]["artifact"]["pattern"] == "^s3://[^/]+/.+"
    assert status["plan"]["properties"]["services"]["items"]["properties"]["tier"]["type"] == "integer"

    backup = schema_of("BackupRequest")["properties"]["spec"]["properties"]
    assert backup["activeDeadlineSeconds"]["minimum"] == 60
    assert backup["database"]["properties"]["databases"]["minItems"] == 1
    assert backup["storage"]["properties"]["s3"]["required"] == ["bucket"]


def test_cel_rules_come_from_the_models():
    backup_rules = schema_of("BackupRequest")["properties"]["spec"]["x-kubernetes-validations"]
    assert backup_rules == [IMMUTABLE_SPEC.to_schema()]

    spec = schema_of("RestoreRequest")["properties"]["spec"]
    rules = {rule["rule"]: rule for rule in spec["x-kubernetes-validations"]}
    assert (
        rules["self == oldSelf"]["message"] == "spec is immutable: a request is one-shot; create a new request instead"
    )
    assert rules["self.mode != 'Redirected' || has(self.redirect)"]["message"].startswith(
        "Redirected restores need spec.redirect"
    )
    assert "!has(self.source.artifact) || has(self.storage)" in rules
    assert "self.mode != 'InPlace' || !has(self.redirect)" in rules
    source_rules = spec["properties"]["source"]["x-kubernetes-validations"]
    assert [rule["rule"] for rule in source_rules] == [
        "has(self.backupRef) != has(self.artifact)",
        "!has(self.trustedKeys) || has(self.artifact)",
    ]
    for node, rule in [(spec, r) for r in spec["x-kubernetes-validations"]] + [
        (spec["properties"]["source"], r) for r in source_rules
    ]:
        if "fieldPath" in rule:
            assert node_at(node, rule["fieldPath"]) is not None, rule


@pytest.mark.parametrize("kind", ["BackupRequest", "RestoreRequest"])
def test_printer_columns_point_at_fields_of_the_right_type(kind):
    columns = CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[0]["name"] == "Phase" and columns[-1] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    for column in columns[:-1]:
        node = node_at(schema_of(kind), column["jsonPath"])
        assert node is not None, f"{column['name']}: {column['jsonPath']} is not in the schema"
        assert node["type"] == column["type"], column


def test_backup_columns_and_restore_columns():
    backup = {c["name"]: c for c in CRDS["BackupRequest"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(backup) == ["Phase", "Quiesce", "Step", "Size", "Bytes", "Duration", "Message", "Age"]
    assert backup["Size"]["jsonPath"] == ".status.artifact.size" and backup["Message"]["priority"] == 1
    assert backup["Bytes"]["format"] == "int64" and backup["Bytes"]["priority"] == 1
    restore = {c["name"]: c for c in CRDS["RestoreRequest"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(restore) == ["Phase", "Mode", "Strategy", "Source", "Step", "Downtime", "Message", "Age"]
    assert restore["Source"]["jsonPath"] == ".status.source"  # a BackupRequest's name or an artifact's URI


def test_chart_templates_wrap_the_same_crd_and_keep_it_on_uninstall():
    files = crdgen.render_files()
    for crd in CRDS.values():
        plural = crd["spec"]["names"]["plural"]
        text = files[f"charts/walwarden/templates/crds/{plural}.yaml"]
        lines = text.splitlines()
        assert lines[0] == crdgen.HEADER.strip()
        assert lines[1] == "{{- if .Values.crds.create }}" and lines[-1] == "{{- end }}"
        in_chart = yaml.safe_load("\n".join(lines[2:-1]))
        expected = copy.deepcopy(crd)
        expected["metadata"]["annotations"] = {"helm.sh/resource-policy": "keep"}
        assert in_chart == expected
        assert yaml.safe_load(files[f"crds/walwarden.io_{plural}.yaml"]) == crd
        assert files[f"crds/walwarden.io_{plural}.yaml"].startswith(crdgen.HEADER)


# --- the generator refuses what it cannot express -----------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        {"type": "string", "const": "x"},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "additionalProperties": True},
        {"description": "no type"},
    ],
)
def test_structural_refuses_what_has_no_structural_equivalent(node):
    with pytest.raises(crdgen.CrdGenError):
        crdgen.structural(node, {})


def test_structural_inlines_refs_and_lets_the_field_win():
    defs = {"E": {"title": "E", "type": "string", "enum": ["A", "B"], "description": "class doc"}}
    node = {
        "anyOf": [{"$ref": "#/$defs/E"}, {"type": "null"}],
        "default": None,
        "description": "field\n   doc",
    }
    assert crdgen.structural(node, defs) == {"type": "string", "enum": ["A", "B"], "description": "field doc"}


# --- samples against the generated schema (what the API server checks before CEL) ---------

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
CONDITIONS = set_condition([], ConditionType.READY, True, "Succeeded", "done", observed_generation=1, now=T0)

FULL_BACKUP = BackupRequest.model_validate(
    {
        "metadata": {"name": "nightly"},
        "spec": {
            "database": {"secretRef": {"name": "pg-admin"}, "databases": ["vault"]},
            "storage": {"s3": {"bucket": "vault-backups", "credentialsSecretRef": {"name": "s3"}}},
            "encryptorSecrets": [{"name": "emp"}],
            "topology": {},
        },
        "status": {
            "phase": "Succeeded",
            "conditions": [c.to_dict() for c in CONDITIONS],
            "durationSeconds": 12.5,
            "artifact": {
                "uri": "s3://b/k.dump",
                "manifestUri": "s3://b/k.json",
                "sha256": "0" * 64,
                "sizeBytes": 2**40,
            },
        },
    }
)
FULL_RESTORE = RestoreRequest.model_validate(
    {
        "metadata": {"name": "r1"},
        "spec": {
            "source": {"artifact": "s3://vault-backups/k.dump"},
            "storage": {"s3": {"bucket": "vault-backups"}},
            "mode": "Redirected",
            "target": {"secretRef": {"name": "pg-new"}, "database": "vault"},
            "redirect": {
                "dbHost": "10.0.0.7",
                "dbPort": 5432,
                "environment": "prod",
                "aws": {"region": "eu-west-1"},
            },
            "verify": {"authHeaderSecretRef": {"name": "api", "key": "header"}},
            "safetyBackup": True,
            "topology": {"stopTiers": [["wallet"]]},
        },
        "status": {
            "phase": "Running",
            "conditions": [c.to_dict() for c in CONDITIONS],
            "currentStep": "Restore",
            "steps": [{"name": "Validate", "state": "Succeeded", "startedAt": "2025-03-01T12:00:00Z"}],
            "originalReplicas": {"wallet": 2},
            "downtimeSeconds": 3.0,
            "dataLossWindow": {
                "backupTime": "2025-03-01T00:00:00Z",
                "restoreTime": "2025-03-01T12:00:00Z",
                "seconds": 43200,
            },
            "plan": {
                "steps": ["Validate"],
                "services": [{"name": "wallet", "tier": 1, "replicas": 2}],
                "secrets": ["a"],
            },
        },
    }
)


@pytest.mark.parametrize("sample", [FULL_BACKUP, FULL_RESTORE], ids=["BackupRequest", "RestoreRequest"])
def test_model_output_validates_against_the_generated_schema(sample):
    validator = jsonschema.Draft7Validator(schema_of(sample.kind))
    body = sample.to_dict()
    assert not list(validator.iter_errors(body))
    body["status"]["phase"] = "Exploded"
    (error,) = validator.iter_errors(body)
    assert list(error.absolute_path) == ["status", "phase"] and error.validator == "enum"


@pytest.mark.parametrize("kind", ["BackupRequest", "RestoreRequest"])
def test_defaults_validate_against_their_own_schema(kind):
    # The API server refuses a CRD whose defaults do not validate; catch it here first.
    for path, node in walk(schema_of(kind)):
        if "default" in node:
            own = {key: value for key, value in node.items() if key != "default"}
            errors = [error.message for error in jsonschema.Draft7Validator(own).iter_errors(node["default"])]
            assert not errors, f"{path}: default {node['default']!r}: {errors}"
