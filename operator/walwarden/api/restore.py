"""RestoreRequest: restore a backup into the vault's database, in place or redirected (DESIGN §2, §3)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from walwarden.api.common import (
    AGE_COLUMN,
    DNS_SUBDOMAIN_PATTERN,
    IMMUTABLE_SPEC,
    CelRule,
    CrdInfo,
    EncryptorSecretRef,
    HttpUrlStr,
    ObjectName,
    PgIdentifier,
    PrinterColumn,
    RequestStatus,
    ResourceModel,
    SecretKey,
    SecretKeyRef,
    SecretRef,
    ServiceName,
    SpecModel,
    StatusModel,
    Storage,
    Timestamp,
    Topology,
    TrustedKeysRef,
    cel_validations,
    parse_timestamp,
    utcnow,
)

KIND = "RestoreRequest"
PLURAL = "restorerequests"
SINGULAR = "restorerequest"
SHORT_NAMES = ("wwrestore", "rsreq")


class RestorePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


class RestoreStep(StrEnum):
    """The steps of a restore, as status.steps names them; their order is restore/table.py's."""

    VALIDATE = "Validate"
    PLAN = "Plan"
    ACQUIRE_LOCK = "AcquireLock"
    PREFLIGHT = "Preflight"
    SAFETY_BACKUP = "SafetyBackup"
    BUILD = "Build"  # Switch and Redirected: the restored database built while the vault runs
    STAGE = "Stage"
    SCALE_DOWN = "ScaleDown"
    RESTORE = "Restore"
    SWITCH = "Switch"  # Switch: the restored database renamed into place
    RECONFIGURE = "Reconfigure"
    SCALE_UP = "ScaleUp"
    VERIFY = "Verify"
    ROLLBACK = "Rollback"
    DROP_PREVIOUS = "DropPrevious"  # Switch: the previous database, by spec.previousDatabase
    RELEASE_LOCK = "ReleaseLock"
    CHECK = "Check"  # Drill: the user's SQL checks against the scratch database
    DROP_SCRATCH = "DropScratch"  # Drill: the scratch database dropped, whatever happened


DRILL_STEPS = frozenset({RestoreStep.CHECK, RestoreStep.DROP_SCRATCH})


class RestoreMode(StrEnum):
    IN_PLACE = "InPlace"
    REDIRECTED = "Redirected"
    # Restore into a scratch database, check it, drop it: proof that the backup restores. The
    # vault is never touched (its table has no step that stops, repoints or restarts anything).
    DRILL = "Drill"


class RestoreStrategy(StrEnum):
    """How an InPlace restore replaces the database (a Redirected restore always builds first)."""

    SWITCH = "Switch"  # build a sibling database while the vault runs; the stop window only renames
    OVERWRITE = "Overwrite"  # pg_restore --clean into the live database, inside the stop window


class SecretBackend(StrEnum):
    KUBERNETES = "Kubernetes"
    AWS_SECRETS_MANAGER = "AWSSecretsManager"
    AZURE_KEY_VAULT = "AzureKeyVault"


class RollbackPolicy(StrEnum):
    AUTOMATIC = "Automatic"  # restore the safety backup when a failed restore modified the database
    MANUAL = "Manual"  # leave the database as it is; the message says how to restore it


class RolePolicy(StrEnum):
    """What a restore does about roles its backup's manifest records but the target server lacks."""

    REQUIRE = "Require"  # refuse in Preflight, naming each missing role
    CREATE_MISSING = "CreateMissing"  # create them before pg_restore (Build), drop them on rollback


class RemainingSessionsAction(StrEnum):
    WAIT = "Wait"
    TERMINATE = "Terminate"
    FAIL = "Fail"


# --- cross-field rules (CEL for the API server, the same checks in the validators below) ---

