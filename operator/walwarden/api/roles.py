"""The roles a backup's databases need (issue 11): what the manifest records of each, and what a
restore reads to check the target server and, by spec.target.roles, create the missing ones.

Shared by the runner (postgres/roles.py reads them from the server being backed up), the manifest
(storage/manifest.py) and the restore: a model of its own at the bottom of the layers. Only the
attributes a managed server (RDS, Azure) lets a CREATEROLE user give are recorded; SUPERUSER is
recorded only so a restore can refuse clearly when such a role is missing. Never a password.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A role name as PostgreSQL allows it (anything but NUL, at most 63 bytes), minus control
# characters: a manifest is read from wherever an artifact URI points, and a name in it reaches SQL
# (always through sql.Identifier) and messages.
RoleName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _RoleModel(BaseModel):
    # As the manifest's own models: camelCase, unknown keys are errors (they would escape the signature).
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class RoleMembership(_RoleModel):
    role: RoleName = Field(description="the role this one is a member of")
    admin: bool = Field(False, description="WITH ADMIN OPTION")


class DatabaseRole(_RoleModel):
    """A role that owns an object of a dumped database or is named in its ACLs, or one such a role
    is a member of (recursively)."""

    name: RoleName
    superuser: bool = Field(False, description="is a superuser: never created by a restore")
    login: bool = False
    inherit: bool = True
    createdb: bool = False
    createrole: bool = False
    connection_limit: int = Field(-1, ge=-1)
    member_of: list[RoleMembership] = Field(default_factory=list)

    def describe(self) -> str:
        """'vault_app (LOGIN, member of vault_owner)': what a message names."""
        parts = ["SUPERUSER" if self.superuser else "LOGIN" if self.login else "NOLOGIN"]
        if self.member_of:
            parts.append("member of " + ", ".join(m.role for m in self.member_of))
        return f"{self.name} ({', '.join(parts)})"
