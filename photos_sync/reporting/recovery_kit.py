"""The recovery kit: rclone.conf text and plain rclone commands that restore a backup
without photos-sync. Pure: the caller supplies the obscured passwords."""

from __future__ import annotations

from collections.abc import Sequence

from photos_sync.core.rclone_args import (
    ARCHIVE_FOLDER,
    CRYPT_REMOTE,
    DESTINATION_MARKER,
    EXACT_NAMES,
    META_FOLDER,
    RemoteSpec,
)


def rclone_conf(remotes: Sequence[RemoteSpec]) -> str:
    """rclone.conf sections for `remotes` (option values as given: passwords obscured)."""
    sections = []
    for remote in remotes:
        lines = [f"[{remote.name}]", f"type = {remote.type}"]
        lines += [f"{key} = {value}" for key, value in remote.options.items()]
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def recovery_kit(
    destination_name: str,
    description: str,
    remotes: Sequence[RemoteSpec],
    plain_password: str,
    plain_salt: str | None,
) -> str:
    """The whole kit as text: a warning, the passwords, rclone.conf, and restore commands."""
    salt_line = plain_salt if plain_salt else "(none: rclone's default salt)"
    return f"""\
# photos-sync recovery kit for destination "{destination_name}" ({description})
#
# SECRET: anyone with this text can read your backup. Keep it in a password manager or
# print it and lock it away. Without the password and salt below the backup CANNOT be
# decrypted by anyone, including you.
#
# encryption password : {plain_password}
# encryption salt     : {salt_line}
#
# To restore on any machine with rclone (https://rclone.org/install/):
#   1. Save the section below as rclone.conf (or append it to `rclone config file`).
#   2. Check the backup is readable:
#        rclone --config rclone.conf lsd {CRYPT_REMOTE}:
#   3. Restore everything except the archive of deleted files:
#        rclone --config rclone.conf copy {CRYPT_REMOTE}: /path/to/restore {EXACT_NAMES} \\
#            --exclude "/{ARCHIVE_FOLDER}/**" --exclude "/{DESTINATION_MARKER}" \\
#            --exclude "/{META_FOLDER}/**" --progress
#      ({EXACT_NAMES}: without it rclone restores only one of two names that differ
#      only in Unicode normalisation, e.g. "café.jpg" written two ways)
#   4. Files deleted or replaced at the source are kept under
#      {CRYPT_REMOTE}:{ARCHIVE_FOLDER}/<run time>/<folder>/:
#        rclone --config rclone.conf lsf {CRYPT_REMOTE}:{ARCHIVE_FOLDER}/
#   Then point Immich's UPLOAD_LOCATION at the restored folder and restore its database
#   from the newest backups/immich-db-backup-*.sql.gz (Immich's docs: "Backup and Restore").

{rclone_conf(remotes)}"""