EXACTLY_ONE_SOURCE = CelRule(
    "has(self.backupRef) != has(self.artifact)",
    "spec.source needs exactly one of backupRef (the name of a BackupRequest) or artifact (an s3:// URI)",
)
TRUSTED_KEYS_NEED_ARTIFACT = CelRule(
    "!has(self.trustedKeys) || has(self.artifact)",
    "spec.source.trustedKeys applies to spec.source.artifact only: a backupRef is proven by its BackupRequest's "
    "own key; remove trustedKeys, or restore by artifact URI",
    field_path=".trustedKeys",
    reason="FieldValueForbidden",
)
ARTIFACT_NEEDS_STORAGE = CelRule(
    "!has(self.source.artifact) || has(self.storage)",
    "spec.source.artifact needs spec.storage.s3: the bucket, region and credentials to read the artifact with",
    field_path=".storage",
    reason="FieldValueRequired",
)
REDIRECTED_NEEDS_REDIRECT = CelRule(
    "self.mode != 'Redirected' || has(self.redirect)",
    "Redirected restores need spec.redirect: the new DB_HOST and environment of the db-info secrets",
    field_path=".redirect",
    reason="FieldValueRequired",
)
REDIRECTED_NEEDS_TARGET = CelRule(
    "self.mode != 'Redirected' || has(self.target)",
    "Redirected restores need spec.target: the Secret with the admin connection of the database to restore into",
    field_path=".target",
    reason="FieldValueRequired",
)
IN_PLACE_FORBIDS_REDIRECT = CelRule(
    "self.mode != 'InPlace' || !has(self.redirect)",
    "InPlace restores must not set spec.redirect: remove it, or use mode: Redirected to restore into another database",
    field_path=".redirect",
    reason="FieldValueForbidden",
)
STRATEGY_IS_IN_PLACE = CelRule(
    "self.mode == 'InPlace' || !has(self.strategy)",
    "spec.strategy applies to InPlace restores only: a Redirected restore always builds the new database "
    "while the vault runs; remove spec.strategy",
    field_path=".strategy",
    reason="FieldValueForbidden",
)
AZURE_KEY_VAULT_NEEDS_SETTINGS = CelRule(
    "!has(self.secretBackend) || self.secretBackend != 'AzureKeyVault' || has(self.azureKeyVault)",
    "secretBackend AzureKeyVault needs spec.redirect.azureKeyVault: the vault URL "
    "(https://<vault-name>.vault.azure.net) and, unless the operator has an Azure workload identity, "
    "credentialsSecretRef",
    field_path=".azureKeyVault",
    reason="FieldValueRequired",
)
ONE_LOGIN_PER_SERVICE = CelRule(
    "!has(self.credentials) || self.credentials.all(c, self.credentials.exists_one(d, d.service == c.service))",
    "spec.redirect.credentials names a service twice: give each database service one entry",
    field_path=".credentials",
)
AUTH_HEADER_NEEDS_HTTPS = CelRule(
    "!has(self.authHeaderSecretRef) || !has(self.accountsUrl) || self.accountsUrl.startsWith('https://')",
    "spec.verify.authHeaderSecretRef is sent to accountsUrl, which must then be https:// (its certificate is "
    "verified): over http:// the header would cross the network in cleartext. Use the wallet's https URL, or "
    "remove authHeaderSecretRef",
    field_path=".accountsUrl",
)
CREATE_MISSING_ROLES_NEEDS_A_BUILD = CelRule(
    "!has(self.target) || !has(self.target.roles) || self.target.roles != 'CreateMissing' || "
    "self.mode == 'Redirected' || !has(self.strategy) || self.strategy == 'Switch'",
    "spec.target.roles CreateMissing needs a restore that builds its database before the stop (Redirected, or "
    "InPlace with strategy Switch): with Overwrite, create the roles on the server by hand and use Require",
    field_path=".target.roles",
    reason="FieldValueForbidden",
)
# Names Walwarden makes on a target server for a restore of its own: a Switch's sibling
# (<db>_walwarden_<uid8>) and previous database (<db>_pre_restore_...), a drill's staging database
# (walwarden_drill_new_<uid8>). A request may not take one as its target: a drill made under
# another restore's predictable name would leave that restore's switch in a state it does not know.
TARGET_NAME_NOT_RESERVED = CelRule(
    "!has(self.database) || !(self.database.matches('_walwarden_[0-9a-f]{8}$') || "
    "self.database.contains('_pre_restore_') || self.database.startsWith('walwarden_'))",
    "spec.target.database is a name Walwarden reserves for its own databases (<db>_walwarden_<uid8>, "
    "<db>_pre_restore_..., walwarden_...): choose another name",
    field_path=".database",
    reason="FieldValueForbidden",
)


def reserved_database_name(name: str) -> bool:
    """TARGET_NAME_NOT_RESERVED, in Python."""
    return bool(re.search(r"_walwarden_[0-9a-f]{8}$", name)) or "_pre_restore_" in name or name.startswith("walwarden_")


DRILL_NEEDS_TARGET = CelRule(
    "self.mode != 'Drill' || has(self.target)",
    "Drill restores need spec.target: the Secret with the admin connection of the server the scratch database "
    "is made on (the vault's own server is fine: the drill restores under its own name)",
    field_path=".target",
    reason="FieldValueRequired",
)
DRILL_TOUCHES_NOTHING = CelRule(
    "self.mode != 'Drill' || (!has(self.redirect) && (!has(self.approvalToken) || has(self.source.artifact)) && "
    "!self.stopServicesFirst && (!has(self.safetyBackup) || !self.safetyBackup))",
    "a Drill never touches the vault: it needs no spec.redirect, stopServicesFirst or safetyBackup, and an "
    "approvalToken only to drill an artifact by URI; remove them (to restore for real, use mode InPlace or "
    "Redirected)",
    reason="FieldValueForbidden",
)
DRILL_SETTINGS_NEED_DRILL = CelRule(
    "!has(self.drill) || self.mode == 'Drill'",
    "spec.drill applies to mode Drill only: remove it, or set mode: Drill",
    field_path=".drill",
    reason="FieldValueForbidden",
)
ONE_NAME_PER_CHECK = CelRule(
    "!has(self.checks) || self.checks.all(c, self.checks.exists_one(d, d.name == c.name))",
    "spec.drill.checks names a check twice: give each check its own name",
    field_path=".checks",
)
PREVIOUS_DATABASE_NEEDS_SWITCH = CelRule(
    "!has(self.previousDatabase) || (self.mode == 'InPlace' && (!has(self.strategy) || self.strategy == 'Switch'))",
    "spec.previousDatabase applies to InPlace restores with strategy Switch only (the others keep no previous "
    "database); remove it",
    field_path=".previousDatabase",
    reason="FieldValueForbidden",
)


