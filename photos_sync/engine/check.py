"""`photos-sync backup --check`: every prerequisite, one line each, with a hint when it fails.

Checks, in order: every setting well-formed (a malformed one fails here, and the checks that
need it are skipped); rclone present and new enough; the 1Password CLI installed and signed in
(required when a destination keeps its secrets there, informational otherwise);
BACKUP_IMMICH_PATH set, existing and carrying Immich's markers; the data dir writable; and
for each destination, its secrets readable and its remote reachable (for B2, the bucket's
lifecycle rules against photos-sync's policy on old versions) and whether it survives a host
that holds its keys ("protection", #17: a local folder never does; S3 with versioning and
Object Lock does, and says until when; B2 does with a key that cannot delete files); then
the installed service (unit installed, enabled, running, lingering) and the next scheduled
run, all optional. The report is ok when no required check failed. Nothing secret is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from photos_sync.cloud.b2_account import B2AccountError, secrets_capabilities
from photos_sync.core.append_only import (
    LOCAL_PROTECTION,
    Protection,
    is_append_only,
    object_lock_of,
    s3_protection,
    seen_lock,
)
from photos_sync.core.b2_keys import MIN_RECOVERY_DAYS, hiding_verdict, protection_verdict
from photos_sync.core.config import ConfigError, Settings
from photos_sync.core.destinations import (
    DestinationError,
    destination_type,
    explain_error,
    missing_secret_fields,
    parse_secrets_ref,
)
from photos_sync.core.planning import SourceRefused, check_sources, selected_folders
from photos_sync.core.rclone_args import BASE_REMOTE, b2_lifecycle_argv
from photos_sync.core.records import Destination, utcnow
from photos_sync.core.units import plural
from photos_sync.credentials.keyfile import SecretsError
from photos_sync.rclone.remote import CryptRemote
from photos_sync.storage import datadir
from photos_sync.storage.store import Store
from photos_sync.system import execute

if TYPE_CHECKING:
    from photos_sync.system.service import ServiceState

#: Oldest rclone photos-sync is tested with (b2/s3 upload concurrency, JSON logs, serve s3).
MIN_RCLONE = (1, 65)

OK, FAIL, SKIP = "ok", "fail", "skip"
SYMBOLS = {OK: "✓", FAIL: "✗", SKIP: "–"}
#: An optional check that failed: a warning, which must not read as the ✗ of a failure when
#: the report ends with "all required checks passed".
WARNING_SYMBOL = "!"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | fail | skip
    detail: str
    hint: str = ""
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.status != FAIL,
            "required": self.required,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL and c.required for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def render_checks(report: CheckReport) -> list[str]:
    """One line per check: symbol, name, detail, and the hint for failures."""
    lines = []
    warnings = 0
    for check in report.checks:
        warning = check.status == FAIL and not check.required
        warnings += warning
        symbol = WARNING_SYMBOL if warning else SYMBOLS[check.status]
        line = f"{symbol} {check.name}: {check.detail}"
        if check.hint and check.status == FAIL:
            line += f" — {check.hint}"
        lines.append(line)
    verdict = "all required checks passed" if report.ok else "some required checks failed"
    if warnings:
        verdict += f"; {plural(warnings, 'warning')} (!) to look at"
    lines.append(verdict)
    return lines


def parse_rclone_version(text: str) -> tuple[int, ...]:
    match = re.search(r"rclone v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return ()
    return tuple(int(g) for g in match.groups() if g is not None)


async def check_rclone(settings: Settings) -> Check:
    name = "rclone"
    try:
        binary = execute.find_rclone(settings.rclone_binary)
    except execute.RcloneNotFound as exc:
        return Check(name, FAIL, "not found", str(exc))
    try:
        result = await execute.run_captured((binary, "version"), execute.child_env({}), timeout=30)
    except (OSError, TimeoutError) as exc:
        return Check(name, FAIL, f"{binary} does not run ({exc})", "reinstall photos-sync")
    first = result.stdout.decode("utf-8", "replace").splitlines()[:1]
    version = parse_rclone_version(first[0] if first else "")
    if result.returncode != 0 or not version:
        return Check(name, FAIL, f"{binary} version failed", "reinstall photos-sync")
    shown = ".".join(str(v) for v in version)
    if version[:2] < MIN_RCLONE:
        return Check(
            name,
            FAIL,
            f"v{shown} at {binary} is too old",
            f"photos-sync needs rclone {MIN_RCLONE[0]}.{MIN_RCLONE[1]} or newer: upgrade it or "
            "unset RCLONE_BINARY",
        )
    return Check(name, OK, f"v{shown} ({binary})")


async def check_op(required: bool) -> list[Check]:
    from photos_sync.credentials.onepassword import OnePassword, OnePasswordError, OpNotInstalled

    why = "" if required else " (optional: only for --secrets op)"
    try:
        op = OnePassword.find()
    except OpNotInstalled as exc:
        status = FAIL if required else SKIP
        return [Check("1Password CLI", status, f"not installed{why}", str(exc), required)]
    try:
        version = await op.version()
    except OnePasswordError as exc:
        return [Check("1Password CLI", FAIL, "broken", str(exc), required)]
    checks = [Check("1Password CLI", OK, f"{version} ({op.binary})", required=required)]
    try:
        account = await op.account()
    except OnePasswordError as exc:
        checks.append(Check("1Password sign-in", FAIL, f"not signed in{why}", str(exc), required))
    else:
        who = account.email or account.url
        kind = "service account" if account.user_type == "SERVICE_ACCOUNT" else "user"
        checks.append(Check("1Password sign-in", OK, f"{kind} {who}", required=required))
    return checks


def check_settings(settings: Settings) -> list[Check]:
    """A failure per malformed setting (the commands that use it refuse to start)."""
    return [
        Check(variable, FAIL, "invalid", f"{message} (in the environment or a .env file)")
        for variable, message in settings.problems.items()
    ]


def _skipped_for(settings: Settings, name: str, *variables: str) -> Check | None:
    """A skipped check when one of `variables`, which check `name` needs, is malformed."""
    bad = [v for v in variables if v in settings.problems]
    if not bad:
        return None
    return Check(name, SKIP, f"not tried ({', '.join(bad)} is invalid, see above)", required=False)


def check_immich(settings: Settings) -> list[Check]:
    try:
        path = settings.require_immich_path()
    except ConfigError as exc:
        return [Check("BACKUP_IMMICH_PATH", FAIL, "not set", str(exc))]
    if not path.is_dir():
        return [
            Check(
                "BACKUP_IMMICH_PATH",
                FAIL,
                f"{path} does not exist",
                "mount the Immich volume, or fix BACKUP_IMMICH_PATH",
            )
        ]
    checks = [Check("BACKUP_IMMICH_PATH", OK, str(path))]
    skipped = _skipped_for(settings, "Immich folders", "BACKUP_INCLUDE_GENERATED")
    if skipped is not None:
        return [*checks, skipped]
    from photos_sync.engine.runner import gather_facts

    folders = selected_folders(settings.include_generated)
    try:
        check_sources(str(path), gather_facts(path, folders), folders)
    except SourceRefused as exc:
        checks.append(Check("Immich folders", FAIL, "markers missing", str(exc)))
    else:
        names = ", ".join(f"{f.name}/" for f in folders)
        checks.append(Check("Immich folders", OK, f"{names} carry .immich markers"))
    return checks


async def check_immich_api(settings: Settings, destinations: list[Destination]) -> list[Check]:
    """The newest DB dump's age and size; with BACKUP_IMMICH_URL, the URL and the API key."""
    import time

    from photos_sync.core.immich_rules import describe_dump
    from photos_sync.immich import server as immich

    checks = []
    judged = immich.health(settings)
    if judged is not None and settings.immich_path is not None and settings.immich_path.is_dir():
        newest = describe_dump(judged.newest, time.time())
        if judged.ok:
            checks.append(Check("Immich DB dump", OK, newest))
        else:
            checks.append(
                Check("Immich DB dump", FAIL, newest, "; ".join(judged.warnings), required=False)
            )
    skipped = _skipped_for(settings, "Immich API", "BACKUP_IMMICH_URL", "BACKUP_IMMICH_API_TIMEOUT")
    if skipped is not None:
        return [*checks, skipped]
    if settings.immich_url is None:
        checks.append(
            Check(
                "Immich API",
                SKIP,
                "BACKUP_IMMICH_URL not set (no fresh dump before runs)",
                required=False,
            )
        )
        return checks
    ok, detail, hint = await immich.api_check(settings, destinations)
    checks.append(Check("Immich API", OK if ok else FAIL, detail, hint))
    return checks


