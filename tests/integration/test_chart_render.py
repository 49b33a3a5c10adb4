"""The Helm chart, rendered by the real helm binary (built from its Go module; no cluster needed):
lint, what each RBAC mode grants, the hardened Deployment and its settings, CRDs, metrics, and
the values schema refusing bad values with a clear message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from devstack.binaries import ensure_binaries, read_versions
from walwarden.api import crdgen

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "walwarden"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RELEASE, RELEASE_NS = "ww", "walwarden-system"
NAMESPACED = ["--set", "rbac.scope=namespaces", "--set", "watchNamespaces={vault-a,vault-b}"]
WATCHING = ["--set", "watchNamespaces={vault-a,vault-b}"]  # with the default scope, namespaces
CLUSTER = ["--set", "rbac.scope=cluster"]

# Every permission the operator has in a namespace it watches: what kopf and the steps call, no
# more (see the comments in templates/_helpers.tpl). Changing RBAC means changing this table.
# In the release namespace, beside the approval key: the ledger of spent approval tokens.
SPENT_TOKEN_RULES = [
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["walwarden-approvals"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    # ... and the drill slots of each database server.
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "delete"]},
]
EXPECTED_RULES = [
    {
        "apiGroups": ["walwarden.io"],
        "resources": ["backuprequests", "restorerequests"],
        "verbs": ["get", "list", "watch", "patch", "create", "delete"],
    },
    {
        "apiGroups": ["walwarden.io"],
        "resources": ["backupschedules"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["walwarden.io"],
        "resources": ["backuprequests/status", "restorerequests/status", "backupschedules/status"],
        "verbs": ["patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "delete", "patch"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["walwarden-restores"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["walwarden-lock"],
        "verbs": ["get", "update", "delete"],
    },
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "patch"]},
]


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_binaries(["helm"]).helm


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(helm: Path, *args: str) -> list[dict]:
    """The chart rendered with `args`; with the namespaces it serves, unless `args` choose them (the
    defaults alone are refused: see test_the_defaults_alone_ask_which_namespaces_to_serve)."""
    if not any(arg.startswith(("rbac.scope", "watchNamespaces")) for arg in args):
        args = (*WATCHING, *args)
    out = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_helm_reports_its_pinned_version_and_a_current_kubernetes(helm, tmp_path):
    """Built with helm's release ldflags: without them it says "v3.19" and renders for Kubernetes
    v1.20 (.Capabilities.KubeVersion of `helm template`)."""
    assert run_helm(helm, "version", "--template", "{{.Version}}").stdout == read_versions()["HELM_VERSION"]
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "kube.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {minor: {{ .Capabilities.KubeVersion.Minor | quote }}}\n"
    )
    [probe] = yaml.safe_load_all(run_helm(helm, "template", "probe", str(chart)).stdout)
    assert int(probe["data"]["minor"]) >= 30, probe  # helm's client-go minor (v0.34 → 1.34)


def render_error(helm: Path, *args: str) -> str:
    if not any(arg.startswith(("rbac.scope", "watchNamespaces")) for arg in args):
        args = (*WATCHING, *args)
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *args, check=False)
    assert result.returncode != 0, "helm template accepted values it should refuse"
    return result.stderr


def only(docs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(docs: list[dict]) -> dict:
    return only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(docs: list[dict]) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [CLUSTER, NAMESPACED, [*WATCHING, "--set", "metrics.serviceMonitor.enabled=true"]],
    ids=["cluster", "namespaces", "servicemonitor"],
)
def test_helm_lint_strict_passes(helm, args):
    result = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert "0 chart(s) failed" in result.stdout


def test_values_schema_is_draft_07_and_accepts_the_defaults():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_every_value_is_covered_by_the_schema():
    """additionalProperties: false everywhere a value is an object of our own: a typo is an error."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        assert node, f"{path} has no schema"
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "values")


# --- RBAC ---------------------------------------------------------------------------------------


def test_cluster_scope_grants_the_rules_cluster_wide_and_watches_every_namespace(helm):
    docs = render(helm, *CLUSTER)
    assert kinds(docs) == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
        ]
    )
    role = only(docs, "ClusterRole", RELEASE)
    assert role["rules"] == EXPECTED_RULES
    binding = only(docs, "ClusterRoleBinding", RELEASE)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RELEASE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": RELEASE_NS}]
    assert env(docs)["WALWARDEN_NAMESPACES"] == ""


