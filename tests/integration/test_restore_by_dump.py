"""Restores that read Immich's database dump, in-process: `--album/--person/--user/--taken` (and
with `--as-of` and `--dry-run`), and `--immich`, from a real backup (real rclone, a local
destination) of a generated Immich tree whose dumps describe it (tests/immich_tree.py)."""

from __future__ import annotations

import asyncio
import copy
import gzip
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from photos_sync.core.config import Settings
from photos_sync.core.events import RestoreRequest, RunRefused, RunRequest, UsageProblem
from photos_sync.core.immich_dump import IMMICH_FOLDERS
from photos_sync.core.immich_select import Criteria, Taken
from photos_sync.engine.destination import DestinationContext
from photos_sync.engine.restore import Restorer, RestoreResult
from photos_sync.engine.runner import Runner
from photos_sync.engine.setup import key_file_path, setup_local
from photos_sync.storage.settings_io import load_settings
from photos_sync.storage.store import Store
from tests.immich_tree import (
    DUMP_V1_137,
    DUMP_V2_5,
    DumpFlavour,
    ImmichDb,
    TreeStats,
    db_tables,
    dump_lines,
    make_immich_tree,
    write_dump,
)
from tests.support import plain_rclone
from tests.support.destinations import clone_in_process

pytestmark = pytest.mark.timeout(180)


# -- what the database says, independently of the code under test -----------------------------


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def asset_files(db: ImmichDb, ids: Iterable[str]) -> set[str]:
    """The originals and sidecars of the assets `ids` that a restore by meaning brings back:
    not those in Immich's trash, not those of external libraries."""
    files: set[str] = set()
    for asset_id in ids:
        asset = db.asset(asset_id)
        if asset.external or asset.deleted_at:
            continue
        files.add(asset.original)
        if asset.sidecar:
            files.add(asset.sidecar)
    return files


def album_files(db: ImmichDb, name: str) -> set[str]:
    (album,) = [a for a in db.albums if a.name == name]
    return asset_files(db, album.asset_ids)


def person_ids(db: ImmichDb, name: str) -> set[str]:
    (person,) = [p for p in db.people if p.name == name]
    return {asset_id for asset_id, person_id in db.faces if person_id == person.id}


@dataclass
class Backup:
    root: Path
    stats: TreeStats
    settings: Settings
    store: Store
    dest: Path

    @property
    def db(self) -> ImmichDb:
        assert self.stats.db is not None
        return self.stats.db

    async def restore(self, target: Path, **kw: Any) -> RestoreResult:
        request = RestoreRequest("nas", target, **kw)
        return await Restorer(DestinationContext(self.settings, self.store)).run(request)

    async def backup(self) -> None:
        result = await Runner(self.settings, self.store).run(RunRequest())
        assert result.ok, result

    def crypt_env(self) -> dict[str, str]:
        return plain_rclone.crypt_env(self.dest, key_file_path(self.settings, "nas"))

    def backed_up(self) -> set[str]:
        """Every plain path in the live backup, as plain rclone lists it."""
        listed = plain_rclone.run(["lsf", "-R", "--files-only", "check:"], self.crypt_env())
        assert listed.returncode == 0, listed.stderr
        return {line for line in listed.stdout.splitlines() if not line.startswith(".")}


async def _backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flavour: DumpFlavour, **env: str
) -> AsyncIterator[Backup]:
    root = tmp_path / "immich"
    stats = make_immich_tree(root, sql_dump=flavour)
    monkeypatch.setenv("BACKUP_IMMICH_PATH", str(root))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    dest = tmp_path / "dest"
    copied = clone_in_process(settings, dest)
    store = await Store.open(settings.db_path)
    try:
        if not copied:
            await setup_local(settings, store, name="nas", path=dest)
        backup = Backup(root, stats, settings, store, dest)
        await backup.backup()
        yield backup
    finally:
        await store.close()


@pytest.fixture
async def v2_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Backup]:
    """A backup (default settings: no thumbs/, no encoded-video/) of an Immich v2.5 tree."""
    async for backup in _backed_up(tmp_path, monkeypatch, DUMP_V2_5):
        yield backup