async def check_consistency(settings: Settings, destinations: list[Destination]) -> list[Check]:
    """Is the newest Immich dump whole (#16)? And each destination's last consistency proof:
    does its backup hold every file the dump it was sent with references? A truncated dump
    is a failure: restoring it gives a broken Immich."""
    from photos_sync.core.consistency import proof_from_dict
    from photos_sync.engine.consistency import newest_dump
    from photos_sync.immich.dump_file import check_dump_file
    from photos_sync.storage.manifest_db import ManifestError, manifest_path
    from photos_sync.storage.manifest_reader import read_manifest_facts

    if settings.immich_path is None or not settings.immich_path.is_dir():
        return []
    checks = []
    dump = newest_dump(settings.immich_path / "backups")
    proofs = {}
    for destination in destinations:
        try:
            facts = await asyncio.to_thread(
                read_manifest_facts, manifest_path(settings.data_dir, destination.id)
            )
        except ManifestError:
            facts = None
        if facts is not None and facts.consistency:
            proofs[destination.name] = proof_from_dict(dict(facts.consistency))
    if dump is not None:
        # a dump already read by a run is not read again (a large one takes a while)
        known = next((p for p in proofs.values() if p.dump == dump.name), None)
        if known is not None:
            whole, problem = known.complete, known.problem
        else:
            end = await asyncio.to_thread(check_dump_file, dump)
            whole, problem = end.complete, end.problem
        if whole:
            checks.append(Check("Immich DB dump whole", OK, f"{dump.name} ends as pg_dump ends"))
        else:
            checks.append(
                Check(
                    "Immich DB dump whole",
                    FAIL,
                    f"{dump.name}: {problem}",
                    "the newest dump cannot restore Immich: free space where Immich writes "
                    "its dumps and run Immich's backup job again (Administration > Jobs)",
                )
            )
    for name, proof in sorted(proofs.items()):
        checks.append(
            Check(
                f"Immich files in {name}",
                OK if proof.ok else FAIL,
                proof.line(),
                ""
                if proof.ok
                else "run `photos-sync backup` again; see backup.log for the missing files",
            )
        )
    return checks


