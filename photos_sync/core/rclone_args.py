"""rclone command lines and environments, built as tuples and dicts by pure functions.

Nothing here runs rclone; photos_sync.system.execute does. Secrets never appear in an argv: a
remote is described to rclone only through `RCLONE_CONFIG_<REMOTE>_<KEY>` variables in the
child's own environment, which other users cannot read (unlike /proc/<pid>/cmdline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Name of the raw storage remote (b2, s3, local) in rclone's environment config.
BASE_REMOTE = "psbase"
#: Name of the crypt overlay remote; every backup path is addressed through it.
CRYPT_REMOTE = "pscrypt"
#: Folder inside the crypt remote that receives files deleted or replaced at the source.
ARCHIVE_FOLDER = ".deleted"
#: Small encrypted file written at setup; its presence proves the destination is mounted,
#: reachable and readable with our password.
DESTINATION_MARKER = ".photos-sync-destination"
#: Folder in the crypt remote that holds photos-sync's own files (the manifest's copy, #15):
#: not part of the Immich tree, so never restored into it.
META_FOLDER = ".photos-sync"
#: Compare file names byte for byte. By default rclone matches names after Unicode NFC
#: normalisation, so of two source names that differ only in normalisation (NFC and NFD
#: `café.jpg`, or two such folders) it copies one and drops the other with a NOTICE
#: ("Duplicate object found in source - ignoring"): a silent loss (#18). Every command that
#: matches names (sync, copy, check, cryptcheck) gets it.
EXACT_NAMES = "--no-unicode-normalization"


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """One rclone remote: its name, backend type and options (option values may be secret)."""

    name: str
    type: str
    options: Mapping[str, str] = field(default_factory=dict)


def remote_env(remotes: Sequence[RemoteSpec]) -> dict[str, str]:
    """Environment variables that define `remotes` for rclone, plus an empty config path.

    `RCLONE_CONFIG=""` keeps rclone from reading (or writing) the user's own rclone.conf,
    so a same-named remote there can never shadow ours.
    """
    env = {"RCLONE_CONFIG": ""}
    for remote in remotes:
        prefix = f"RCLONE_CONFIG_{remote.name.upper()}_"
        env[prefix + "TYPE"] = remote.type
        for key, value in remote.options.items():
            env[prefix + key.upper()] = value
    return env


def crypt_remote(underlying: str, obscured_password: str, obscured_salt: str | None) -> RemoteSpec:
    """The crypt overlay over `underlying` (e.g. "psbase:bucket/path" or "/mnt/nas/immich").

    File and directory names are encrypted as well as contents. Passwords must already be
    obscured the way rclone.conf stores them (see execute.obscure).
    """
    options = {
        "remote": underlying,
        "password": obscured_password,
        "filename_encryption": "standard",
        "directory_name_encryption": "true",
    }
    if obscured_salt:
        options["password2"] = obscured_salt
    return RemoteSpec(CRYPT_REMOTE, "crypt", options)


def crypt_path(*parts: str) -> str:
    """An rclone path inside the crypt remote: crypt_path("library") -> "pscrypt:library"."""
    inner = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return f"{CRYPT_REMOTE}:{inner}"


def archive_path(run_stamp: str, folder: str) -> str:
    """Where a run moves files that the source deleted or replaced: .deleted/<stamp>/<folder>."""
    return crypt_path(ARCHIVE_FOLDER, run_stamp, folder)


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Tunables of one `rclone sync`; None leaves rclone's (or the backend's) default."""

    stats_interval: float = 60
    dry_run: bool = False
    bwlimit: str | None = None
    transfers: int | None = None
    checkers: int | None = None
    max_delete: int | None = None
    fast_list: bool = False
    #: follow symbolic links at the source (rclone --copy-links, BACKUP_FOLLOW_SYMLINKS)
    copy_links: bool = False
    #: source paths (relative, '/'-separated) to leave out, e.g. symbolic-link loops
    exclude_paths: tuple[str, ...] = ()
    extra_flags: tuple[str, ...] = ()
    #: rclone's remote control address ("unix:///path" or "127.0.0.1:PORT"), so a running
    #: sync's bandwidth can be changed (core/bwlimit); its user and password go in the
    #: environment (RcServer.env), never here.
    rc_addr: str | None = None


def _format_interval(seconds: float) -> str:
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