# --- spec ---------------------------------------------------------------------------------


class BackupRef(SpecModel):
    """A BackupRequest in the namespace of the restore."""

    name: ObjectName = Field(description="Name of a Succeeded BackupRequest in the namespace of the restore.")


class RestoreSource(SpecModel):
    """The backup to restore: exactly one of backupRef or artifact."""

    model_config = ConfigDict(json_schema_extra=cel_validations(EXACTLY_ONE_SOURCE, TRUSTED_KEYS_NEED_ARTIFACT))

    backup_ref: BackupRef | None = Field(None, description="A BackupRequest whose artifact is restored.")
    artifact: str | None = Field(
        None,
        max_length=2048,
        pattern=r"^s3://[^/]+/.+",
        description=(
            "s3:// URI of an artifact whose manifest sits beside it (a BackupRequest's status.artifact.uri); "
            "needs spec.storage. The way to restore a backup of another namespace or cluster."
        ),
    )
    trusted_keys: TrustedKeysRef | None = Field(
        None,
        description=(
            "Artifact only: the Ed25519 public keys this environment trusts to sign manifests' origin. When "
            "set (or the operator has WALWARDEN_TRUSTED_KEYS_CONFIG_MAP), the manifest must be signed by one "
            "of them, or the restore is refused before anything is touched. Unset and no operator default: "
            "the origin is not checked."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> RestoreSource:
        EXACTLY_ONE_SOURCE.require((self.backup_ref is None) != (self.artifact is None))
        TRUSTED_KEYS_NEED_ARTIFACT.require(self.trusted_keys is None or self.artifact is not None)
        return self

    @property
    def label(self) -> str:
        """What is restored, as people name it: the BackupRequest's name or the artifact's URI."""
        return self.backup_ref.name if self.backup_ref else str(self.artifact)


class RestoreTarget(SpecModel):
    """The database server to restore into."""

    model_config = ConfigDict(json_schema_extra=cel_validations(TARGET_NAME_NOT_RESERVED))

    secret_ref: SecretRef = Field(
        description=(
            "Secret with the admin connection: keys host, port, user, password, and optional sslmode. "
            "Its values are never logged nor copied into status, events or Job arguments."
        )
    )
    database: PgIdentifier | None = Field(None, description="Database to restore into. Unset: the backup's database.")
    roles: RolePolicy = Field(
        RolePolicy.REQUIRE,
        description=(
            "The roles the backup records (owners of its objects, grantees of its privileges and what they are "
            "members of) that this server lacks. Require: the restore is refused in Preflight, naming each "
            "one. CreateMissing: they are created before pg_restore, with their memberships, by a restore user "
            "that is a superuser or has CREATEROLE (a missing superuser role is refused); a LOGIN role gets a "
            "password only when it is a database service's DB_USER (its DB_PASSWORD), the others none. A "
            "rollback drops the roles this restore created, never one that was there."
        ),
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> RestoreTarget:
        TARGET_NAME_NOT_RESERVED.require(self.database is None or not reserved_database_name(self.database))
        return self


class AwsSecretsManager(SpecModel):
    """Where the db-info secrets live in AWS Secrets Manager."""

    region: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="Region. Unset: the operator's ambient region.",
    )
    endpoint: HttpUrlStr | None = Field(None, description="Endpoint URL, for VPC endpoints or local test servers.")


class AzureKeyVault(SpecModel):
    """Where the db-info secrets live in Azure Key Vault, and the identity the operator uses there.

    Key Vault secret names allow only letters, digits and dashes: the db-info secret
    <environment>.<namespace>.<service>.db-info is the Key Vault secret of that name with every
    dot replaced by a dash; its synced Kubernetes copy keeps the dotted name."""

    vault_url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$",
        description="The vault's URL, https://<vault-name>.vault.azure.net (its Overview page: Vault URI).",
    )
    credentials_secret_ref: SecretRef | None = Field(
        None,
        description=(
            "Secret with a service principal that may get and set the db-info secrets: keys tenantId, "
            "clientId and clientSecret. Unset: the operator's ambient Azure identity (workload identity, "
            "managed identity or the AZURE_* environment). Its values are never logged nor copied into "
            "status, events or Job arguments."
        ),
    )
    authority_host: HttpUrlStr | None = Field(
        None,
        description=(
            "Microsoft Entra ID authority of the service principal, for sovereign clouds (e.g. "
            "https://login.microsoftonline.us). Unset: the public cloud's (or AZURE_AUTHORITY_HOST)."
        ),
    )


# The labels with which whoever may write Secrets in a namespace lets its requests use one: a
# requester may name any Secret there, but can neither read nor label it.
RESTORE_CREDENTIALS_LABEL = "walwarden.io/restore-credentials"
VERIFY_HEADER_LABEL = "walwarden.io/verify-header"
OPT_IN_VALUE = "true"


class ServiceCredentials(SpecModel):
    """The login one database service uses in the new environment, from a Secret there: written
    into its db-info secret as DB_USER and DB_PASSWORD by the repoint (and put back on rollback)."""

    service: ServiceName = Field(description="The database service (of spec.topology) whose login this is.")
    secret_ref: SecretRef = Field(
        description=(
            "Secret in the namespace of the request holding the login. It must carry the label "
            f'{RESTORE_CREDENTIALS_LABEL}: "{OPT_IN_VALUE}" (set by whoever may write Secrets there), or the '
            "restore is refused before anything stops."
        )
    )
    user_key: SecretKey = Field("DB_USER", description="Key of the Secret holding the user name.")
    password_key: SecretKey = Field("DB_PASSWORD", description="Key of the Secret holding the password.")


class Redirect(SpecModel):
    """Where the services are repointed after a Redirected restore."""

    model_config = ConfigDict(json_schema_extra=cel_validations(AZURE_KEY_VAULT_NEEDS_SETTINGS, ONE_LOGIN_PER_SERVICE))

    db_host: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9.:-]+$",
        description=("The new DB_HOST written into every db-info secret: host name or IP address of the new database."),
    )
    db_port: int | None = Field(None, ge=1, le=65535, description="New database port. Unset: keep the current one.")
    db_name: PgIdentifier | None = Field(None, description="New database name. Unset: keep the current one.")
    environment: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description=(
            "The <environment> part of the db-info secret names, <environment>.<namespace>.<service>.db-info."
        ),
    )
    credentials: list[ServiceCredentials] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "New DB_USER and DB_PASSWORD per database service, from Secrets of the target environment (never "
            f'literal values) labelled {RESTORE_CREDENTIALS_LABEL}: "{OPT_IN_VALUE}". Services not named keep '
            "their login. Preflight tries every service's login against the new host before anything stops."
        ),
    )
    secret_backend: SecretBackend | None = Field(
        None,
        description=(
            "Where the db-info secrets are patched: Kubernetes Secrets, AWS Secrets Manager or Azure Key "
            "Vault (both synced into the cluster). Unset: the operator's default (Kubernetes unless configured)."
        ),
    )
    aws: AwsSecretsManager | None = Field(
        None, description="AWS Secrets Manager settings, for secretBackend AWSSecretsManager."
    )
    azure_key_vault: AzureKeyVault | None = Field(
        None, description="Azure Key Vault settings, required for secretBackend AzureKeyVault."
    )

    @model_validator(mode="after")
    def _backend_settings(self) -> Redirect:
        AZURE_KEY_VAULT_NEEDS_SETTINGS.require(
            self.secret_backend != SecretBackend.AZURE_KEY_VAULT or self.azure_key_vault is not None
        )
        services = [entry.service for entry in self.credentials]
        ONE_LOGIN_PER_SERVICE.require(len(services) == len(set(services)))
        return self

    def credentials_of(self, service: str) -> ServiceCredentials | None:
        return next((entry for entry in self.credentials if entry.service == service), None)