# -- restore by meaning --------------------------------------------------------------------------


async def test_an_album_restore_fetches_exactly_that_albums_files(
    v2_5: Backup, tmp_path: Path
) -> None:
    db = v2_5.db
    assert len(db.albums) == 3
    for number, album in enumerate(db.albums):
        target = tmp_path / f"album-{number}"
        result = await v2_5.restore(target, selection=Criteria(album=album.name))
        expected = album_files(db, album.name)
        assert result.ok, result.as_dict()
        assert files_of(target) == expected, album.name
        assert result.files == len(expected)
        selection = result.selection
        assert selection is not None
        assert selection["dump"] == v2_5.stats.dump_names[-1]  # the newest dump
        assert selection["files"] == len(expected)
        assert selection["not_in_backup"] == 0
        external = [i for i in album.asset_ids if db.asset(i).external]
        assert selection["outside"] == len(external)
        assert f'album "{album.name}": ' in selection["summary"]
    # the Family album holds files of two users, sidecars included
    family = album_files(db, "Family")
    assert {path.split("/")[1] for path in family} == {"user0", "user1"}
    assert any(path.endswith(".xmp") for path in family)
    # --path narrows the choice
    narrowed = await v2_5.restore(
        tmp_path / "narrowed", selection=Criteria(album="Family"), path="library/user1"
    )
    assert narrowed.ok
    assert files_of(tmp_path / "narrowed") == {
        path for path in family if path.startswith("library/user1/")
    }


async def test_person_user_and_taken_choose_their_assets_and_combine(
    v2_5: Backup, tmp_path: Path
) -> None:
    db = v2_5.db
    friend = person_ids(db, "User 0 friend")
    result = await v2_5.restore(tmp_path / "person", selection=Criteria(person="User 0 friend"))
    assert result.ok and files_of(tmp_path / "person") == asset_files(db, friend)

    user1 = db.users[1]
    owned = {a.id for a in db.assets if a.owner_id == user1.id}
    result = await v2_5.restore(tmp_path / "user", selection=Criteria(user=user1.email.upper()))
    assert result.ok and files_of(tmp_path / "user") == asset_files(db, owned)
    assert any(path.startswith("upload/") for path in files_of(tmp_path / "user"))

    # 2021/07 holds the two originals whose names need escaping in the dump
    in_2021 = {a.id for a in db.assets if a.taken.startswith("2021-")}
    result = await v2_5.restore(tmp_path / "taken", selection=Criteria(taken=Taken(2021)))
    assert result.ok and files_of(tmp_path / "taken") == asset_files(db, in_2021)
    assert "library/user0/2021/07/Été à la plage #1.jpg" in files_of(tmp_path / "taken")
    assert "library/user0/2021/07/scan\\02 (copy).jpg" in files_of(tmp_path / "taken")

    (album,) = [a for a in db.albums if a.name == "Holidays of User 0"]
    year = int(db.asset(album.asset_ids[0]).taken[:4])
    both = {i for i in album.asset_ids if db.asset(i).taken.startswith(f"{year}-")}
    criteria = Criteria(album=album.name, taken=Taken(year))
    result = await v2_5.restore(tmp_path / "both", selection=criteria)
    assert result.ok and files_of(tmp_path / "both") == asset_files(db, both)
    assert files_of(tmp_path / "both") != album_files(db, album.name)  # the year left some out


async def test_a_dry_run_reads_the_dump_and_writes_nothing(v2_5: Backup, tmp_path: Path) -> None:
    target = tmp_path / "dry"
    result = await v2_5.restore(target, selection=Criteria(album="Family"), dry_run=True)
    expected = album_files(v2_5.db, "Family")
    assert result.ok
    assert result.files == len(expected)
    assert result.job is None
    assert not target.exists()
    assert not list(v2_5.settings.data_dir.glob("restore-dump-*"))  # the dump is gone too