def logging_flags(stats_interval: float) -> tuple[str, ...]:
    """Flags that make rclone log JSON lines to stderr: per-file INFO lines and periodic stats."""
    return (
        "--use-json-log",
        "--verbose",
        "--stats",
        _format_interval(stats_interval),
        "--stats-log-level",
        "NOTICE",
    )


_FILTER_SPECIALS = frozenset("*?[]{}\\")


def exclude_pattern(path: str) -> str:
    """An rclone filter rule that matches exactly the file or folder at `path` (relative to
    the sync's source) and everything below it, whatever characters its name holds."""
    escaped = "".join(f"\\{c}" if c in _FILTER_SPECIALS else c for c in path.strip("/"))
    return f"/{escaped}/**"


def throughput_flags(options: SyncOptions) -> list[str]:
    """The bandwidth limit and the parallelism of a transfer (BACKUP_BWLIMIT,
    BACKUP_TRANSFERS, BACKUP_CHECKERS and the destination's tuning), when set."""
    flags: list[str] = []
    if options.bwlimit:
        flags += ["--bwlimit", options.bwlimit]
    if options.transfers is not None:
        flags += ["--transfers", str(options.transfers)]
    if options.checkers is not None:
        flags += ["--checkers", str(options.checkers)]
    return flags


def sync_argv(
    binary: str,
    source: str,
    destination: str,
    archive: str,
    options: SyncOptions,
) -> tuple[str, ...]:
    """argv for `rclone sync SOURCE DESTINATION` that archives instead of deleting.

    `--backup-dir` moves every file the sync would delete or overwrite into `archive`, so a
    sync can never destroy data. `--max-delete` stops a sync that would archive more than
    that many files (an emptied source). `--retries 2` lets rclone repeat the pass once at
    once, which clears what a killed run left behind (stale `.partial` files make the first
    pass after a crash fail); retrying beyond that is photos-sync's, which tracks attempts in
    the DB and backs off between them.
    """
    argv: list[str] = [binary, "sync", source, destination, "--backup-dir", archive, EXACT_NAMES]
    argv += logging_flags(options.stats_interval)
    argv += ["--retries", "2", "--low-level-retries", "10"]
    if options.dry_run:
        argv.append("--dry-run")
    argv += throughput_flags(options)
    if options.max_delete is not None and options.max_delete > 0:
        argv += ["--max-delete", str(options.max_delete)]
    if options.fast_list:
        argv.append("--fast-list")
    if options.copy_links:
        argv.append("--copy-links")
    for path in options.exclude_paths:
        argv += ["--exclude", exclude_pattern(path)]
    if options.rc_addr:
        argv += ["--rc", "--rc-addr", options.rc_addr]
    argv += options.extra_flags
    return tuple(argv)


def upload_argv(
    binary: str,
    source: str,
    destination: str,
    files_from: str,
    options: SyncOptions,
) -> tuple[str, ...]:
    """argv for an incremental run's upload: `rclone copy SOURCE DESTINATION` of exactly the
    files listed in `files_from` (exact bytes, one per line), without listing either side.

    `--no-traverse` keeps rclone from listing the destination (it would page through every
    name of the folder on B2 or S3); `--no-check-dest` from even asking whether each file is
    there: the manifest says they are new or changed, and a changed file's old copy was
    moved into the archive first. Bandwidth, transfers, remote control and the logging
    flags are the sync's.
    """
    argv: list[str] = [
        binary,
        "copy",
        source,
        destination,
        "--files-from-raw",
        files_from,
        "--no-traverse",
        "--no-check-dest",
        EXACT_NAMES,
    ]
    argv += logging_flags(options.stats_interval)
    argv += ["--retries", "2", "--low-level-retries", "10"]
    argv += throughput_flags(options)
    if options.rc_addr:
        argv += ["--rc", "--rc-addr", options.rc_addr]
    argv += options.extra_flags
    return tuple(argv)