class Verify(SpecModel):
    """How the restored vault is checked before the restore counts as Succeeded."""

    model_config = ConfigDict(json_schema_extra=cel_validations(AUTH_HEADER_NEEDS_HTTPS))

    health_url: HttpUrlStr | None = Field(
        None, description="Wallet health URL (must answer 200). Unset: not checked, and Verify says so in its message."
    )
    accounts_url: HttpUrlStr | None = Field(
        None,
        description="URL that must answer 200 with accounts, e.g. the wallet's /api/v2/accounts. Unset: not "
        "checked, and Verify says so in its message.",
    )
    auth_header_secret_ref: SecretKeyRef | None = Field(
        None,
        description=(
            "Secret key whose value is sent as the Authorization header to the accounts URL, which must then be "
            "https:// (its certificate verified). The Secret must carry the label "
            f'{VERIFY_HEADER_LABEL}: "{OPT_IN_VALUE}" (set by whoever may write Secrets there), or the restore is '
            "refused before anything stops."
        ),
    )
    timeout_seconds: int = Field(
        300,
        ge=1,
        le=3600,
        description="How long the health and accounts URLs may take to answer once every service is Ready.",
    )
    ready_timeout_seconds: int = Field(
        600,
        ge=10,
        le=86400,
        description=(
            "How long ScaleUp waits for every service to be Ready once they were started on the restored data. "
            "After it, rollbackPolicy Automatic rolls back (secrets or databases switched back, the services "
            "started on the original) and the message names each service that did not come up and why; "
            "Manual keeps waiting, with the ServicesNotReady condition raised."
        ),
    )
    compare_row_counts: bool = Field(True, description="Compare table row counts with the manifest, when it has them.")

    @model_validator(mode="after")
    def _auth_header_over_https(self) -> Verify:
        AUTH_HEADER_NEEDS_HTTPS.require(
            self.auth_header_secret_ref is None or self.accounts_url is None or self.accounts_url.startswith("https://")
        )
        return self


class SessionPolicy(SpecModel):
    """What to do with application sessions still connected to the target database after scale-down."""

    on_remaining: RemainingSessionsAction = Field(
        RemainingSessionsAction.TERMINATE,
        description="Wait for them to end, Terminate them (pg_terminate_backend), or Fail the restore.",
    )
    wait_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="How long to wait for sessions to end before acting (Wait fails after it).",
    )