def check_data_dir(settings: Settings) -> Check:
    data_dir = settings.data_dir
    try:
        datadir.ensure_data_dir(data_dir)
    except datadir.DataDirError as exc:
        return Check("data dir", FAIL, str(exc))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".check-", dir=data_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return Check(
            "data dir",
            FAIL,
            f"{data_dir} is not writable ({exc.strerror})",
            "set PHOTOS_SYNC_DATA_DIR to a writable folder",
        )
    return Check("data dir", OK, f"{data_dir} is writable")


def _covers(prefix: object, remote_path: str | None) -> bool:
    """Whether a lifecycle rule with `fileNamePrefix` applies to every object of a backup
    kept under `remote_path` in the bucket (names below it are encrypted: no finer prefix
    can cover them all)."""
    if not isinstance(prefix, str) or prefix == "":
        return prefix in ("", None)
    ours = f"{(remote_path or '').strip('/')}/"
    return ours != "/" and ours.startswith(prefix)


def _days(rule: dict[str, Any], key: str) -> int | None:
    value = rule.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _covering(rules: object, remote_path: str | None) -> list[dict[str, Any]]:
    return [
        r
        for r in (rules if isinstance(rules, list) else [])
        if isinstance(r, dict) and _covers(r.get("fileNamePrefix"), remote_path)
    ]


def hiding_to_deleting_days(rules: object, remote_path: str | None) -> int | None:
    """Days after which the bucket's lifecycle deletes a hidden file of this backup (the
    shortest covering daysFromHidingToDeleting), None when no rule does."""
    deleting = [
        d
        for r in _covering(rules, remote_path)
        if (d := _days(r, "daysFromHidingToDeleting")) is not None
    ]
    return min(deleting) if deleting else None


