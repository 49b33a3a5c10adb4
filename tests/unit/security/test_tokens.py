"""Approval tokens (DESIGN §4) and the `walwarden token` command."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import types

import pytest
import yaml

from walwarden.api import RestoreRequestSpec
from walwarden.cli import token as token_cli
from walwarden.security.tokens import (
    MAX_TTL_SECONDS,
    Approval,
    TokenClaims,
    TokenError,
    TokenErrorReason,
    issue_token,
    parse_unverified,
    token_id,
    verify_token,
)

KEY = b"k" * 32
SHA = "ab" * 32
NOW = 1_700_000_000.0
SPEC = "cd" * 32  # the digest of the request's spec (RestoreRequestSpec.approval_digest)
REQUEST = {
    "backup": "nightly-2024-05-01",
    "sha256": SHA,
    "mode": "Redirected",
    "namespace": "vault-prod",
    "request": "restore-to-nightly",
    "spec": SPEC,
}


def approval(**overrides) -> Approval:
    return Approval(**{**REQUEST, **overrides})


def issue(ttl_seconds: int = 900, **overrides) -> str:
    return issue_token(KEY, approval(**overrides), ttl_seconds=ttl_seconds, now=NOW)


def verify(token: str, key: bytes = KEY, now: float = NOW + 1, **overrides) -> TokenClaims:
    return verify_token(key, token, approval(**overrides), now=now)


def refused(reason: TokenErrorReason, *args, **kwargs) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verify(*args, **kwargs)
    assert caught.value.reason == reason
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(claims: object, key: bytes = KEY) -> str:
    """A token signed with the right key around arbitrary claims: only the claims can be wrong."""
    signed = "wwt2." + b64(json.dumps(claims).encode())
    return f"{signed}.{b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


# -- issue and verify -----------------------------------------------------------------------------


def test_round_trip_returns_the_claims():
    token = issue()
    claims = verify(token)
    assert claims == TokenClaims(
        token_id=claims.token_id,
        backup=REQUEST["backup"],
        sha256=SHA,
        mode="Redirected",
        namespace="vault-prod",
        request="restore-to-nightly",
        spec=SPEC,
        issued_at=int(NOW),
        expires_at=int(NOW) + 900,
    )
    assert len(claims.token_id) >= 22  # 128 random bits


def test_token_is_url_safe_and_carries_labels_only():
    token = issue(backup="s3://bucket/vault/2024-05-01/vault.dump")
    assert re.fullmatch(r"wwt2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(claims) == {"backup", "sha256", "mode", "namespace", "request", "spec", "iat", "exp", "jti"}
    assert KEY.decode() not in token
    # Compact JSON with sorted keys, as the format promises.
    assert base64.urlsafe_b64decode(payload + "==").decode() == json.dumps(
        claims, sort_keys=True, separators=(",", ":")
    )


def test_every_token_has_its_own_id():
    tokens = [issue() for _ in range(20)]
    assert len({token_id(t) for t in tokens}) == 20
    assert token_id(tokens[0]) == verify(tokens[0]).token_id


def test_sha256_is_compared_case_insensitively():
    assert verify(issue(sha256=SHA.upper()), sha256=SHA).sha256 == SHA
    assert verify(issue(), sha256=SHA.upper()).sha256 == SHA


def test_surrounding_whitespace_of_key_and_token_is_ignored():
    # A key read from a file usually ends with a newline; a token pasted into YAML may too.
    token = issue_token(KEY + b"\n", approval(), ttl_seconds=60, now=NOW)
    assert verify(f" {token}\n", key=b"  " + KEY).token_id == token_id(token)


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("backup", "s3://bucket/vault/other.dump"),
        ("sha256", "cd" * 32),
        ("mode", "InPlace"),
        ("namespace", "vault-staging"),
        ("request", "another-restore"),  # taken to another request before its own was applied
    ],
)
def test_each_mismatch_is_refused_and_named(field, other):
    error = refused(TokenErrorReason.MISMATCH, issue(), **{field: other})
    assert error.message == f"the token was issued for {field} {REQUEST[field]}, this request is {other}"


def test_a_token_for_the_same_request_with_another_spec_is_refused():
    """The same name, front-run with another target, strategy, redirect or Verify URL."""
    error = refused(TokenErrorReason.MISMATCH, issue(), spec="ef" * 32)
    assert error.message.startswith("the token was issued for another spec (sha256 cdcdcdcdcdcd…) than this request's")


def test_mode_mismatch_message_reads_naturally():
    error = refused(TokenErrorReason.MISMATCH, issue(mode="InPlace"), mode="Redirected")
    assert error.message == "the token was issued for mode InPlace, this request is Redirected"


def test_several_mismatches_are_all_reported():
    error = refused(TokenErrorReason.MISMATCH, issue(), mode="InPlace", namespace="other")
    assert "mode Redirected" in error.message and "namespace vault-prod" in error.message


def test_expiry_is_strict():
    token = issue(ttl_seconds=60)
    assert verify(token, now=NOW + 59.999)
    error = refused(TokenErrorReason.EXPIRED, token, now=NOW + 60)
    assert "2023-11-14T22:14:20Z" in error.message  # when, in RFC 3339
    refused(TokenErrorReason.EXPIRED, token, now=NOW + 86400 * 200)  # the stale GitOps request


def test_mismatch_is_reported_before_expiry():
    refused(TokenErrorReason.MISMATCH, issue(ttl_seconds=60), now=NOW + 3600, mode="InPlace")


def test_tampered_claims_are_refused():
    prefix, payload, signature = issue(mode="Redirected").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["mode"] = "InPlace"
    forged = f"{prefix}.{b64(json.dumps(claims, sort_keys=True, separators=(',', ':')).encode())}.{signature}"
    refused(TokenErrorReason.SIGNATURE_INVALID, forged, mode="InPlace")


def test_tampered_signature_is_refused():
    token = issue()
    body, _, signature = token.rpartition(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "="))
    flipped[0] ^= 1
    refused(TokenErrorReason.SIGNATURE_INVALID, f"{body}.{b64(bytes(flipped))}")


def test_wrong_key_is_refused():
    error = refused(TokenErrorReason.SIGNATURE_INVALID, issue(), key=b"x" * 32)
    assert "walwarden token issue" in error.message


def test_non_canonical_base64_is_malformed():
    # The last character of a 32-byte signature carries 2 unused bits; a token has one spelling.
    token = issue()
    last = token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(last) ^ 1]
    refused(TokenErrorReason.MALFORMED, token[:-1] + sibling)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "wwt2",
        "wwt2..",
        "wwt2.abc",
        "wwt3.abc.def",
        "WWT1.abc.def",
        "wwt2.abc.def.ghi",
        "wwt2.a+b.c/d",
        "wwt2.abc.def\x00",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "wwt2." + "a" * 9000 + ".b",
        "wwt2.YWJj.c2ln",  # well-formed base64, but a 3-byte signature
    ],
)
def test_malformed_strings_are_refused(token):
    refused(TokenErrorReason.MALFORMED, token)
    with pytest.raises(TokenError):
        token_id(token)


WELL_FORMED_CLAIMS = {**REQUEST, "iat": 1, "exp": 2, "jti": "x"}


@pytest.mark.parametrize(
    "claims",
    [
        "not an object",
        [1, 2],
        {"backup": "b"},
        {**WELL_FORMED_CLAIMS, "extra": 1},
        {**WELL_FORMED_CLAIMS, "exp": "2"},
        {**WELL_FORMED_CLAIMS, "exp": True},
    ],
)
def test_signed_but_malformed_claims_are_refused(claims):
    refused(TokenErrorReason.MALFORMED, signed_token(claims))


def test_payload_that_is_not_json_is_malformed():
    signed = "wwt2." + b64(b"\xff\xfe not json")
    token = f"{signed}.{b64(hmac.new(KEY, signed.encode(), hashlib.sha256).digest())}"
    refused(TokenErrorReason.MALFORMED, token)


def test_parse_unverified_reads_any_well_formed_token():
    claims = parse_unverified(issue_token(b"another-key-entirely", approval(), ttl_seconds=1, now=0))
    assert claims.expires_at == 1 and claims.expired(now=NOW) and claims.backup == REQUEST["backup"]


# -- issuing: argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, MAX_TTL_SECONDS + 1, 10**9])
def test_ttl_out_of_bounds_is_refused(ttl):
    with pytest.raises(ValueError, match="at most 30 days"):
        issue(ttl_seconds=ttl)


@pytest.mark.parametrize("ttl", [1.5, "900", True])
def test_ttl_must_be_whole_seconds(ttl):
    with pytest.raises(ValueError, match="integer number of seconds"):
        issue(ttl_seconds=ttl)


@pytest.mark.parametrize("ttl", [1, MAX_TTL_SECONDS])
def test_ttl_bounds_are_inclusive(ttl):
    assert verify(issue(ttl_seconds=ttl), now=NOW).expires_at == int(NOW) + ttl


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "inplace", "mode must be one of InPlace, Redirected"),
        ("sha256", "abc", "64 hexadecimal digits"),
        ("sha256", "g" * 64, "64 hexadecimal digits"),
        ("backup", "", "backup must name"),
        ("namespace", "", "namespace and request must name the RestoreRequest"),
        ("request", "", "namespace and request must name the RestoreRequest"),
        ("spec", "not-a-digest", "64 hexadecimal digits"),
    ],
)
def test_bad_arguments_are_refused_at_issue(field, value, message):
    with pytest.raises(ValueError, match=message):
        issue(**{field: value})


def test_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        issue_token(b"short \n", approval(), ttl_seconds=60)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        verify(issue(), key=b"")


# -- the command ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("600", 600),
        (" 15M ", 900),
        ("30d", 2592000),
    ],
)
def test_durations(text, seconds):
    assert token_cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "1.5h", "-5m", "1h30m", "15 minutes"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="not a duration"):
        token_cli.parse_duration(text)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="walwarden")
    token_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


RESTORE_FILE = """\
apiVersion: walwarden.io/v1alpha1
kind: RestoreRequest
metadata:
  name: back-to-nightly
  namespace: vault
