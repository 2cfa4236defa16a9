"""Immich integration, the I/O part: the HTTP API (stdlib urllib in a thread), the API key,
the dumps in backups/, and the hook the runner calls before the file pass.

Where the API key is kept (first found wins):

1. the destination's own secrets: a field `immich_api_key` in its 1Password item, or in its
   key file;
2. `<data dir>/secrets/immich.json` (0600), field `immich_api_key`, written by
   `photos-sync backup --setup-immich` or by `--setup` when PHOTOS_SYNC_IMMICH_API_KEY is set.

The key travels only in the `x-api-key` header of requests to BACKUP_IMMICH_URL: never in
an argv, a log line, the DB or an error message (messages say where the key is kept).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photos_sync.core.config import Settings
from photos_sync.core.destinations import DestinationError, parse_op_locator, parse_secrets_ref
from photos_sync.core.immich_rules import (
    API_KEY_FIELD,
    API_KEY_HEADER,
    FALLBACK_STATUSES,
    SERVER_VERSION,
    WHO_AM_I,
    ApiCall,
    DumpFile,
    DumpHealth,
    Version,
    api_url,
    describe_dump,
    dump_health,
    error_message,
    is_dump_name,
    is_stable,
    key_problem,
    new_dump,
    parse_version,
    sort_dumps,
    supports_backups,
    trigger_calls,
    version_text,
)
from photos_sync.core.records import Destination
from photos_sync.core.redact import redact
from photos_sync.credentials.keyfile import SecretsError, read_key_file, write_key_file
from photos_sync.storage import datadir
from photos_sync.system.logs import get_logger

log = get_logger("photos_sync.immich.server")

#: The last dump request's outcome, for `--status` (no secrets in it).
STATE_FILE = "immich-dump.json"
#: How often the wait for a new dump says it is still waiting.
PROGRESS_EVERY = 10.0
#: A new dump counts as written when its size and mtime held for this many polls in a row.
STABLE_POLLS = 2


class ImmichError(RuntimeError):
    """Immich could not be asked (unreachable, or an unexpected answer)."""


class ImmichKeyError(ImmichError):
    """The API key is missing, or Immich refused it; the message says where it is kept."""


def key_file(settings: Settings) -> Path:
    return settings.secrets_dir / "immich.json"


@dataclass(frozen=True, slots=True)
class ApiKey:
    value: str = field(repr=False)
    #: where it is kept, for messages: "in field immich_api_key of key file /x/immich.json"
    where: str


async def resolve_api_key(settings: Settings, destination: Destination | None) -> ApiKey | None:
    """The Immich API key: the destination's secrets first, then secrets/immich.json."""
    if destination is not None:
        from photos_sync.credentials.loader import load_secrets

        try:
            secrets = await load_secrets(destination)
        except (SecretsError, DestinationError):
            secrets = {}
        value = secrets.get(API_KEY_FIELD, "").strip()
        if value:
            return ApiKey(value, f"in field {API_KEY_FIELD} of {_describe_ref(destination)}")
    path = key_file(settings)
    if path.exists():
        values = read_key_file(path)
        value = values.get(API_KEY_FIELD, "").strip()
        if value:
            return ApiKey(value, f"in field {API_KEY_FIELD} of key file {path}")
    return None


def _describe_ref(destination: Destination) -> str:
    try:
        store, locator = parse_secrets_ref(destination.secrets_ref)
        if store == "op":
            vault, title = parse_op_locator(locator)
            return f'1Password item "{title}" (vault "{vault}")'
        return f"key file {locator}"
    except DestinationError:
        return f"the secrets of destination {destination.name!r}"


def missing_key_message(settings: Settings) -> str:
    return (
        f"BACKUP_IMMICH_URL is set but no Immich API key was found: run `photos-sync backup "
        f"--setup-immich` (key file {key_file(settings)}), or add a field {API_KEY_FIELD} to "
        "the destination's 1Password item"
    )


def store_api_key(settings: Settings, value: str) -> Path:
    """Write the key into secrets/immich.json (0600, atomic), keeping its other fields."""
    path = key_file(settings)
    values = read_key_file(path) if path.exists() else {}
    values[API_KEY_FIELD] = value.strip()
    write_key_file(path, values)
    return path


# -- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