def listed_copy_argv(
    binary: str,
    source: str,
    destination: str,
    archive: str,
    files_from: str,
    options: SyncOptions,
) -> tuple[str, ...]:
    """argv for `rclone copy SOURCE DESTINATION` of the files listed in `files_from` (exact
    bytes, one per line) that archives what it replaces: the people thumbnails of thumbs/.

    A copy deletes nothing, so the backup of a listed file the source lost stays; a file the
    copy overwrites is moved into `archive` first (`--backup-dir`), as a sync does. Each
    listed file is looked up by name (`--no-traverse`): the rest of the folder, which may be
    millions of thumbnails, is never listed on either side."""
    argv: list[str] = [
        binary,
        "copy",
        source,
        destination,
        "--files-from-raw",
        files_from,
        "--backup-dir",
        archive,
        "--no-traverse",
        EXACT_NAMES,
    ]
    argv += logging_flags(options.stats_interval)
    argv += ["--retries", "2", "--low-level-retries", "10"]
    if options.dry_run:
        argv.append("--dry-run")
    argv += throughput_flags(options)
    if options.copy_links:
        argv.append("--copy-links")
    if options.rc_addr:
        argv += ["--rc", "--rc-addr", options.rc_addr]
    argv += options.extra_flags
    return tuple(argv)


@dataclass(frozen=True, slots=True)
class RcServer:
    """Where a sync's rclone serves its remote control API, and its credentials."""

    addr: str
    user: str
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """rclone reads --rc-user/--rc-pass from these, keeping them out of argv."""
        return {"RCLONE_RC_USER": self.user, "RCLONE_RC_PASS": self.password}


def simple_argv(binary: str, command: str, *args: str) -> tuple[str, ...]:
    """argv for a short rclone command (lsjson, rcat, cat, deletefile, mkdir) with JSON logs."""
    return (binary, command, *args, "--use-json-log", "--retries", "1")


def b2_lifecycle_argv(binary: str, bucket: str) -> tuple[str, ...]:
    """argv for `rclone backend lifecycle psbase:BUCKET`, which prints a B2 bucket's lifecycle
    rules as a JSON list (rclone >= 1.63; read-only: without `-o` options nothing is set).
    Quick to give up: it is one informational call of `backup --check`."""
    return simple_argv(
        binary,
        "backend",
        "lifecycle",
        f"{BASE_REMOTE}:{bucket}",
        "--json",
        "--low-level-retries",
        "1",
        "--contimeout",
        "15s",
        "--timeout",
        "60s",
    )


def copy_argv(
    binary: str,
    source: str,
    destination: str,
    *,
    stats_interval: float,
    overwrite: bool,
    files_from: str | None = None,
    excludes: tuple[str, ...] = (),
    dry_run: bool = False,
    bwlimit: str | None = None,
) -> tuple[str, ...]:
    """argv for `rclone copy` used by restores (`bwlimit`: BACKUP_BWLIMIT, as for backups).

    Without `overwrite`, `--ignore-existing` guarantees no file already in the target is
    touched; a resumed restore then skips what it already wrote (rclone writes each file
    under a temporary name and renames it when complete). With `overwrite`, files that differ
    are replaced and identical ones skipped.
    """
    argv: list[str] = [binary, "copy", source, destination, EXACT_NAMES]
    argv += logging_flags(stats_interval)
    argv += ["--retries", "2"]
    if not overwrite:
        argv.append("--ignore-existing")
    if files_from is not None:
        argv += ["--files-from-raw", files_from]
    for pattern in excludes:
        argv += ["--exclude", pattern]
    if dry_run:
        argv.append("--dry-run")
    if bwlimit:
        argv += ["--bwlimit", bwlimit]
    return tuple(argv)


def check_argv(
    binary: str,
    source: str,
    backup: str,
    *,
    download: bool,
    files_from: str | None = None,
    fast_list: bool = False,
) -> tuple[str, ...]:
    """argv for `rclone cryptcheck` (hashes) or `rclone check --download` (content).

    `fast_list` (cloud storage): list recursively in as few calls as possible (B2/S3 charge
    per listing call) rather than one call per directory.

    `--combined -` prints one line per file on stdout: `= path` (same), `+ path` (only in
    the source: missing from the backup), `- path` (only in the backup), `* path` (differs),
    `! path` (could not be checked).
    """
    if download:
        argv: list[str] = [binary, "check", source, backup, "--download"]
    else:
        argv = [binary, "cryptcheck", source, backup]
    argv += ["--combined", "-", EXACT_NAMES, "--use-json-log", "--retries", "1"]
    if files_from is not None:
        argv += ["--files-from-raw", files_from]
    if fast_list:
        argv.append("--fast-list")
    return tuple(argv)
