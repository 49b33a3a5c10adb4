"""The Switch strategy's databases and the renames between them.

Three names on the target server: the vault's database D, the restored sibling S (built while the
vault runs) and the previous database P (D's name once the switch renamed it aside). The switch
takes the server from (D, S) to (D = the restored one, P = the one before), the switch back from
any point of that to (D = the one before, S = the restored one). Each is a sequence of single
statements; before each one the server is read again and the next statement is chosen from what
it shows (which names exist, which accept connections) — never from what the status remembers —
so an operator killed between any two of them resumes where the server is, and neither database
is ever lost or made twice. `next_action` is that choice, pure; `drive` runs it to the end.

No session may reach D or S while they are renamed: connections are refused first (the orchestrator
keeps running and reconnects on its own), then what is left is terminated, then the rename runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from walwarden import failpoints
from walwarden.api.common import short_uid
from walwarden.postgres import databases
from walwarden.postgres.databases import DatabaseState
from walwarden.restore.run import RestoreRun
from walwarden.restore.target import target_database

MAX_IDENTIFIER = 63  # PostgreSQL cuts longer names silently (NAMEDATALEN - 1)


@dataclass(frozen=True)
class SwitchNames:
    database: str  # D: the name the services use
    restored: str  # S: where the backup is restored, before the stop
    previous: str  # P: the name D's database keeps after the switch

    def all(self) -> list[str]:
        return [self.database, self.restored, self.previous]


def _named(database: str, suffix: str) -> str:
    return database[: MAX_IDENTIFIER - len(suffix)] + suffix


def switch_names(run: RestoreRun) -> SwitchNames:
    """Derived from the request's immutable identity (uid, creation time): every pass, and an
    operator that lost the status, finds the same names."""
    database = target_database(run)
    minute = "".join(ch for ch in run.created_at if ch.isdigit())[:12]  # when the restore was asked for
    uid = short_uid(run.uid)  # two restores asked for in one minute get two names
    return SwitchNames(
        database=database,
        restored=_named(database, f"_walwarden_{uid}"),
        previous=_named(database, f"_pre_restore_{minute}_{uid}" if minute else f"_pre_restore_{uid}"),
    )


class Direction(StrEnum):
    FORWARD = "switch"  # the restored database into place
    BACK = "switch-back"  # the database from before the restore into place again


class Verb(StrEnum):
    REFUSE_CONNECTIONS = "refuse-connections"
    RENAME = "rename"
    ALLOW_CONNECTIONS = "allow-connections"


@dataclass(frozen=True)
class Action:
    verb: Verb
    database: str
    new_name: str | None = None  # RENAME only
    point: str = ""  # the failpoint after it, e.g. "switch:rename-current-aside"

    def describe(self) -> str:
        if self.verb == Verb.RENAME:
            return f"renamed {self.database} to {self.new_name}"
        return f"{'refused' if self.verb == Verb.REFUSE_CONNECTIONS else 'allowed'} connections to {self.database}"


class SwitchStateUnknown(Exception):
    """The server shows databases no switch would leave: a person must look (nothing is touched)."""


def _shown(observed: dict[str, DatabaseState]) -> str:
    return (
        ", ".join(
            f"{name} {'(accepts connections)' if state.allows_connections else '(refuses connections)'}"
            for name, state in observed.items()
            if state.exists
        )
        or "none of them"
    )


def next_action(direction: Direction, names: SwitchNames, observed: dict[str, DatabaseState]) -> Action | None:
    """The next statement towards the end state of `direction`, or None once it is reached."""
    current, restored, previous = (observed[name] for name in names.all())
    shape = (current.exists, restored.exists, previous.exists)
    point = direction.value + ":"
    if direction == Direction.FORWARD:
        if shape == (True, True, False):
            if restored.allows_connections:
                return Action(Verb.REFUSE_CONNECTIONS, names.restored, point=point + "refuse-restored")
            if current.allows_connections:
                return Action(Verb.REFUSE_CONNECTIONS, names.database, point=point + "refuse-current")
            return Action(Verb.RENAME, names.database, names.previous, point=point + "rename-current-aside")
        if shape == (False, True, True):
            return Action(Verb.RENAME, names.restored, names.database, point=point + "rename-restored-in")
        if shape == (True, False, True):
            if previous.allows_connections:
                return Action(Verb.REFUSE_CONNECTIONS, names.previous, point=point + "refuse-previous")
            if not current.allows_connections:
                return Action(Verb.ALLOW_CONNECTIONS, names.database, point=point + "allow-restored")
            return None
    else:
        if shape == (True, False, True):
            if current.allows_connections:
                return Action(Verb.REFUSE_CONNECTIONS, names.database, point=point + "refuse-restored")
            return Action(Verb.RENAME, names.database, names.restored, point=point + "rename-restored-back")
        if shape == (False, True, True):
            return Action(Verb.RENAME, names.previous, names.database, point=point + "rename-previous-in")
        # With the sibling still there, the vault's database never moved, whatever else the server
        # shows under the previous name (the forward switch renames the vault's aside only after its
        # connections are refused, and the sibling's name goes away only when it is renamed in): so
        # a switch that found its previous name taken still opens it and lets the services start.
        if shape in ((True, True, False), (True, False, False), (True, True, True)):
            if not current.allows_connections:
                return Action(Verb.ALLOW_CONNECTIONS, names.database, point=point + "allow-previous")
            return None
    raise SwitchStateUnknown(
        f"the server shows {_shown(observed)} of {', '.join(names.all())}: not a state a {direction.value} "
        "leaves. Nothing was changed; look at the databases, put the vault's database back under "
        f"the name {names.database} by hand, and create a new request"
    )


def is_switched(names: SwitchNames, observed: dict[str, DatabaseState]) -> bool:
    """Whether the restored database is (or may be) under the vault's name or half-way there."""
    return not observed[names.restored].exists or not observed[names.database].exists


def drive(
    secret: dict[str, str],
    direction: Direction,
    names: SwitchNames,
    said: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Run statements until `direction`'s end state; what each did, in order. A session that
    reached a database just before its rename (DatabaseInUse) is terminated again, and the rename
    retried on the next look."""
    done: list[str] = []
    while (action := next_action(direction, names, databases.states(secret, names.all()))) is not None:
        if action.verb == Verb.RENAME:
            # Connections are refused by now (next_action saw to it): end the sessions left, then rename.
            databases.terminate_all_sessions(secret, [action.database])
            databases.rename(secret, action.database, action.new_name or "")
        else:
            databases.allow_connections(secret, action.database, action.verb == Verb.ALLOW_CONNECTIONS)
            if action.verb == Verb.REFUSE_CONNECTIONS:
                databases.terminate_all_sessions(secret, [action.database])
        done.append(action.describe())
        said(action.describe())
        failpoints.reached(action.point)
    return done