def b2_versions_check(
    label: str,
    bucket: str,
    remote_path: str | None,
    rules: object,
    *,
    append_only: bool = False,
) -> Check:
    """Judge a B2 bucket's lifecycle rules (`rclone backend lifecycle`'s JSON list) against
    photos-sync's policy: the archive (`.deleted/`, BACKUP_KEEP_DELETED_DAYS) is the only
    history; B2's hidden versions are copies billed for nothing, so a rule should delete
    them (daysFromHidingToDeleting, "Keep only the last version"). A rule that hides files
    some days after upload would make the backup itself disappear. On an `append_only`
    destination the hidden versions are the protection instead (see
    `b2_append_only_versions_check`). Pure."""
    if append_only:
        return b2_append_only_versions_check(label, bucket, remote_path, rules)
    name = f"{label} old versions"
    covering = _covering(rules, remote_path)
    hiding = [d for r in covering if (d := _days(r, "daysFromUploadingToHiding")) is not None]
    if hiding:
        return Check(
            name,
            FAIL,
            f"bucket {bucket} hides every file {min(hiding)} days after upload "
            "(lifecycle daysFromUploadingToHiding): the backup itself would disappear",
            "remove that lifecycle rule in the Backblaze web console (Buckets > Lifecycle "
            'Settings), e.g. choose "Keep only the last version"',
        )
    deleting = [d for r in covering if (d := _days(r, "daysFromHidingToDeleting")) is not None]
    if deleting:
        days = min(deleting)
        return Check(
            name,
            OK,
            f"bucket {bucket} deletes hidden versions {days} day{'s' if days != 1 else ''} "
            "after hiding (old copies live in the archive, .deleted/)",
        )
    return Check(
        name,
        FAIL,
        f"bucket {bucket} keeps all versions: a hidden version is billed until deleted by hand",
        'Backblaze web console: Buckets > Lifecycle Settings > "Keep only the last version" '
        f"(or with the recovery kit: rclone backend lifecycle psbase:{bucket} "
        "-o daysFromHidingToDeleting=1, with a key allowed to change bucket settings)",
        required=False,
    )


async def read_b2_lifecycle(remote: CryptRemote, bucket: str) -> list[Any] | str:
    """The bucket's lifecycle rules (`rclone backend lifecycle`), or why they were not read."""
    result = await execute.run_captured(
        b2_lifecycle_argv(remote.binary, bucket), remote.child_env(), timeout=120
    )
    rules: object = "unread"
    if result.returncode == 0:
        with contextlib.suppress(ValueError):
            rules = json.loads(result.stdout or b"[]")
    if rules is None:
        rules = []  # rclone prints `null` for a bucket that never had rules
    if isinstance(rules, list):
        return rules
    if result.returncode:
        return str(remote.failure("reading the lifecycle rules", result))
    return "rclone's answer was not a list of rules"


def _b2_versions_from(destination: Destination, rules: list[Any] | str) -> Check:
    label = f"destination {destination.name}"
    if isinstance(rules, str):
        return Check(f"{label} old versions", SKIP, f"not checked: {rules}", required=False)
    return b2_versions_check(
        label,
        destination.bucket_name or "",
        destination.remote_path,
        rules,
        append_only=bool(destination.options.get("append_only")),
    )


async def check_b2_versions(remote: CryptRemote, destination: Destination) -> Check:
    """Read the bucket's lifecycle rules and judge them (informational: a failure to read
    them is a skip, never a failed check)."""
    return _b2_versions_from(
        destination, await read_b2_lifecycle(remote, destination.bucket_name or "")
    )


# -- B2 append-only destinations (#17) ---------------------------------------------------------


def b2_append_only_versions_check(
    label: str, bucket: str, remote_path: str | None, rules: object
) -> Check:
    """The lifecycle rules of an append-only destination's bucket. There a delete only hides
    (the key cannot delete), so the hidden versions ARE the protection: daysFromHidingToDeleting
    is how long a file an attacker hid stays recoverable. Hiding after upload still makes the
    backup disappear (a failure); no rule keeps every hidden copy (protected, but billed
    forever: a warning); a rule under MIN_RECOVERY_DAYS days leaves little time (a warning).
    Pure."""
    name = f"{label} old versions"
    covering = _covering(rules, remote_path)
    hiding = [d for r in covering if (d := _days(r, "daysFromUploadingToHiding")) is not None]
    if hiding:
        return b2_versions_check(label, bucket, remote_path, rules)
    lifecycle = (
        "Backblaze web console: Buckets > Lifecycle Settings > custom rule, "
        f"daysFromHidingToDeleting {MIN_RECOVERY_DAYS} or more (e.g. 30), with a key allowed "
        "to change bucket settings (not the destination's own)"
    )
    days = hiding_to_deleting_days(rules, remote_path)
    if days is None:
        return Check(
            name,
            FAIL,
            f"bucket {bucket} keeps all versions: every file hidden (by an attacker, a "
            "replacement or the archive's expiry) stays recoverable, and billed, until "
            "deleted by hand",
            lifecycle,
            required=False,
        )
    enough, sentence = hiding_verdict(days)
    if not enough:
        return Check(name, FAIL, f"bucket {bucket}: {sentence}", lifecycle, required=False)
    return Check(
        name,
        OK,
        f"bucket {bucket} deletes hidden versions {days} days after hiding: {sentence}",
    )


