"""`restore --immich`, the pure part: which dump belongs to a restore, the check of a restored
tree against the dump, and the next steps for the Immich version that wrote it."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from photos_sync.core.immich_dump import (
    Asset,
    AssetFile,
    DumpRecord,
    Library,
    Person,
    StoredPath,
    User,
)
from photos_sync.core.immich_restore import (
    SEARCH_PATH_SED,
    DumpInBackup,
    TreeCheck,
    dump_facts,
    is_routine_dump,
    newest_dump,
    next_steps,
)

NEW = "immich-db-backup-20261121T020000-v2.5.6-pg14.19.sql.gz"
OLDER = "immich-db-backup-20261120T020000-v2.5.6-pg14.19.sql.gz"
#: 2026-11-21 01:30 UTC, in epoch milliseconds: before NEW's 02:00 in UTC, after it in UTC+1
EPOCH = "immich-db-backup-1795224600000.sql.gz"


def dump(name: str) -> DumpInBackup:
    return DumpInBackup(name, f"backups/{name}")


def test_only_dumps_of_immichs_backup_job_count() -> None:
    assert is_routine_dump(NEW) and is_routine_dump(EPOCH)
    assert not is_routine_dump(f"restore-point-{NEW}")
    assert not is_routine_dump(f"uploaded-{NEW}")
    assert not is_routine_dump(f"{NEW}.tmp")
    assert not is_routine_dump("notes.txt")


def test_the_newest_dump_by_the_time_in_its_name() -> None:
    dumps = [dump(OLDER), dump(NEW), dump(f"restore-point-{NEW[:-7]}9.sql.gz")]
    assert newest_dump(dumps, UTC) == dump(NEW)
    assert newest_dump([dump(f"uploaded-{NEW}")], UTC) is None
    assert newest_dump([], UTC) is None


def test_naive_names_are_the_servers_local_time_against_epoch_names() -> None:
    # NEW says 02:00 local; EPOCH is 01:30 UTC
    assert newest_dump([dump(NEW), dump(EPOCH)], UTC) == dump(NEW)
    # 02:00 at UTC+1 is 01:00 UTC: the epoch one is newer
    assert newest_dump([dump(NEW), dump(EPOCH)], timezone(timedelta(hours=1))) == dump(EPOCH)


def inside(relative: str, prefix: str = "/data") -> StoredPath:
    return StoredPath(f"{prefix}/{relative}", relative)


def asset(asset_id: str, original: StoredPath, **kw: object) -> Asset:
    values: dict[str, object] = {
        "id": asset_id,
        "owner_id": "u",
        "library_id": None,
        "type": "IMAGE",
        "original": original,
        "original_file_name": "x.jpg",
        "encoded_video": None,
        "sidecar": None,
        "file_created_at": None,
        "local_date_time": None,
        "deleted_at": None,
        "status": "active",
        "visibility": "timeline",
        "live_photo_video_id": None,
    }
    values.update(kw)
    return Asset(**values)  # type: ignore[arg-type]


def test_the_check_counts_present_missing_to_regenerate_and_outside() -> None:
    present = {
        "upload/u/a.jpg",
        "upload/u/a.jpg.xmp",
        "profile/u/me.jpg",
        "thumbs/u/p.jpeg",
    }
    records: list[DumpRecord] = [
        asset("a", inside("upload/u/a.jpg"), sidecar=inside("upload/u/a.jpg.xmp")),
        asset("b", inside("upload/u/b.mp4"), encoded_video=inside("encoded-video/u/b.mp4")),
        asset("c", StoredPath("/mnt/photos/c.jpg", None), library_id="lib"),
        AssetFile("a", "preview", inside("thumbs/u/a-preview.jpeg")),
        AssetFile("a", "thumbnail", inside("thumbs/u/a-thumbnail.webp")),
        AssetFile("b", "sidecar", inside("upload/u/b.mp4.xmp")),
        User("u", "u@example.com", "U", inside("profile/u/me.jpg"), None, None),
        Person("p", "u", "Grandma", inside("thumbs/u/p.jpeg"), False),
        Person("q", "u", "Uncle", inside("thumbs/u/q.jpeg"), False),
        Library("lib", "Family", "u", ("/mnt/photos",), (), None),
    ]
    check = TreeCheck()
    for record in records:
        check.feed(record, present.__contains__)
    assert (check.referenced, check.present, check.missing, check.outside) == (11, 4, 2, 1)
    assert check.first_missing == ["upload/u/b.mp4 (original)", "upload/u/b.mp4.xmp (sidecar)"]
    assert check.regenerate == {"encoded video": 1, "thumbnail": 2, "people thumbnail": 1}
    assert check.to_regenerate == 4
    assert check.import_paths == ["/mnt/photos"]
    assert check.location == "/data"
    assert check.summary() == (
        "files the database references: 11 referenced, 4 present, 2 missing, 4 to regenerate "
        "(1 encoded video, 1 people thumbnail, 2 thumbnails), 1 outside UPLOAD_LOCATION "
        "(external libraries)"
    )
    document = check.as_dict()
    assert document["to_regenerate"] == {
        "encoded videos": 1,
        "people thumbnails": 1,
        "thumbnails": 2,
    }
    assert document["container_location"] == "/data"


def test_assets_immich_is_deleting_are_not_checked() -> None:
    check = TreeCheck()
    for record in (
        asset("gone", inside("upload/u/gone.jpg"), status="deleted"),
        AssetFile("gone", "thumbnail", inside("thumbs/u/gone.webp")),
    ):
        check.feed(record, lambda _path: False)
    assert (check.referenced, check.missing, check.to_regenerate) == (0, 0, 0)


def test_the_check_names_only_the_first_missing_files_and_counts_all() -> None:
    check = TreeCheck()
    for n in range(8):
        check.feed(asset(str(n), inside(f"upload/u/{n}.jpg")), lambda _path: False)
    assert check.missing == 8
    assert len(check.first_missing) == 5


def test_the_older_relative_prefix_is_mounted_at_usr_src_app_upload() -> None:
    check = TreeCheck()
    check.feed(asset("a", inside("upload/u/a.jpg", "upload")), lambda _path: True)
    assert check.location == "/usr/src/app/upload"


def _regenerating() -> TreeCheck:
    """A check of a v1.137 dump (the older prefix) whose thumbs/ and encoded-video/ were not
    restored."""
    old = "/usr/src/app/upload"
    check = TreeCheck()
    check.feed(asset("a", inside("upload/u/a.jpg", old)), lambda _p: True)
    check.feed(AssetFile("a", "thumbnail", inside("thumbs/u/a.webp", old)), lambda _p: False)
    video = inside("encoded-video/u/a.mp4", old)
    check.feed(AssetFile("a", "encoded_video", video), lambda _p: False)
    return check


def test_next_steps_for_immich_2_5_use_the_restore_screen() -> None:
    steps = next_steps(dump_facts(NEW, "pg_dump", "2.5.6"), "/srv/immich", TreeCheck())
    text = "\n".join(steps)
    assert steps[0].startswith("1. In Immich's .env set UPLOAD_LOCATION=/srv/immich and ")
    assert "IMMICH_VERSION=v2.5.6" in text
    assert '"Restore from backup"' in text and f"select {NEW}" in text
    assert "psql" not in text
    assert "mount UPLOAD_LOCATION at /data" in text and "new install" not in text
    assert "No job needs to run again" in text
    assert "Generate Thumbnails" not in text


def test_next_steps_for_older_versions_are_the_documented_pipeline() -> None:
    name = "immich-db-backup-20261120T020000-v1.137.3-pg14.17.sql.gz"
    steps = next_steps(dump_facts(name, "pg_dumpall", "1.137.3"), "/srv/immich", _regenerating())
    text = "\n".join(steps)
    assert (
        f'gunzip --stdout "/srv/immich/backups/{name}" | {SEARCH_PATH_SED} | docker exec -i '
        "immich_postgres psql --dbname=postgres --username=<DB_USERNAME>"
    ) in text
    assert SEARCH_PATH_SED == (
        "sed \"s/SELECT pg_catalog.set_config('search_path', '', false);/SELECT "
        "pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g\""
    )
    assert "IMMICH_VERSION=v1.137.3" in text
    assert "- ${UPLOAD_LOCATION}:/usr/src/app/upload" in text
    assert "the compose file of a new install mounts it at /data" in text
    assert "Immich v2.5 or later" in text  # its name carries its version
    assert '"Generate Thumbnails" for All (1 of the thumbnails' in text
    assert '"Transcode Videos" for All (1 encoded video is not' in text
    numbers = [line.split(".")[0] for line in steps if not line.startswith(" ")]
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)]


def test_an_epoch_named_dump_takes_its_version_from_its_content() -> None:
    facts = dump_facts(EPOCH, "pg_dumpall", "1.123.0")
    assert facts.immich_version == "1.123.0"
    text = "\n".join(next_steps(facts, "/r", TreeCheck()))
    assert "IMMICH_VERSION=v1.123.0" in text
    assert "--dbname=postgres" in text
    assert "Immich v2.5 or later" not in text  # its web UI needs the version in the name