async def test_unknown_names_are_usage_errors_naming_close_matches(
    v2_5: Backup, tmp_path: Path
) -> None:
    with pytest.raises(UsageProblem, match='no album "holidays" in the database dump; close'):
        await v2_5.restore(tmp_path / "x", selection=Criteria(album="holidays"))
    with pytest.raises(UsageProblem, match='close matches: "User 0 friend"'):
        await v2_5.restore(tmp_path / "x", selection=Criteria(person="User 0 frend"))
    with pytest.raises(RunRefused, match="nothing to restore: no file in the database dump"):
        await v2_5.restore(tmp_path / "x", selection=Criteria(taken=Taken(1999)))
    assert not (tmp_path / "x").exists()


async def test_a_truncated_dump_is_an_error_and_restores_nothing(
    v2_5: Backup, tmp_path: Path
) -> None:
    newest = v2_5.stats.dump_names[-1]
    text = gzip.decompress((v2_5.root / "backups" / newest).read_bytes())
    cut = text[: text.index(b"COPY public.asset ")] + b"COPY public.asset (id) FROM stdin;\n"
    env = v2_5.crypt_env()
    subprocess.run(
        [plain_rclone.rclone_binary(), "rcat", f"check:backups/{newest}"],
        input=gzip.compress(cut),
        env=env,
        check=True,
        timeout=60,
    )
    with pytest.raises(RunRefused, match=f"the database dump {newest} is unusable: .*truncated"):
        await v2_5.restore(tmp_path / "x", selection=Criteria(album="Family"))
    with pytest.raises(RunRefused, match="truncated"):
        await v2_5.restore(tmp_path / "y", immich=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    # a backup without any dump: said so
    assert plain_rclone.run(["purge", "check:backups"], env).returncode == 0
    with pytest.raises(RunRefused, match="holds no Immich database dump"):
        await v2_5.restore(tmp_path / "x", selection=Criteria(album="Family"))


async def test_a_chosen_file_the_backup_lacks_is_named(v2_5: Backup, tmp_path: Path) -> None:
    expected = sorted(album_files(v2_5.db, "Family"))
    lost = expected[0]
    env = v2_5.crypt_env()
    encrypted = plain_rclone.run(["cryptdecode", "--reverse", "check:", lost], env)
    (v2_5.dest / encrypted.stdout.split("\t")[-1].strip()).unlink()
    result = await v2_5.restore(tmp_path / "r", selection=Criteria(album="Family"))
    assert not result.ok
    assert result.error is None  # every copy worked: the file was not there to copy
    assert result.selection is not None
    assert result.selection["not_in_backup"] == 1
    assert result.selection["not_in_backup_paths"] == [lost]
    assert files_of(tmp_path / "r") == set(expected[1:])


async def test_as_of_takes_the_dump_and_the_files_of_that_moment(
    v2_5: Backup, tmp_path: Path
) -> None:
    """After the first backup, an asset of an album is deleted from Immich (its file archived
    by the next run) and another one is moved (the next run records the move), and Immich
    writes a newer dump. Now: the album without the deleted asset, the moved file at its new
    path. As of before: the older dump, the deleted file back, the moved file at its old path."""
    db = v2_5.db
    (album,) = [a for a in db.albums if a.name == "Holidays of User 0"]
    members = [i for i in album.asset_ids if not db.asset(i).external]
    gone, moved = db.asset(members[0]), db.asset(members[1])
    gone_bytes = (v2_5.root / gone.original).read_bytes()
    moved_bytes = (v2_5.root / moved.original).read_bytes()
    between = datetime.now(UTC)
    await asyncio.sleep(1.1)  # later files and runs are after `between`

    newer = copy.deepcopy(db)
    newer.assets = [a for a in newer.assets if a.id != gone.id]
    for each in newer.albums:
        each.asset_ids = [i for i in each.asset_ids if i != gone.id]
    newer.faces = [(a, p) for a, p in newer.faces if a != gone.id]
    new_path = moved.original.replace("/user0/", "/user0/moved/")
    newer.asset(moved.id).original = new_path
    (v2_5.root / gone.original).unlink()
    (v2_5.root / new_path).parent.mkdir(parents=True)
    shutil.move(v2_5.root / moved.original, v2_5.root / new_path)
    name = DUMP_V2_5.dump_name(datetime(2026, 11, 22, 2, 0, 0))
    write_dump(v2_5.root / "backups" / name, dump_lines(DUMP_V2_5, db_tables(newer, DUMP_V2_5)))
    await v2_5.backup()

    now = await v2_5.restore(tmp_path / "now", selection=Criteria(album=album.name))
    assert now.ok and now.selection is not None
    assert now.selection["dump"] == name
    assert files_of(tmp_path / "now") == album_files(newer, album.name)
    assert (tmp_path / "now" / new_path).read_bytes() == moved_bytes

    then = await v2_5.restore(
        tmp_path / "then", selection=Criteria(album=album.name), mode="as-of", moment=between
    )
    assert then.ok, then.as_dict()
    assert then.selection is not None
    assert then.selection["dump"] == v2_5.stats.dump_names[-1]
    assert files_of(tmp_path / "then") == album_files(db, album.name)
    assert (tmp_path / "then" / gone.original).read_bytes() == gone_bytes
    assert (tmp_path / "then" / moved.original).read_bytes() == moved_bytes

    # a dry run as of then counts the same files and writes nothing
    dry = await v2_5.restore(
        tmp_path / "dry",
        selection=Criteria(album=album.name),
        mode="as-of",
        moment=between,
        dry_run=True,
    )
    assert dry.ok and dry.files == len(album_files(db, album.name))
    assert not (tmp_path / "dry").exists()

    # the whole Immich as of then: the older dump, the deleted original back
    whole = await v2_5.restore(tmp_path / "immich-then", immich=True, mode="as-of", moment=between)
    assert whole.ok, whole.as_dict()
    assert whole.immich_restore is not None
    assert whole.immich_restore["dump"] == v2_5.stats.dump_names[-1]
    assert files_of(tmp_path / "immich-then" / "backups") == {
        v2_5.stats.dump_names[-1],
        ".immich",
    }
    assert (tmp_path / "immich-then" / gone.original).read_bytes() == gone_bytes
    assert (tmp_path / "immich-then" / moved.original).read_bytes() == moved_bytes
    assert not (tmp_path / "immich-then" / new_path).exists()
    assert whole.immich_restore["check"]["missing"] == 0


# -- restore --immich ----------------------------------------------------------------------------


def assert_every_reference_is_there(db: ImmichDb, target: Path, backed_up: set[str]) -> None:
    """Every path the database references inside UPLOAD_LOCATION that the backup holds is in
    the restored tree; external originals are not."""
    referenced = db.referenced()
    assert referenced & backed_up, "nothing to compare"
    for path in referenced & backed_up:
        assert (target / path).is_file(), path
    for path in db.external_originals():
        assert not (target / path.lstrip("/")).exists()


def assert_markers(target: Path) -> None:
    for folder in IMMICH_FOLDERS:
        assert (target / folder / ".immich").is_file(), folder


async def test_restore_immich_gives_a_tree_where_every_referenced_path_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the generated folders backed up, nothing is left to regenerate."""
    async for backup in _backed_up(
        tmp_path, monkeypatch, DUMP_V2_5, BACKUP_INCLUDE_GENERATED="true"
    ):
        target = tmp_path / "restored"
        result = await backup.restore(target, immich=True)
        assert result.ok, result.as_dict()
        db = backup.db
        assert_every_reference_is_there(db, target, backup.backed_up())
        assert_markers(target)
        newest = backup.stats.dump_names[-1]
        # the dump of the restore, byte for byte, and no other
        assert files_of(target / "backups") == {newest, ".immich"}
        source_dump = (backup.root / "backups" / newest).read_bytes()
        assert (target / "backups" / newest).read_bytes() == source_dump
        view = result.immich_restore
        assert view is not None
        check = view["check"]
        inside = len(db.referenced())
        assert check["referenced"] == inside + len(db.external_originals())
        assert (check["present"], check["missing"], check["to_regenerate"]) == (inside, 0, {})
        assert check["outside"] == len(db.external_originals())
        assert check["container_location"] == "/data"
        assert (view["dump_format"], view["immich_version"]) == ("pg_dump", "2.5.6")
        steps = "\n".join(view["next_steps"])
        assert '"Restore from backup"' in steps and newest in steps
        assert "No job needs to run again" in steps
        # the whole tree holds what the source holds (but the older dump)
        older = f"backups/{backup.stats.dump_names[0]}"
        assert files_of(target) == files_of(backup.root) - {older}
        # every file but the backups/ marker, written after the copies, was restored
        assert result.files == len(files_of(target) - {"backups/.immich"})


async def test_restore_immich_counts_what_immich_must_regenerate(
    v2_5: Backup, tmp_path: Path
) -> None:
    target = tmp_path / "restored"
    result = await v2_5.restore(target, immich=True)
    assert result.ok, result.as_dict()
    db = v2_5.db
    assert_markers(target)
    assert_every_reference_is_there(db, target, v2_5.backed_up())
    originals = {a.original for a in db.assets if not a.external}
    originals |= {a.sidecar for a in db.assets if a.sidecar} | {u.profile for u in db.users}
    assert all((target / path).is_file() for path in originals)
    view = result.immich_restore
    assert view is not None
    check = view["check"]
    assert check["missing"] == 0
    regenerate = check["to_regenerate"]
    thumbs = {path for a in db.assets for _, path in a.files}
    assert regenerate["thumbnails"] == len(thumbs)  # thumbs/ is not backed up by default
    assert regenerate["encoded videos"] == len([a for a in db.assets if a.encoded_video])
    faces = [p.thumbnail for p in db.people]
    assert regenerate.get("people thumbnails", 0) == len(
        [path for path in faces if not (target / path).exists()]
    )
    steps = "\n".join(view["next_steps"])
    assert '"Generate Thumbnails" for All' in steps
    assert '"Transcode Videos" for All' in steps

    # a restore into a folder that is not empty is refused, unless --overwrite
    with pytest.raises(UsageProblem, match="is not empty: restore --immich builds a fresh"):
        await v2_5.restore(target, immich=True)
    again = await v2_5.restore(target, immich=True, overwrite=True)
    assert again.ok and again.immich_restore is not None
    assert again.immich_restore["check"]["missing"] == 0


async def test_restore_immich_names_an_original_the_backup_lacks(
    v2_5: Backup, tmp_path: Path
) -> None:
    lost = next(a.original for a in v2_5.db.assets if a.original.startswith("upload/"))
    env = v2_5.crypt_env()
    encrypted = plain_rclone.run(["cryptdecode", "--reverse", "check:", lost], env)
    (v2_5.dest / encrypted.stdout.split("\t")[-1].strip()).unlink()
    result = await v2_5.restore(tmp_path / "restored", immich=True)
    assert not result.ok
    assert result.error is None
    assert result.immich_restore is not None
    check = result.immich_restore["check"]
    assert check["missing"] == 1
    assert check["first_missing"] == [f"{lost} (original)"]
    assert_markers(tmp_path / "restored")


async def test_restore_immich_of_an_older_version_with_the_old_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async for backup in _backed_up(tmp_path, monkeypatch, DUMP_V1_137):
        target = tmp_path / "restored"
        dry = await backup.restore(target, immich=True, dry_run=True)
        assert dry.ok and not target.exists()
        result = await backup.restore(target, immich=True)
        assert result.ok, result.as_dict()
        assert_every_reference_is_there(backup.db, target, backup.backed_up())
        assert_markers(target)
        view = result.immich_restore
        assert view is not None
        assert (view["dump_format"], view["immich_version"]) == ("pg_dumpall", "1.137.3")
        assert view["check"]["container_location"] == "/usr/src/app/upload"
        steps = "\n".join(view["next_steps"])
        newest = backup.stats.dump_names[-1]
        assert f'gunzip --stdout "{target}/backups/{newest}" | sed ' in steps
        assert "psql --dbname=postgres --username=<DB_USERNAME>" in steps
        assert "- ${UPLOAD_LOCATION}:/usr/src/app/upload" in steps
        # and by meaning, from a pg_dumpall dump with the old prefix
        family = await backup.restore(tmp_path / "family", selection=Criteria(album="Family"))
        assert family.ok and files_of(tmp_path / "family") == album_files(backup.db, "Family")