def test_namespaces_scope_has_no_cluster_role_and_a_role_in_each_listed_namespace(helm):
    docs = render(helm, *NAMESPACED)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for namespace in ("vault-a", "vault-b"):
        role = only(docs, "Role", RELEASE, namespace)
        assert role["rules"] == EXPECTED_RULES
        binding = only(docs, "RoleBinding", RELEASE, namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": RELEASE_NS}]
    # The operator watches exactly the namespaces it has rights in.
    assert env(docs)["WALWARDEN_NAMESPACES"] == "vault-a,vault-b"
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["vault-a", "vault-b", RELEASE_NS]


@pytest.mark.parametrize("args", [CLUSTER, NAMESPACED], ids=["cluster", "namespaces"])
def test_the_approval_key_is_the_only_thing_granted_in_the_release_namespace(helm, args):
    docs = render(helm, *args, "--set", "operator.approvalKeySecret=my-approval-key")
    role = only(docs, "Role", f"{RELEASE}-approval-key", RELEASE_NS)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["my-approval-key"], "verbs": ["get"]},
        *SPENT_TOKEN_RULES,
    ]
    binding = only(docs, "RoleBinding", f"{RELEASE}-approval-key", RELEASE_NS)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": RELEASE_NS}]
    assert env(docs)["WALWARDEN_APPROVAL_KEY_SECRET"] == "my-approval-key"


@pytest.mark.parametrize("args", [CLUSTER, NAMESPACED], ids=["cluster", "namespaces"])
def test_the_operators_origin_keys_are_granted_by_name_in_the_release_namespace(helm, args):
    docs = render(
        helm,
        *args,
        "--set",
        "operator.originSigningKeySecret=my-origin-key",
        "--set",
        "operator.trustedKeysConfigMap=my-trusted-keys",
    )
    role = only(docs, "Role", f"{RELEASE}-approval-key", RELEASE_NS)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["walwarden-approval-key", "my-origin-key"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-trusted-keys"], "verbs": ["get"]},
        *SPENT_TOKEN_RULES,
    ]
    assert env(docs)["WALWARDEN_ORIGIN_SIGNING_KEY_SECRET"] == "my-origin-key"
    assert env(docs)["WALWARDEN_TRUSTED_KEYS_CONFIG_MAP"] == "my-trusted-keys"


def test_rules_grant_nothing_broad():
    for rule in EXPECTED_RULES:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
        assert not any(r.endswith(("/exec", "/attach", "/portforward", "/proxy")) for r in rule["resources"])
        if "secrets" in rule["resources"]:
            assert not {"list", "watch"} & set(rule["verbs"]), "Secrets are read by name only"
        if rule["apiGroups"] == ["apps"]:
            assert not {"delete", "create", "update"} & set(rule["verbs"])


# --- Deployment -----------------------------------------------------------------------------------