# Immich is the user's own server: go straight to it, never through an HTTP(S)_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ImmichClient:
    """Blocking urllib calls, run in a thread; only the x-api-key header carries the key."""

    def __init__(self, base_url: str, key: ApiKey | None, timeout: float) -> None:
        self.base_url = base_url
        self.key = key
        self.timeout = timeout

    def _call_blocking(self, call: ApiCall) -> Answer:
        headers = {"Accept": "application/json", "User-Agent": "photos-sync"}
        data = call.encoded_body()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key is not None:
            headers[API_KEY_HEADER] = self.key.value
        # the scheme is http(s), checked by normalize_base_url when the settings were read
        request = urllib.request.Request(  # noqa: S310
            api_url(self.base_url, call.path), data=data, headers=headers, method=call.method
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return Answer(response.status, response.read(1 << 20))
        except urllib.error.HTTPError as exc:
            body = exc.read(1 << 16) if exc.fp is not None else b""
            return Answer(exc.code, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImmichError(f"Immich at {self.base_url} is not reachable ({reason})") from None

    async def call(self, call: ApiCall) -> Answer:
        answer = await asyncio.to_thread(self._call_blocking, call)
        log.info("immich_api", method=call.method, path=call.path, status=answer.status)
        return answer

    def _message(self, answer: Answer) -> str:
        secrets = [self.key.value] if self.key else []
        return redact(error_message(answer.body), secrets)

    def _check_key(self, answer: Answer) -> None:
        if answer.status in (401, 403):
            where = self.key.where if self.key else "(none sent)"
            problem = key_problem(answer.status, self._message(answer), where)
            raise ImmichKeyError(problem or "Immich refused the API key")

    async def version(self) -> Version | None:
        answer = await self.call(SERVER_VERSION)
        if answer.status == 200:
            return parse_version(answer.json())
        self._check_key(answer)
        return None

    async def whoami(self) -> Mapping[str, Any]:
        """GET /api/users/me: the key's user (name, email, isAdmin)."""
        answer = await self.call(WHO_AM_I)
        self._check_key(answer)
        if answer.status != 200 or not isinstance(answer.json(), Mapping):
            raise ImmichError(
                f"Immich answered {answer.status} to GET /api/users/me: {self._message(answer)}"
            )
        data: Mapping[str, Any] = answer.json()
        return data

    async def trigger_backup(self, version: Version | None) -> ApiCall:
        """Ask for a database dump; returns the call that worked. ImmichError otherwise."""
        tried = []
        for call in trigger_calls(version):
            answer = await self.call(call)
            if 200 <= answer.status < 300:
                return call
            self._check_key(answer)
            tried.append(f"{call.method} /api{call.path} → {answer.status}")
            if answer.status in FALLBACK_STATUSES:
                continue
            raise ImmichError(
                f"Immich refused the database backup ({tried[-1]}: {self._message(answer)})"
            )
        raise ImmichError(
            f"Immich ({version_text(version)}) knows no database-backup job ({'; '.join(tried)})"
        )


# -- dumps in backups/ ---------------------------------------------------------------------------


def list_dumps(backups_dir: Path) -> list[DumpFile]:
    """Finished dumps in `backups_dir` (an absent folder has none)."""
    found = []
    try:
        with os.scandir(backups_dir) as entries:
            for entry in entries:
                if not is_dump_name(entry.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.is_file(follow_symlinks=False):
                    found.append(DumpFile(entry.name, info.st_size, info.st_mtime))
    except OSError:
        return []
    return sort_dumps(found)


def health(settings: Settings, now: float | None = None) -> DumpHealth | None:
    """Health of the dumps under BACKUP_IMMICH_PATH/backups, or None without that path."""
    if settings.immich_path is None:
        return None
    return dump_health(
        list_dumps(settings.immich_path / "backups"), time.time() if now is None else now
    )


# -- the hook before a run -----------------------------------------------------------------------


@dataclass
class DumpOutcome:
    """What the request for a fresh dump achieved (no secrets)."""

    destination: str
    fresh: bool = False  # a new dump was written for this run
    dump: DumpFile | None = None  # the dump that goes into this run (newest)
    server_version: str | None = None
    endpoint: str | None = None
    warning: str | None = None  # Immich unreachable, refused, or too slow: old dump used
    error: str | None = None  # the key is missing or refused (a configuration error)
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "fresh": self.fresh,
            "dump": self.dump.as_dict(self.at) if self.dump else None,
            "server_version": self.server_version,
            "endpoint": self.endpoint,
            "warning": self.warning,
            "error": self.error,
            "at": self.at,
        }


def _save_state(settings: Settings, outcome: DumpOutcome) -> None:
    path = settings.data_dir / STATE_FILE
    try:
        datadir.write_private(path, json.dumps(outcome.as_dict(), sort_keys=True).encode())
    except OSError as exc:
        log.warning("immich_state_not_saved", error=str(exc))


def last_outcome(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads((settings.data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def wait_for_dump(
    backups_dir: Path,
    before: Sequence[str],
    *,
    timeout: float,
    interval: float,
    say: Callable[[str], None],
) -> DumpFile | None:
    """Poll until a dump not in `before` appears and holds still for STABLE_POLLS looks in a
    row (every Immich version writes `<name>.sql.gz.tmp` and renames it when done, so a
    listed dump is finished; the stillness check guards against other writers); None on
    timeout."""
    start = time.monotonic()
    last_said = start
    previous: DumpFile | None = None
    still = 0
    while True:
        current = new_dump(before, list_dumps(backups_dir))
        still = still + 1 if current is not None and is_stable(previous, current) else 0
        if current is not None and still >= STABLE_POLLS:
            return current
        previous = current
        now = time.monotonic()
        if now - start >= timeout:
            return None
        if now - last_said >= PROGRESS_EVERY:
            last_said = now
            state = f"writing {current.name}" if current else "no new dump yet"
            say(f"immich: waiting for the database dump ({now - start:.0f} s, {state})")
        await asyncio.sleep(min(interval, max(0.0, timeout - (now - start))) or interval)


async def prepare_dump(
    settings: Settings,
    destination: Destination,
    backups_dir: Path,
    say: Callable[[str], None],
) -> DumpOutcome | None:
    """Before the file pass: ask Immich for a new dump and wait until it is written.

    Returns None when BACKUP_IMMICH_URL is unset. Never raises for Immich's sake: when Immich
    is unreachable, refuses, or is too slow, the run goes on with the newest existing dump and
    the outcome carries a warning (or, for a missing/refused key, an error)."""
    if settings.immich_url is None:
        return None
    outcome = DumpOutcome(destination.name)
    before = list_dumps(backups_dir)
    try:
        await _request_fresh_dump(settings, destination, backups_dir, before, say, outcome)
    except ImmichKeyError as exc:
        outcome.error = str(exc)
    except ImmichError as exc:
        outcome.warning = str(exc)
    except SecretsError as exc:
        outcome.error = f"the Immich API key cannot be read: {exc}"
    if not outcome.fresh:
        _fall_back_to_newest(backups_dir, say, outcome)
    _save_state(settings, outcome)
    return outcome


async def _request_fresh_dump(
    settings: Settings,
    destination: Destination,
    backups_dir: Path,
    before: list[DumpFile],
    say: Callable[[str], None],
    outcome: DumpOutcome,
) -> None:
    """Ask Immich for a dump and wait until one not in `before` is written, noting the
    server's version, the endpoint asked and the new dump in `outcome` (then fresh).
    ImmichKeyError for a missing or refused key, SecretsError when it cannot be read,
    ImmichError when Immich is unreachable, too old, refuses, or writes no dump in time."""
    assert settings.immich_url is not None
    key = await resolve_api_key(settings, destination)
    if key is None:
        raise ImmichKeyError(missing_key_message(settings))
    client = ImmichClient(settings.immich_url, key, settings.immich_api_timeout)
    version = await client.version()
    outcome.server_version = version_text(version) if version else None
    if not supports_backups(version):
        raise ImmichError(
            f"Immich {version_text(version)} writes no database dumps (added in v1.120): "
            "upgrade Immich"
        )
    say(f"immich: asking {settings.immich_url} for a fresh database dump")
    call = await client.trigger_backup(version)
    outcome.endpoint = f"{call.method} /api{call.path}"
    log.info("immich_dump_requested", endpoint=outcome.endpoint, version=outcome.server_version)
    dump = await wait_for_dump(
        backups_dir,
        [d.name for d in before],
        timeout=settings.immich_dump_timeout,
        interval=settings.immich_poll_interval,
        say=say,
    )
    if dump is None:
        raise ImmichError(
            f"Immich wrote no new database dump within {settings.immich_dump_timeout:g} s "
            "(BACKUP_IMMICH_DUMP_TIMEOUT)"
        )
    outcome.fresh = True
    outcome.dump = dump
    say(f"immich: new database dump {describe_dump(dump, time.time())}")
    log.info("immich_dump_ready", dump=dump.name, size=dump.size)


def _fall_back_to_newest(
    backups_dir: Path, say: Callable[[str], None], outcome: DumpOutcome
) -> None:
    """No fresh dump: make the newest existing one (if any) the outcome's dump, and say
    and log why (an error for a key problem, else a warning)."""
    newest = list_dumps(backups_dir)
    outcome.dump = newest[-1] if newest else None
    problem = outcome.error or outcome.warning or ""
    text = (
        f"immich: {problem}; going on with the newest existing dump: "
        f"{describe_dump(outcome.dump, time.time())}"
    )
    say(text)
    if outcome.error:
        log.error("immich_dump_not_refreshed", error=outcome.error, dump=_name(outcome.dump))
    else:
        log.warning("immich_dump_not_refreshed", warning=outcome.warning, dump=_name(outcome.dump))


def _name(dump: DumpFile | None) -> str | None:
    return dump.name if dump else None


class SharedDump:
    """One fresh Immich dump for the runs of one backup to several destinations.

    The first run that backs up backups/ asks Immich (`prepare_dump`); the later runs of the
    same backup send that dump too instead of asking again, so every destination holds the
    same database state, and Immich (which keeps its last 14 dumps) is not asked once per
    destination. An outcome with a key *error* is not reused: nothing was dumped, and the next
    destination may carry its own key in its secrets. Pass one instance in each RunRequest.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._outcome: DumpOutcome | None = None
        self._asked = False

    async def take(
        self,
        settings: Settings,
        destination: Destination,
        backups_dir: Path,
        say: Callable[[str], None],
    ) -> DumpOutcome | None:
        """Like `prepare_dump`, once per backup: later calls get the first outcome back."""
        async with self._lock:
            reusable = self._asked and (self._outcome is None or not self._outcome.error)
            if not reusable:
                self._outcome = await prepare_dump(settings, destination, backups_dir, say)
                self._asked = True
            elif self._outcome is not None:
                dump = describe_dump(self._outcome.dump, time.time())
                say(
                    f"immich: sending the fresh database dump requested for "
                    f"{self._outcome.destination} in this backup: {dump}"
                    if self._outcome.fresh
                    else f"immich: no fresh dump in this backup ({self._outcome.warning}); "
                    f"going on with the newest existing dump: {dump}"
                )
            return self._outcome


# -- status and check ----------------------------------------------------------------------------


def status_section(settings: Settings) -> dict[str, Any] | None:
    """`immich` in the `--status` document: URL, dump health, the last request's outcome."""
    now = time.time()
    judged = health(settings, now)
    last = last_outcome(settings)
    if judged is None and settings.immich_url is None and last is None:
        return None
    warnings = list(judged.warnings) if judged else []
    if last and (last.get("error") or last.get("warning")):
        warnings.append(f"last run: {last.get('error') or last.get('warning')}")
    return {
        "url": settings.immich_url,
        "dumps": judged.as_dict(now) if judged else None,
        "last_request": last,
        "warning": "; ".join(warnings) if warnings else None,
        "warnings": warnings,
    }


async def api_check(
    settings: Settings, destinations: Sequence[Destination]
) -> tuple[bool, str, str]:
    """(ok, detail, hint) of `--check`'s Immich API line: URL reachable, key accepted."""
    assert settings.immich_url is not None
    key = None
    try:
        for destination in destinations:
            key = await resolve_api_key(settings, destination)
            if key is not None:
                break
        if key is None:
            key = await resolve_api_key(settings, None)
    except SecretsError as exc:
        return False, "API key not readable", str(exc)
    if key is None:
        return False, "no API key", missing_key_message(settings)
    client = ImmichClient(settings.immich_url, key, min(settings.immich_api_timeout, 15.0))
    try:
        version = await client.version()
        user = await client.whoami()
    except ImmichKeyError as exc:
        return False, "API key refused", str(exc)
    except ImmichError as exc:
        return False, "not reachable", f"{exc}: check BACKUP_IMMICH_URL and that Immich runs"
    who = str(user.get("email") or user.get("name") or "?")
    detail = f"{settings.immich_url} ({version_text(version)}), key of {who} ({key.where})"
    if user.get("isAdmin") is False:
        return (
            False,
            detail,
            "database backups need an admin's API key: create the key as an admin user",
        )
    return True, detail, ""