class PreviousDatabase(SpecModel):
    """What becomes of the database a Switch restore replaced. It holds the history the restore
    rolled back (everything written after the backup), so it is kept unless you choose otherwise;
    it never accepts connections, and it is never dropped before Verify succeeded."""

    drop_after_seconds: int | None = Field(
        None,
        ge=0,
        le=10 * 365 * 24 * 3600,
        description=(
            "Drop the previous database this many seconds after Verify succeeded (0: at once). "
            "Unset: kept until you drop it (its name is in status.previousDatabase)."
        ),
    )


class SqlCheck(SpecModel):
    """A query run against the restored scratch database, and the answer it must give."""

    name: str = Field(
        min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Name of the check."
    )
    sql: str = Field(
        min_length=1,
        max_length=8192,
        description=(
            "One SQL statement returning one row (its first column is compared), run in a read-only "
            "transaction on the scratch database, as a login that may only read it, e.g. "
            "SELECT count(*) > 0 FROM accounts."
        ),
    )
    expected: str = Field(
        max_length=1024,
        description="The value as PostgreSQL prints it (psql -At): t or f for booleans, 42, NULL for a null.",
    )


# A container image reference: [registry[:port]/]path[:tag][@digest], as the kubelet pulls it.
IMAGE_PATTERN = (
    r"^[a-z0-9]+([._-]{1,2}[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]{1,2}[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
# Kubernetes resource quantities, e.g. 250m, 1, 512Mi, 2Gi.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


class CheckEnv(SpecModel):
    """A literal environment variable of the check Job. Never from a Secret: the Job is run by the
    operator for the request's author, and may see only what the drill made for it."""

    name: str = Field(
        min_length=1,
        max_length=128,
        # PG* is the reading login's (envFrom), so a check always connects as the drill made it.
        pattern=r"^([A-OQ-Za-z_][A-Za-z0-9_]*|P([A-FH-Za-z0-9_][A-Za-z0-9_]*)?)$",
        description="Variable name (not starting with PG: the libpq variables are the reading login's).",
    )
    value: str = Field("", max_length=4096, description="Literal value.")


class CheckResources(SpecModel):
    """CPU and memory of the check Job's container (requests and limits alike)."""

    cpu: str = Field("250m", max_length=16, pattern=QUANTITY_PATTERN, description="CPU, e.g. 250m or 1.")
    memory: str = Field("256Mi", max_length=16, pattern=QUANTITY_PATTERN, description="Memory, e.g. 256Mi.")


class DrillJob(SpecModel):
    """A check of your own: one container Walwarden runs once the SQL checks passed, and that must
    exit 0. Walwarden builds the Job itself, hardened as its own runner Jobs (non-root, read-only
    root filesystem, no privilege escalation, every capability dropped, no service-account token, no
    volumes but an empty /tmp), so a drill can never run a pod with more rights than that, whoever
    asks for it. The container gets the scratch database's connection, as the drill's reading
    login, in the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE) from
    a Secret made for the drill (envFrom), so `psql -c '...'` or any libpq client connects as it is.
    Its output stays in its pod's log (kubectl logs): none of it is copied into status or Events."""

    image: str = Field(
        min_length=1, max_length=512, pattern=IMAGE_PATTERN, description="Container image, e.g. postgres:17."
    )
    command: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1, max_length=64, description="The command (entrypoint) and its first arguments."
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="Further arguments."
    )
    env: list[CheckEnv] = Field(default_factory=list, max_length=64, description="Literal environment variables.")
    resources: CheckResources = Field(default_factory=CheckResources, description="CPU and memory.")
    active_deadline_seconds: int = Field(
        600, ge=1, le=86400, description="How long the Job may run before the check counts as failed."
    )


class DrillSettings(SpecModel):
    """What a drill checks beyond the artifact's sha256 and pg_restore --exit-on-error, and row
    counts against the manifest (always checked)."""

    model_config = ConfigDict(json_schema_extra=cel_validations(ONE_NAME_PER_CHECK))

    database: PgIdentifier | None = Field(
        None, description="Which database of the backup to restore. Unset: its first (usually its only one)."
    )
    checks: list[SqlCheck] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "SQL checks, run in order as a login that may only read the scratch database (created for the "
            "drill, dropped after it)."
        ),
    )
    statement_timeout_seconds: int = Field(
        60, ge=1, le=3600, description="How long each check may run before it counts as failed."
    )
    checks_time_budget_seconds: int = Field(
        600,
        ge=1,
        le=3600,
        description=(
            "How long all the SQL checks together may run: each gets at most what is left of it, and the checks "
            "left when it is spent fail unrun."
        ),
    )
    job: DrillJob | None = Field(None, description="A Job of your own that must succeed against the scratch database.")

    @model_validator(mode="after")
    def _unique_names(self) -> DrillSettings:
        names = [check.name for check in self.checks]
        ONE_NAME_PER_CHECK.require(len(names) == len(set(names)))
        return self