def test_deployment_is_one_hardened_replica_with_health_probes(helm):
    docs = render(helm)
    deployment = only(docs, "Deployment", RELEASE)
    assert deployment["metadata"]["namespace"] == RELEASE_NS
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE and pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(docs)
    assert main["image"] == f"walwarden:{APP_VERSION}"
    assert main["command"] == ["walwarden"] and main["args"] == ["run"]
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["runAsUser"] == 10001
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert main["resources"]["requests"]["cpu"] and main["resources"]["requests"]["memory"]
    assert main["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    health_port = int(env(docs)["WALWARDEN_HEALTH_PORT"])
    assert ports["health"] == health_port and ports["metrics"] == int(env(docs)["WALWARDEN_METRICS_PORT"])
    for probe in (main["livenessProbe"], main["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}


def test_every_setting_the_operator_reads_is_set_from_values(helm):
    """The chart sets each WALWARDEN_* variable the Settings model reads (and nothing it does not read)."""
    from walwarden.settings import Settings

    read = set(Settings.environment_variables().values())
    values = env(render(helm))
    assert {name for name in values if name.startswith("WALWARDEN_")} == read
    assert values["WALWARDEN_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert values["WALWARDEN_LOG_FORMAT"] == "json"
    assert values["WALWARDEN_APPROVALS_REQUIRED"] == "true"  # safe by default
    assert json.loads(values["WALWARDEN_RUNNER_POD_LABELS"]) == {}


def test_settings_follow_values(helm):
    docs = render(
        helm,
        "--set",
        "operator.approvalsRequired=false",
        "--set",
        "operator.logFormat=text",
        "--set",
        "operator.pollSeconds=2.5",
        "--set",
        "image.repository=registry.example/walwarden",
        "--set",
        "image.tag=1.2.3",
        "--set-json",
        'operator.runnerPodLabels={"team":"custody","devstack.walwarden.io/exec":"true"}',
        "--set",
        "operator.healthPort=8181",
        "--set",
        "metrics.port=9191",
        "--set-json",
        'operator.extraEnv=[{"name":"AWS_REGION","value":"eu-west-1"}]',
    )
    values = env(docs)
    assert values["WALWARDEN_APPROVALS_REQUIRED"] == "false"
    assert values["WALWARDEN_LOG_FORMAT"] == "text"
    assert values["WALWARDEN_POLL_SECONDS"] == "2.5"
    # The runner Jobs run the operator's own image unless told otherwise.
    assert container(docs)["image"] == values["WALWARDEN_RUNNER_IMAGE"] == "registry.example/walwarden:1.2.3"
    assert json.loads(values["WALWARDEN_RUNNER_POD_LABELS"]) == {
        "team": "custody",
        "devstack.walwarden.io/exec": "true",
    }
    assert values["WALWARDEN_HEALTH_PORT"] == "8181" and values["WALWARDEN_METRICS_PORT"] == "9191"
    assert values["AWS_REGION"] == "eu-west-1"
    assert env(render(helm, "--set", "operator.runnerImage=runner:9"))["WALWARDEN_RUNNER_IMAGE"] == "runner:9"


def test_service_account_annotations_for_ambient_cloud_identity(helm):
    docs = render(helm, "--set", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/ww")
    assert only(docs, "ServiceAccount", RELEASE)["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/ww"
    }


# --- CRDs -------------------------------------------------------------------------------------------


def test_crds_are_the_generated_ones_kept_on_uninstall(helm):
    rendered = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "CustomResourceDefinition"}
    generated = {crd["metadata"]["name"]: crd for crd in crdgen.build_crds()}
    assert (
        set(rendered)
        == set(generated)
        == {
            "backuprequests.walwarden.io",
            "restorerequests.walwarden.io",
            "backupschedules.walwarden.io",
        }
    )
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["spec"] == generated[name]["spec"]


def test_crds_can_be_left_out(helm):
    assert "CustomResourceDefinition" not in kinds(render(helm, "--set", "crds.create=false"))


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_service_and_no_service_monitor_by_default(helm):
    docs = render(helm)
    service = only(docs, "Service", f"{RELEASE}-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert "ServiceMonitor" not in kinds(docs)


def test_service_monitor_when_enabled(helm):
    docs = render(
        helm,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
        "--set",
        "metrics.serviceMonitor.interval=15s",
    )
    monitor = only(docs, "ServiceMonitor", RELEASE)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    service = only(docs, "Service", f"{RELEASE}-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_metrics_can_be_turned_off(helm):
    docs = render(helm, "--set", "metrics.enabled=false")
    assert "Service" not in kinds(docs)
    assert env(docs)["WALWARDEN_METRICS_PORT"] == "0"
    assert [p["name"] for p in container(docs)["ports"]] == ["health"]


# --- refusing bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "rbac.scope=everything"], "at '/rbac/scope': value must be one of 'cluster', 'namespaces'"),
        (["--set", "operator.healthPort=70000"], "at '/operator/healthPort': maximum"),
        (["--set", "operator.logFormat=xml"], "at '/operator/logFormat': value must be one of 'json', 'text'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "operator.approvalsRequired=maybe"], "at '/operator/approvalsRequired': got string, want boolean"),
        (["--set", "crds.create=yes"], "at '/crds/create': got string, want boolean"),
        (["--set", "operatr.approvalsRequired=true"], "additional properties 'operatr' not allowed"),
        (["--set-json", 'operator.runnerPodLabels={"team":1}'], "at '/operator/runnerPodLabels/team': got number"),
        (["--set", "rbac.scope=namespaces", "--set", "watchNamespaces={Vault_A}"], "at '/watchNamespaces/0'"),
        (["--set", "operator.approvalKeySecret=Not A Name"], "at '/operator/approvalKeySecret'"),
        (["--set", "operator.trustedKeysConfigMap=Not A Name"], "at '/operator/trustedKeysConfigMap'"),
        (["--set", "metrics.serviceMonitor.interval=often"], "at '/metrics/serviceMonitor/interval'"),
        (["--set", "resources.limits.memory=lots"], "at '/resources/limits/memory'"),
        (["--set", "operator.pollSeconds=0"], "at '/operator/pollSeconds'"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_schema_refuses_bad_values_naming_the_value(helm, args, message):
    error = render_error(helm, *args)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--set", "rbac.scope=namespaces"],
            "rbac.scope is namespaces (the default): list the vault namespaces the operator serves in watchNamespaces",
        ),
        ([*CLUSTER, "--set", "watchNamespaces={vault}"], "watchNamespaces is only used with rbac.scope: namespaces"),
        (
            ["--set", f"watchNamespaces={{vault,{RELEASE_NS}}}"],
            f"watchNamespaces lists the release namespace {RELEASE_NS}: the operator's own keys",
        ),
        (
            ["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
            "metrics.serviceMonitor.enabled needs metrics.enabled: true",
        ),
        (["--set", "metrics.port=8081"], "metrics.port and operator.healthPort must differ"),
    ],
)
def test_inconsistent_values_are_refused_with_a_clear_message(helm, args, message):
    assert message in render_error(helm, *args)


def test_the_defaults_are_safe_for_a_custody_platform_and_alone_ask_which_namespaces_to_serve(helm):
    """Per-namespace RBAC and approvals required, unless chosen otherwise: a bare install is refused
    with what to set, and once the namespaces are given, nothing is granted cluster-wide."""
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, check=False)
    assert result.returncode != 0 and "--set watchNamespaces={vault}" in result.stderr
    docs = render(helm, "--set", "watchNamespaces={vault}")
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert env(docs)["WALWARDEN_APPROVALS_REQUIRED"] == "true"