async def check_b2_protection(
    destination: Destination, secrets: Mapping[str, str], rules: list[Any] | str
) -> Check:
    """`destination NAME protection` for b2: whether the key could delete the backup (its
    capabilities, read from B2's authorisation answer) and how long a hidden file stays
    recoverable (the lifecycle `rules`, or why they were not read). A key B2 will not
    describe is a skip."""
    name = f"destination {destination.name} protection"
    try:
        key = await secrets_capabilities(secrets, destination.endpoint)
    except B2AccountError as exc:
        return Check(name, SKIP, f"not checked: {exc}", required=False)
    read = not isinstance(rules, str)
    verdict = protection_verdict(
        key,
        append_only=bool(destination.options.get("append_only")),
        hiding_days=hiding_to_deleting_days(rules, destination.remote_path) if read else None,
        rules_read=read,
    )
    status = SKIP if verdict.protected is None else OK if verdict.protected else FAIL
    return Check(name, status, verdict.detail, verdict.hint, required=verdict.required)


async def check_destination(
    settings: Settings, store: Store, destination: Destination
) -> list[Check]:
    from photos_sync.core.events import RunRefused
    from photos_sync.credentials.loader import load_secrets
    from photos_sync.engine.destination import DestinationContext

    label = f"destination {destination.name}"
    try:
        where = destination_type(destination.type).describe(destination)
        store_kind, _locator = parse_secrets_ref(destination.secrets_ref)
        secrets = await load_secrets(destination)
        missing = missing_secret_fields(destination.type, secrets)
        if missing:
            raise SecretsError(
                f"its secrets lack {', '.join(missing)}: add them where the secrets are kept"
            )
    except (SecretsError, DestinationError) as exc:
        return [
            Check(f"{label} secrets", FAIL, "not readable", str(exc)),
            Check(f"{label} remote", SKIP, "not tried (no secrets)", required=False),
        ]
    where_secrets = "1Password" if store_kind == "op" else "key file"
    checks = [Check(f"{label} secrets", OK, f"readable ({where_secrets})")]
    try:
        context = DestinationContext(settings, store)
        remote = await context.open_remote(destination, secrets)
        if destination.bucket_name:
            probe = await remote.probe(f"{BASE_REMOTE}:{destination.bucket_name}")
            if not probe.ok:
                raise DestinationError(explain_error(destination.type, probe.message))
        await context.check(destination, remote)
    except (RunRefused, DestinationError, SecretsError, execute.RcloneNotFound) as exc:
        checks.append(Check(f"{label} remote", FAIL, f"{where} not reachable", str(exc)))
    else:
        checks.append(Check(f"{label} remote", OK, f"{where} reachable, backup marker found"))
        if destination.type == "b2" and destination.bucket_name:
            rules = await read_b2_lifecycle(remote, destination.bucket_name)
            checks.append(_b2_versions_from(destination, rules))
            checks.append(await check_b2_protection(destination, secrets, rules))
        if destination.type in ("s3", "local"):
            checks.append(await check_protection(remote, destination))
    return checks


def _protection_check(name: str, verdict: Protection) -> Check:
    status = OK if verdict.protected else FAIL
    return Check(name, status, verdict.detail, verdict.hint, required=verdict.required)


async def check_protection(remote: CryptRemote, destination: Destination) -> Check:
    """Whether the destination survives a host that holds its keys (#17): a local folder
    never does; an S3 bucket does with versioning and Object Lock (read from the bucket's
    versioning status and the lock on the backup's top-level objects; whether the key itself
    may delete versions is not something S3 tells)."""
    name = f"destination {destination.name} protection"
    if destination.type != "s3":
        return _protection_check(name, LOCAL_PROTECTION)
    from photos_sync.rclone import object_lock as s3lock

    bucket = destination.bucket_name or ""
    try:
        versioning = await s3lock.bucket_versioning(remote, bucket)
        objects = await s3lock.top_level_metadata(
            remote, destination_type("s3").underlying_path(destination)
        )
    except DestinationError as exc:
        return Check(name, SKIP, f"not checked: {exc}", required=False)
    marker_lock = next((lock for m in objects if (lock := seen_lock(m)) is not None), None)
    verdict = s3_protection(
        bucket,
        versioning,
        object_lock_of(destination),
        marker_lock,
        append_only=is_append_only(destination),
        now=utcnow(),
    )
    return _protection_check(name, verdict)