spec:
  mode: InPlace
  source:
    backupRef:
      name: nightly
"""


def issue_argv(request_file, *key_args: str, **overrides: str) -> list[str]:
    values = {"request": str(request_file), "sha256": SHA, "ttl": "10m", **overrides}
    return ["token", "issue", *[part for name, value in values.items() for part in (f"--{name}", value)], *key_args]


def written(tmp_path, text: str = RESTORE_FILE):
    path = tmp_path / "restore.yaml"
    path.write_text(text)
    return path


def digest_of(text: str) -> str:
    return RestoreRequestSpec.model_validate(yaml.safe_load(text)["spec"]).approval_digest()


def test_issue_prints_only_the_token_approving_the_request_as_written(tmp_path, capsys):
    (tmp_path / "key").write_bytes(KEY + b"\n")
    assert run_cli(*issue_argv(written(tmp_path), "--key-file", str(tmp_path / "key"))) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n"
    expected = Approval("nightly", SHA, "InPlace", "vault", "back-to-nightly", digest_of(RESTORE_FILE))
    claims = verify_token(KEY, token, expected)
    assert claims.expires_at - claims.issued_at == 600
    assert claims.token_id in err and "vault/back-to-nightly" in err and KEY.decode() not in out + err


def test_the_spec_a_token_approves_is_the_one_the_api_server_stores_with_its_defaults(tmp_path):
    """The operator parses the stored object (defaults filled in) through the same model: the
    digest does not change with fields left to their defaults, nor with the token itself."""
    stored = RESTORE_FILE + "  dryRun: false\n  approvalToken: wwt2.x.y\n  encryptorSecrets: []\n"
    assert digest_of(stored) == digest_of(RESTORE_FILE)
    assert digest_of(RESTORE_FILE + "  strategy: Overwrite\n") != digest_of(RESTORE_FILE)


def test_issue_reads_the_key_from_the_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("APPROVAL_KEY", KEY.decode())
    overwrite = RESTORE_FILE + "  strategy: Overwrite\n"
    assert run_cli(*issue_argv(written(tmp_path, overwrite), "--key-env", "APPROVAL_KEY")) == 0
    claims = parse_unverified(capsys.readouterr().out)
    assert (claims.mode, claims.request, claims.spec) == ("InPlace", "back-to-nightly", digest_of(overwrite))


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (RESTORE_FILE, ("--key-env", "WALWARDEN_TEST_UNSET_VARIABLE"), "WALWARDEN_TEST_UNSET_VARIABLE is not set"),
        (RESTORE_FILE, ("--key-file", "/nonexistent/key"), "cannot read the key file /nonexistent/key"),
        (RESTORE_FILE, ("--key-env", "HOME", "--ttl", "31d"), "at most 30 days"),
        (RESTORE_FILE, ("--key-env", "HOME", "--sha256", "xyz"), "64 hexadecimal digits"),
        (RESTORE_FILE.replace("  namespace: vault\n", ""), ("--key-env", "HOME"), "give --namespace"),
        (RESTORE_FILE, ("--key-env", "HOME", "-n", "other"), "says namespace vault, --namespace says other"),
        (RESTORE_FILE.replace("RestoreRequest", "BackupRequest"), ("--key-env", "HOME"), "kind: RestoreRequest"),
        (RESTORE_FILE.replace("mode: InPlace", "mode: Sideways"), ("--key-env", "HOME"), "not a valid RestoreRequest"),
    ],
)
def test_issue_errors_are_one_sentence(tmp_path, text, extra, message, capsys):
    assert run_cli(*issue_argv(written(tmp_path, text)), *extra) == 1
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err


def test_bad_ttl_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run_cli(*issue_argv(written(tmp_path), "--key-env", "HOME", ttl="5 minutes"))
    assert exited.value.code == 2 and "not a duration" in capsys.readouterr().err


def test_a_token_of_the_retired_format_is_refused_with_what_to_do():
    error = refused(TokenErrorReason.RETIRED, "wwt1.eyJiYWNrdXAiOiJ4In0.c2ln")
    assert "walwarden token issue --request" in error.message


def test_inspect_prints_claims_and_says_they_are_unverified(capsys):
    token = issue_token(KEY, approval(), ttl_seconds=60, now=NOW)
    assert run_cli("token", "inspect", token) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert shown == {
        "verified": False,
        "tokenId": token_id(token),
        "backup": REQUEST["backup"],
        "sha256": SHA,
        "mode": "Redirected",
        "namespace": "vault-prod",
        "request": "vault-prod/restore-to-nightly",
        "spec": SPEC,
        "issuedAt": "2023-11-14T22:13:20Z",
        "expiresAt": "2023-11-14T22:14:20Z",
        "expired": True,
    }
    assert "without verifying" in err


def test_inspect_refuses_garbage(capsys):
    assert run_cli("token", "inspect", "hello") == 1
    assert "not a Walwarden approval token" in capsys.readouterr().err


class FakeCluster:
    """Stands in for token_cli.Cluster: the logic around its two reads."""

    def __init__(self, secrets=None, backups=None):
        self.secrets, self.backups = secrets or {}, backups or {}

    def secret_data(self, namespace, name):
        return self.secrets.get((namespace, name))

    def backup_request(self, namespace, name):
        return self.backups.get((namespace, name))


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("ops/approval", ("ops", "approval", "key")),
        ("ops/approval:hmac", ("ops", "approval", "hmac")),
    ],
)
def test_secret_refs(ref, parsed):
    assert token_cli.parse_secret_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["approval", "ops/", "/approval", "ops/approval:", "a/b/c", "ops/approval:x:y"])
def test_bad_secret_refs(ref):
    with pytest.raises(token_cli.TokenCliError, match="NAMESPACE/NAME"):
        token_cli.parse_secret_ref(ref)


def test_secret_key_is_the_bytes_of_the_text_the_operator_reads_and_missing_keys_are_named():
    cluster = FakeCluster(secrets={("ops", "approval"): {"key": "clé-" * 8, "other": "x"}})
    assert token_cli.secret_key(cluster, "ops/approval") == ("clé-" * 8).encode()
    with pytest.raises(token_cli.TokenCliError, match=r"has no key 'hmac' \(it has: key, other\)"):
        token_cli.secret_key(cluster, "ops/approval:hmac")
    with pytest.raises(token_cli.TokenCliError, match="no Secret missing in namespace ops"):
        token_cli.secret_key(cluster, "ops/missing")


def backup_body(phase: str, sha256: str | None = None) -> dict:
    status = {"phase": phase}
    if sha256:
        status["artifact"] = {"uri": "s3://b/a.dump", "manifestUri": "s3://b/a.json", "sha256": sha256, "sizeBytes": 10}
    return {"apiVersion": "walwarden.io/v1alpha1", "kind": "BackupRequest", "status": status}


def test_sha256_comes_from_a_succeeded_backup_request():
    cluster = FakeCluster(backups={("vault", "nightly"): backup_body("Succeeded", SHA)})
    assert token_cli.backup_sha256(cluster, "vault", "nightly") == SHA


@pytest.mark.parametrize(
    ("backups", "backup", "message"),
    [
        ({("vault", "nightly"): backup_body("Running")}, "nightly", "has not succeeded (phase Running)"),
        ({("vault", "nightly"): {"status": {}}}, "nightly", "has not succeeded (phase unset)"),
        ({}, "nightly", "no BackupRequest nightly in namespace vault"),
        ({}, "s3://bucket/a.dump", "--sha256 is required with an s3:// artifact"),
    ],
)
def test_sha256_lookup_fails_clearly(backups, backup, message):
    with pytest.raises(token_cli.TokenCliError, match=re.escape(message)):
        token_cli.backup_sha256(FakeCluster(backups=backups), "vault", backup)


# -- reading the cluster, through kube.api and kube.secrets, with a stand-in for the API server ------


class FakeCoreApi:
    def __init__(self, secrets: dict, error: Exception | None = None):
        self.secrets, self.error = secrets, error

    def read_namespaced_secret(self, name, namespace):
        from kubernetes.client.rest import ApiException

        if self.error:
            raise self.error
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        data = {key: base64.b64encode(value).decode() for key, value in self.secrets[(namespace, name)].items()}
        return types.SimpleNamespace(data=data)


class FakeCustomApi:
    def __init__(self, objects: dict):
        self.objects = objects

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.rest import ApiException

        if (group, version, plural, namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[(group, version, plural, namespace, name)]


@pytest.fixture
def api_server(monkeypatch):
    """Kube.connect(kubeconfig) answers with these stand-ins; returns the kubeconfigs it was given."""
    from walwarden.kube.api import Kube

    connected, server = [], types.SimpleNamespace(core=FakeCoreApi({}), custom=FakeCustomApi({}))

    def connect(kubeconfig=None):
        connected.append(kubeconfig)
        return Kube(core=server.core, apps=None, batch=None, coordination=None, custom=server.custom)

    monkeypatch.setattr(Kube, "connect", staticmethod(connect))
    server.connected = connected
    return server


def test_the_key_and_the_sha256_are_read_through_one_connection(api_server):
    api_server.core.secrets[("ops", "approval")] = {"key": KEY}
    api_server.custom.objects[("walwarden.io", "v1alpha1", "backuprequests", "vault", "nightly")] = backup_body(
        "Succeeded", SHA
    )
    cluster = token_cli.Cluster("/home/me/kubeconfig")
    assert token_cli.secret_key(cluster, "ops/approval") == KEY
    assert token_cli.backup_sha256(cluster, "vault", "nightly") == SHA
    assert api_server.connected == ["/home/me/kubeconfig"]


def test_a_missing_secret_and_backup_are_named(api_server):
    cluster = token_cli.Cluster()
    with pytest.raises(token_cli.TokenCliError, match="no Secret approval in namespace ops"):
        token_cli.secret_key(cluster, "ops/approval")
    with pytest.raises(token_cli.TokenCliError, match="no BackupRequest nightly in namespace vault"):
        token_cli.backup_sha256(cluster, "vault", "nightly")


def test_a_key_the_operator_could_not_read_is_refused(api_server):
    api_server.core.secrets[("ops", "approval")] = {"key": b"\x00\xff" * 16}
    with pytest.raises(token_cli.TokenCliError, match="not UTF-8 text: the operator"):
        token_cli.secret_key(token_cli.Cluster(), "ops/approval")


def test_what_the_api_server_refuses_is_one_sentence(api_server):
    from kubernetes.client.rest import ApiException

    api_server.core.error = ApiException(status=403, reason="Forbidden")
    with pytest.raises(token_cli.TokenCliError) as raised:
        token_cli.secret_key(token_cli.Cluster(), "ops/approval")
    assert str(raised.value) == (
        "cannot read the Secret ops/approval: the Kubernetes API server answered 403 "
        "Forbidden (may your kubeconfig's user read it?)"
    )


def test_without_a_cluster_the_error_says_so(monkeypatch):
    from kubernetes.config import ConfigException

    from walwarden.kube.api import Kube

    def connect(kubeconfig=None):
        raise ConfigException("Invalid kube-config file. No configuration found.")

    monkeypatch.setattr(Kube, "connect", staticmethod(connect))
    with pytest.raises(
        token_cli.TokenCliError, match="cannot read the Secret ops/approval: no Kubernetes cluster configured"
    ):
        token_cli.secret_key(token_cli.Cluster(), "ops/approval")