class RestoreRequestSpec(SpecModel):
    """What to restore, where to, and how to check it."""

    model_config = ConfigDict(
        json_schema_extra=cel_validations(
            IMMUTABLE_SPEC,
            ARTIFACT_NEEDS_STORAGE,
            REDIRECTED_NEEDS_REDIRECT,
            REDIRECTED_NEEDS_TARGET,
            IN_PLACE_FORBIDS_REDIRECT,
            STRATEGY_IS_IN_PLACE,
            PREVIOUS_DATABASE_NEEDS_SWITCH,
            CREATE_MISSING_ROLES_NEEDS_A_BUILD,
            DRILL_NEEDS_TARGET,
            DRILL_TOUCHES_NOTHING,
            DRILL_SETTINGS_NEED_DRILL,
        )
    )

    source: RestoreSource = Field(description="The backup to restore: exactly one of backupRef or artifact.")
    mode: RestoreMode = Field(
        description=(
            "InPlace: the vault's database is replaced by the backup's (see strategy). Redirected: "
            "restore into another database while the vault runs, then repoint the db-info secrets "
            "to it; the original database is untouched, so rollback is a secret switch. Drill: restore into a "
            "scratch database (spec.target.database, default <db>_drill), check it (row counts, spec.drill.checks) "
            "and drop it; no service is stopped, repointed or restarted, and no approval token is needed."
        )
    )
    strategy: RestoreStrategy | None = Field(
        None,
        description=(
            "InPlace only. Switch (unset): the backup is restored into a new database on the same server "
            "while the vault runs; inside the stop window the current database is renamed aside "
            "(<db>_pre_restore_<time>, kept) and the new one renamed into place, and rollback renames "
            "back. Needs a restore user that may create databases and owns the target. Overwrite: "
            "pg_restore --clean --if-exists into the live database inside the stop window, with a "
            "safety backup to roll back to."
        ),
    )
    stop_services_first: bool = Field(
        False,
        description=(
            "Stop the services before the restored database is built, not after (for corruption that "
            "keeps spreading while the vault runs). The downtime then includes pg_restore."
        ),
    )
    previous_database: PreviousDatabase | None = Field(
        None,
        description="Switch only: what becomes of the replaced database. Unset: kept until you drop it.",
    )
    target: RestoreTarget | None = Field(
        None,
        description="Database to restore into. Required for Redirected; InPlace defaults to the backup's.",
    )
    storage: Storage | None = Field(None, description="Where the artifact lives; required with source.artifact.")
    redirect: Redirect | None = Field(None, description="Where to repoint the services; required for Redirected only.")
    verify: Verify = Field(Verify(), description="How the restored vault is checked.")
    safety_backup: bool | None = Field(
        None,
        description=(
            "Dump the target before overwriting it, so a failed restore can be rolled back. "
            "Unset: true for InPlace, false for Redirected."
        ),
    )
    approval_token: str | None = Field(
        None,
        max_length=4096,
        description=(
            "Single-use token from `walwarden token issue`; required when the operator runs with approvals on."
        ),
    )
    dry_run: bool = Field(False, description="Compute and publish the plan in status.plan, change nothing.")
    drill: DrillSettings | None = Field(None, description="Drill only: the checks run on the scratch database.")
    encryptor_secrets: list[EncryptorSecretRef] = Field(
        default=[],
        max_length=16,
        description=(
            "The target environment's Encryptor Master Password (EMP) Secrets; their fingerprints "
            "must match the backup's manifest, or the restore stops in Preflight."
        ),
    )
    allow_repeat: bool = Field(
        False,
        description=(
            "A restore of the same backup, in the same mode, into the same server and database as one that "
            "already succeeded in this namespace is refused (a RestoreRequest pruned from git and synced back "
            "would otherwise stop the vault and throw away every write since). true: run it anyway."
        ),
    )
    rollback_policy: RollbackPolicy = Field(
        RollbackPolicy.AUTOMATIC,
        description=(
            "Automatic: services not Ready within spec.verify.readyTimeoutSeconds of being started on the "
            "restored data roll the restore back, and after a failure that modified the database (Overwrite) "
            "the safety backup is restored into it. Manual: ScaleUp keeps waiting (loudly), and a modified "
            "database is left as it is, with how to restore it. Secrets, renamed databases and replica "
            "counts are always put back after a failure."
        ),
    )
    session_policy: SessionPolicy = Field(
        SessionPolicy(), description="What to do with database sessions left after scale-down."
    )
    topology: Topology | None = Field(
        None, description="Overrides the built-in service topology. Unset: the default profile."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> RestoreRequestSpec:
        ARTIFACT_NEEDS_STORAGE.require(self.source.artifact is None or self.storage is not None)
        redirected = self.mode == RestoreMode.REDIRECTED
        REDIRECTED_NEEDS_REDIRECT.require(not redirected or self.redirect is not None)
        REDIRECTED_NEEDS_TARGET.require(not redirected or self.target is not None)
        IN_PLACE_FORBIDS_REDIRECT.require(self.mode != RestoreMode.IN_PLACE or self.redirect is None)
        STRATEGY_IS_IN_PLACE.require(self.mode == RestoreMode.IN_PLACE or self.strategy is None)
        PREVIOUS_DATABASE_NEEDS_SWITCH.require(
            self.previous_database is None or self.effective_strategy == RestoreStrategy.SWITCH
        )
        CREATE_MISSING_ROLES_NEEDS_A_BUILD.require(
            self.role_policy == RolePolicy.REQUIRE or self.effective_strategy != RestoreStrategy.OVERWRITE
        )
        drill = self.mode == RestoreMode.DRILL
        DRILL_NEEDS_TARGET.require(not drill or self.target is not None)
        DRILL_TOUCHES_NOTHING.require(
            not drill
            or (
                self.redirect is None
                and (self.approval_token is None or self.source.artifact is not None)
                and not self.stop_services_first
                and not self.safety_backup
            )
        )
        DRILL_SETTINGS_NEED_DRILL.require(self.drill is None or drill)
        return self

    @property
    def is_drill(self) -> bool:
        return self.mode == RestoreMode.DRILL

    def approval_digest(self) -> str:
        """The sha256 an approval token binds: every field of the spec but the token itself and
        dryRun (a dry run carrying the token previews the very restore it approves), defaults filled
        in, as sorted-key compact JSON. The CLI reading the YAML and the operator reading the stored
        object (with the API server's defaults) both parse it through this model, so they compute
        the same digest; any other target, strategy, redirect or Verify URL gives another."""
        content = self.model_dump(mode="json", by_alias=True, exclude={"approval_token", "dry_run"})
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def drill_settings(self) -> DrillSettings:
        return self.drill or DrillSettings()

    @property
    def effective_strategy(self) -> RestoreStrategy | None:
        """The InPlace strategy that runs (Switch when unset); None for Redirected."""
        if self.mode != RestoreMode.IN_PLACE:
            return None
        return self.strategy or RestoreStrategy.SWITCH

    @property
    def role_policy(self) -> RolePolicy:
        """spec.target.roles, Require without a target."""
        return self.target.roles if self.target else RolePolicy.REQUIRE

    def wants_safety_backup(self) -> bool:
        """safetyBackup, or the default when unset: only Overwrite destroys the current database,
        so only it dumps it first (Switch keeps it, renamed; Redirected never writes to it)."""
        if self.safety_backup is not None:
            return self.safety_backup
        return self.effective_strategy == RestoreStrategy.OVERWRITE


# --- status -------------------------------------------------------------------------------


class DataLossWindow(StatusModel):
    """History lost by the restore: everything after the backup was taken."""

    backup_time: Timestamp | None = Field(None, description="When the restored backup was taken (RFC 3339).")
    restore_time: Timestamp | None = Field(None, description="When the restore ran or is planned (RFC 3339).")
    seconds: float | None = Field(None, description="Seconds of history lost, from backupTime to restoreTime.")
    kept_in: str | None = Field(
        None,
        description=(
            "Where that history is kept instead of lost: Switch keeps the replaced database (named here), "
            "Redirected leaves the original database untouched."
        ),
    )


class PlannedService(StatusModel):
    """A service the restore stops and starts again."""

    name: ServiceName = Field(description="Deployment or StatefulSet name.")
    tier: int = Field(ge=1, description="Stop tier, 1 stops first (and starts last).")
    replicas: int = Field(ge=0, description="Replicas now, restored after the restore.")


class RestorePlan(StatusModel):
    """What the restore would do (dry run) or is doing."""

    strategy: str | None = Field(None, description="Switch or Overwrite (InPlace); Redirected builds first too.")
    steps: list[str] = Field(default_factory=list, description="Steps in order.")
    before_stop: list[str] = Field(default_factory=list, description="Steps that run while the vault still runs.")
    stop_window: list[str] = Field(
        default_factory=list, description="Steps that run while the services are stopped (the downtime)."
    )
    downtime: list[str] = Field(default_factory=list, description="What the downtime is made of, in order.")
    restored_database: str | None = Field(None, description="The database the backup is restored into.")
    previous_database: str | None = Field(None, description="Switch: the name the replaced database will keep.")
    space_bytes: int | None = Field(
        None,
        description=(
            "Switch and Redirected: about what the restored database takes on its server (the current "
            "database's size; the dump is smaller than what it restores)."
        ),
    )
    services: list[PlannedService] = Field(default_factory=list, description="Services stopped and started again.")
    secrets: list[str] = Field(default_factory=list, description="db-info secrets that would be repointed.")
    data_loss_window: DataLossWindow | None = Field(None, description="History that would be lost.")


class PreviousDatabaseStatus(StatusModel):
    """The database a Switch restore replaced: kept (never accepting connections) until dropped."""

    name: str = Field(description="Its name on the target server, <db>_pre_restore_<time>.")
    drop_at: Timestamp | None = Field(None, description="When it will be dropped (spec.previousDatabase); unset: kept.")
    dropped_at: Timestamp | None = Field(None, description="When it was dropped.")


class OriginStatus(StatusModel):
    """Which trusted key signed the restored artifact's manifest."""

    key_id: str = Field(description="Id of the Ed25519 key that signed the manifest (ed25519:<hex>).")
    trusted_keys: str = Field(description="The ConfigMap or Secret that trusts it: <Kind> <namespace>/<name>.")
    entry: str = Field(description="The entry of its data holding that public key.")

    def describe(self) -> str:
        return f"signed by {self.key_id} ({self.trusted_keys}, entry {self.entry})"


class CheckResult(StatusModel):
    """How one of spec.drill.checks answered."""

    name: str = Field(description="The check's name.")
    passed: bool = Field(description="Whether it answered what was expected.")
    message: str = Field(description="What it answered, or why it could not run.")


class DrillStatus(StatusModel):
    """A drill's proof: what was restored where, what was checked, and that the copy is gone."""

    scratch_database: str | None = Field(None, description="The scratch database the backup was restored into.")
    row_counts_checked: int | None = Field(None, description="Tables whose row counts matched the manifest.")
    checks: list[CheckResult] = Field(default_factory=list, description="spec.drill.checks, as they answered.")
    job: str | None = Field(None, description="The Job of spec.drill.job, once started.")
    dropped_at: Timestamp | None = Field(None, description="When the scratch database was dropped.")


class RestoreRequestStatus(RequestStatus):
    """What the operator observed and did; written by the operator only."""

    phase: RestorePhase | None = Field(None, description="Pending, Running, Succeeded, Failed or RolledBack.")
    strategy: str | None = Field(None, description="How the database was replaced: Switch, Overwrite or Redirected.")
    source: str | None = Field(
        None, description="The backup restored: the BackupRequest's name or the artifact's s3:// URI."
    )
    origin: OriginStatus | None = Field(
        None, description="Artifact restores with trusted keys: the trusted key that signed the manifest."
    )
    restored_database: str | None = Field(
        None, description="Switch and Redirected: the database the backup was restored into, before the stop."
    )
    restored_database_created: bool | None = Field(
        None, description="Redirected: whether the restore created its database (then a rollback drops it)."
    )
    created_roles: list[str] | None = Field(
        None,
        description=(
            "spec.target.roles CreateMissing: the roles this restore created on the target server (a rollback "
            "drops them, after the restored database)."
        ),
    )
    switched_at: Timestamp | None = Field(
        None, description="Switch: when the restored database was renamed into place (RFC 3339)."
    )
    previous_database: PreviousDatabaseStatus | None = Field(
        None, description="Switch: the replaced database, kept with the history after the backup."
    )
    switched_back: str | None = Field(
        None, description="Switch, after a failure: what the switch back did (the vault's database is its own again)."
    )
    downtime_seconds: float | None = Field(None, description="Seconds the services were stopped.")
    scaled_down_at: Timestamp | None = Field(None, description="When the first service was stopped (RFC 3339).")
    database_modified: bool | None = Field(
        None, description="True once the restore Job was told to go: from then on, rollback means a restore."
    )
    sessions_seen_at: Timestamp | None = Field(
        None, description="When application sessions were first seen after scale-down (RFC 3339)."
    )
    secrets_repointed: bool | None = Field(None, description="True once the db-info secrets were patched.")
    safety_backup: str | None = Field(None, description="Name of the BackupRequest taken of the target first.")
    approval_token_id: str | None = Field(None, description="Id of the approval token this request consumed.")
    restore_job: str | None = Field(
        None, description="Name of the Job that runs pg_restore (started in step Stage, before the services stop)."
    )
    restore_go_at: Timestamp | None = Field(
        None, description="When the restore Job was told to go, the services stopped (RFC 3339)."
    )
    staged_job_called_off: bool | None = Field(
        None, description="True once a staged restore Job that never got its go was told to stop."
    )
    services_ready_at: Timestamp | None = Field(
        None, description="When every service stopped by the restore was Ready again (RFC 3339)."
    )
    data_loss_window: DataLossWindow | None = Field(
        None, description="History lost: from the backup's time to the restore."
    )
    plan: RestorePlan | None = Field(None, description="What the restore does; the whole result of a dry run.")
    drill: DrillStatus | None = Field(None, description="Drill: the scratch database and what was checked.")

    def _set_phase(self, phase: str) -> None:
        self.phase = RestorePhase(phase)

    def record_downtime(self, now: datetime | None = None) -> None:
        """Seconds from the first service stopped to now (every service Ready again)."""
        if self.scaled_down_at:
            self.downtime_seconds = round(((now or utcnow()) - parse_timestamp(self.scaled_down_at)).total_seconds(), 1)


class RestoreRequest(ResourceModel):
    """A one-shot request to restore a backup into the vault's database."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        description=(
            "RestoreRequest restores a backup into the Institutional Vault's database, in place or "
            "redirected to another database: it stops the services in order, restores, repoints "
            "the db-info secrets, starts the services and verifies the vault. One-shot: the spec "
            "is immutable and a finished request never runs again."
        ),
        printer_columns=(
            PrinterColumn("Phase", ".status.phase", description="Pending, Running, Succeeded, Failed or RolledBack."),
            PrinterColumn("Mode", ".spec.mode", description="InPlace, Redirected or Drill."),
            PrinterColumn("Strategy", ".status.strategy", description="Switch, Overwrite or Redirected.", priority=1),
            PrinterColumn("Source", ".status.source", description="The BackupRequest or s3:// artifact restored."),
            PrinterColumn("Step", ".status.currentStep", description="Step running now, or the last one run."),
            PrinterColumn("Downtime", ".status.downtimeSeconds", "number", "Seconds the services were stopped."),
            PrinterColumn("Message", ".status.message", description="Current state.", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["RestoreRequest"] = Field("RestoreRequest", description="RestoreRequest.")
    spec: RestoreRequestSpec = Field(description="What to restore, where to, and how.")
    status: RestoreRequestStatus | None = Field(None, description="Progress and result, written by the operator.")