def _yes_no(value: bool | None, yes: str, no: str, problem: str) -> tuple[str, str]:
    if value is None:
        return FAIL, f"unknown ({problem or 'the service manager did not say'})"
    return (OK, yes) if value else (FAIL, no)


async def check_service(settings: Settings, store: Store) -> list[Check]:
    """The installed service (optional: cron users need none): unit installed, enabled,
    running, lingering (Linux user units), and when the schedule next backs up."""
    from photos_sync.system.service import ServiceError, service_state

    try:
        state = await service_state(os.environ)
    except ServiceError as exc:
        checks = [Check("service", SKIP, str(exc), required=False)]
    else:
        checks = _service_checks(state)
    checks.append(await _next_run_check(settings, store))
    return checks


def _service_checks(state: ServiceState) -> list[Check]:
    """What the service manager says of the service: not installed (a skip), else
    installed, enabled, running and, for a Linux user unit, lingering."""
    from photos_sync.system.service import describe_scope, linger_command

    if not state.installed:
        # Not a failure: cron users need no service.
        return [
            Check(
                "service",
                SKIP,
                f"not installed ({describe_scope(state.scope)} {state.path}); "
                "`photos-sync daemon --install` backs up by itself on BACKUP_SCHEDULE",
                required=False,
            )
        ]
    checks = [Check("service", OK, f"{describe_scope(state.scope)} {state.path}")]
    status, detail = _yes_no(state.enabled, "enabled", "disabled", state.problem)
    checks.append(
        Check(
            "service enabled",
            status,
            detail,
            "run `photos-sync daemon --install` again to enable it",
            required=False,
        )
    )
    status, detail = _yes_no(state.running, "running", "not running", state.problem)
    checks.append(
        Check(
            "service running",
            status,
            detail,
            "start it, or read why it stopped in its log (see `photos-sync daemon "
            "--install`'s summary)",
            required=False,
        )
    )
    if state.linger_user is not None:
        status, detail = _yes_no(
            state.lingering,
            "on (the service runs after logout and starts at boot)",
            "off (the service stops at logout and does not start at boot)",
            state.problem,
        )
        checks.append(
            Check(
                "lingering",
                status,
                detail,
                f"run `sudo {' '.join(linger_command(state.linger_user))}`",
                required=False,
            )
        )
    return checks


async def _next_run_check(settings: Settings, store: Store) -> Check:
    """When the schedule next backs up each destination (a skip when the schedule is off
    or a setting it needs is invalid)."""
    from datetime import datetime

    from photos_sync.system.service import upcoming_runs

    skipped = _skipped_for(settings, "next scheduled run", "BACKUP_SCHEDULE")
    if skipped is not None:
        return skipped
    if settings.schedule is None:
        return Check(
            "next scheduled run",
            SKIP,
            "none: BACKUP_SCHEDULE=off (backups start only on request)",
            required=False,
        )
    now = datetime.now().astimezone()
    upcoming = await upcoming_runs(settings.schedule, store, now)
    if not upcoming:
        detail = f"{settings.schedule.describe()}, once a destination exists"
    else:
        detail = "; ".join(
            f"{name} {'now (due)' if due <= now else due.astimezone().strftime('%Y-%m-%d %H:%M')}"
            for name, due in sorted(upcoming.items())
        )
        detail += f" ({settings.schedule.describe()})"
    return Check("next scheduled run", OK, detail, required=False)


async def run_checks(settings: Settings, store: Store) -> CheckReport:
    report = CheckReport(check_settings(settings))
    rclone = await check_rclone(settings)
    report.checks.append(rclone)
    destinations = await store.list_destinations()
    uses_op = any(d.secrets_ref.startswith("op:") for d in destinations)
    report.checks += await check_op(required=uses_op)
    report.checks += check_immich(settings)
    report.checks.append(check_data_dir(settings))
    report.checks += await check_immich_api(settings, destinations)
    report.checks += await check_consistency(settings, destinations)
    if not destinations:
        report.checks.append(
            Check(
                "destinations",
                FAIL,
                "none set up",
                "run `photos-sync backup --setup b2|s3|local --name NAME ...`",
            )
        )
    for destination in destinations:
        if rclone.status != OK:
            report.checks.append(
                Check(f"destination {destination.name}", SKIP, "not tried (no rclone)")
            )
            continue
        report.checks += await check_destination(settings, store, destination)
    report.checks += await check_service(settings, store)
    return report
