"""Immich dump files on disk: real gzip'd dumps from tests/immich_tree.py in three Immich
versions' formats, read back with photos_sync.immich.dump_file; broken gzip and cut dumps."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from photos_sync.core.immich_dump import (
    Album,
    AlbumAsset,
    AlbumUser,
    Asset,
    AssetFace,
    AssetFile,
    DumpEnd,
    DumpRecord,
    Library,
    Person,
    User,
    parse_dump_name,
)
from photos_sync.immich import dump_file
from photos_sync.immich.dump_file import (
    DumpFileProblem,
    check_dump_file,
    dump_file_lines,
    read_dump_file,
)
from tests.immich_tree import (
    DUMP_FLAVOURS,
    DUMP_V1_123,
    DUMP_V1_123_ABSOLUTE,
    DUMP_V2_5,
    DumpFlavour,
    ImmichDb,
    TreeStats,
    corrupt_gzip,
    cut_before_completion,
    cut_gzip_stream,
    cut_mid_copy,
    dump_text,
    make_immich_tree,
)

INFLATERS: list[ModuleType] = [zlib]
if dump_file.INFLATER is not zlib:
    INFLATERS.append(dump_file.INFLATER)


def _tree(
    tmp_path: Path, flavour: DumpFlavour, *, dumps: int = 2, files: int = 12
) -> tuple[Path, TreeStats]:
    root = tmp_path / "immich"
    stats = make_immich_tree(
        root,
        library_files=files,
        upload_files=files,
        dumps=dumps,
        sql_dump=flavour,
        external_root=tmp_path / "external",
    )
    return root, stats


def _newest(root: Path, stats: TreeStats) -> Path:
    return root / "backups" / stats.dump_names[-1]


def _end(records: list[DumpRecord]) -> DumpEnd:
    last = records[-1]
    assert isinstance(last, DumpEnd)
    return last


@pytest.mark.parametrize("flavour", list(DUMP_FLAVOURS.values()), ids=list(DUMP_FLAVOURS))
def test_a_generated_dump_reads_back_as_the_tree_it_describes(
    tmp_path: Path, flavour: DumpFlavour
) -> None:
    root, stats = _tree(tmp_path, flavour)
    db = stats.db
    assert isinstance(db, ImmichDb)
    records = list(read_dump_file(_newest(root, stats)))
    end = _end(records)
    assert end.complete and end.problem is None
    assert end.dump_format == flavour.tool
    assert end.immich_version == flavour.immich_version
    assert end.postgres_version is not None
    assert end.postgres_version.startswith(flavour.postgres_version)

    referenced: set[str] = set()
    outside: list[str] = []
    for record in records:
        paths = []
        if isinstance(record, Asset):
            paths = [record.original, record.sidecar, record.encoded_video]
        elif isinstance(record, AssetFile):
            paths = [record.path]
        elif isinstance(record, Person):
            paths = [record.thumbnail]
        elif isinstance(record, User):
            paths = [record.profile_image]
        for path in paths:
            if path is None:
                continue
            assert path.stored.startswith(flavour.media_location + "/") or path.outside
            if path.relative is None:
                outside.append(path.stored)
            else:
                referenced.add(path.relative)
    # Every path the dump references inside UPLOAD_LOCATION is a file of the tree, and the
    # external-library originals are the only ones outside it.
    assert referenced == db.referenced()
    assert all((root / path).is_file() for path in referenced)
    assert sorted(outside) == sorted(db.external_originals())
    assert all(Path(path).is_file() for path in outside)
    # The unusual names survived escaping: a backslash, spaces and non-ASCII letters.
    assert {p for p in referenced if "Été" in p or "\\" in p} == {
        "library/user0/2021/07/Été à la plage #1.jpg",
        "library/user0/2021/07/scan\\02 (copy).jpg",
    }

    assets = {record.id: record for record in records if isinstance(record, Asset)}
    assert set(assets) == {asset.id for asset in db.assets}
    for asset in db.assets:
        read = assets[asset.id]
        assert read.owner_id == asset.owner_id and read.library_id == asset.library_id
        assert read.local_date_time == asset.taken and read.deleted_at == asset.deleted_at
    assert {(u.id, u.email) for u in records if isinstance(u, User)} == {
        (u.id, u.email) for u in db.users
    }
    assert {(a.id, a.name, a.owner_id) for a in records if isinstance(a, Album)} == {
        (a.id, a.name, a.owner_id) for a in db.albums
    }
    assert {(m.album_id, m.asset_id) for m in records if isinstance(m, AlbumAsset)} == {
        (a.id, asset_id) for a in db.albums for asset_id in a.asset_ids
    }
    assert {(m.album_id, m.user_id) for m in records if isinstance(m, AlbumUser)} == {
        (a.id, user_id) for a in db.albums for user_id in a.shared_with
    }
    assert {(p.id, p.name, p.owner_id, p.hidden) for p in records if isinstance(p, Person)} == {
        (p.id, p.name, p.owner_id, p.hidden) for p in db.people
    }
    assert sorted((f.asset_id, f.person_id or "") for f in records if isinstance(f, AssetFace)) == (
        sorted((asset_id, person_id or "") for asset_id, person_id in db.faces)
    )
    (library,) = (record for record in records if isinstance(record, Library))
    assert library.import_paths == (str(tmp_path / "external"),)


@pytest.mark.parametrize("flavour", list(DUMP_FLAVOURS.values()), ids=list(DUMP_FLAVOURS))
def test_the_dump_name_says_the_version_from_v1_137_on(
    tmp_path: Path, flavour: DumpFlavour
) -> None:
    root, stats = _tree(tmp_path, flavour, dumps=1)
    name = parse_dump_name(stats.dump_names[0])
    assert name is not None and name.created is not None
    if flavour.versioned_name:
        assert name.immich_version_text == flavour.immich_version
        assert name.postgres_version == flavour.postgres_version
    else:
        assert name.immich_version is None  # only the dump's version_history says it
    assert check_dump_file(_newest(root, stats)).immich_version == flavour.immich_version


@pytest.mark.parametrize(
    ("flavour", "prefix"),
    [(DUMP_V1_123, "\tupload/library/"), (DUMP_V1_123_ABSOLUTE, "\t/usr/src/app/upload/library/")],
    ids=["relative", "absolute"],
)
def test_the_older_variants_use_the_old_prefixes_and_table_names(
    tmp_path: Path, flavour: DumpFlavour, prefix: str
) -> None:
    root, stats = _tree(tmp_path, flavour, dumps=1)
    text = dump_text(_newest(root, stats))
    assert "COPY public.assets (" in text and "COPY public.albums_assets_assets (" in text
    assert '"sidecarPath"' in text and prefix in text and "/data/" not in text
    assert text.rstrip("\n").endswith("-- PostgreSQL database cluster dump complete\n--")
    end = check_dump_file(_newest(root, stats))
    assert stats.db is not None
    assert end.complete and dict(end.rows)["assets"] == len(stats.db.assets)


def test_every_dump_in_backups_is_read_and_a_plain_sql_upload_too(tmp_path: Path) -> None:
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=2)
    for name in stats.dump_names:
        assert check_dump_file(root / "backups" / name).complete
    uploaded = root / "backups" / f"uploaded-{stats.dump_names[0].removesuffix('.gz')}"
    uploaded.write_bytes(gzip.decompress(_newest(root, stats).read_bytes()))
    assert check_dump_file(uploaded).complete


def test_a_dump_in_several_gzip_members_is_whole(tmp_path: Path) -> None:
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1)
    text = dump_text(_newest(root, stats)).encode()
    half = len(text) // 2
    joined = tmp_path / "joined.sql.gz"
    joined.write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]) + b"\0" * 8)
    end = check_dump_file(joined)
    assert end.complete, end.problem


# -- what goes wrong --------------------------------------------------------------------------


def test_random_bytes_named_like_a_dump_are_not_a_dump(tmp_path: Path) -> None:
    dump = tmp_path / "immich-db-backup-20261120T020000-v2.3.1-pg14.19.sql.gz"
    dump.write_bytes(os.urandom(5000).replace(b"\x1f\x8b", b"xx"))
    records = list(read_dump_file(dump))
    assert len(records) == 1
    end = _end(records)
    assert not end.complete and end.truncated
    assert end.problem is not None and "is not a gzip file" in end.problem
    assert "\n" not in end.problem and dump.name in end.problem


def test_the_placeholder_dumps_of_the_default_tree_read_as_whole(tmp_path: Path) -> None:
    """Trees made without sql_dump hold whole dumps without tables (a run's consistency
    proof finds nothing referenced and nothing wrong)."""
    root = tmp_path / "immich"
    make_immich_tree(root, dumps=1)
    (dump,) = (root / "backups").glob("*.sql.gz")
    end = _end(list(read_dump_file(dump)))
    assert end.complete and end.rows == () and end.problem is None


@pytest.mark.parametrize("inflater", INFLATERS, ids=lambda module: module.__name__)
def test_a_gzip_stream_cut_short_is_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inflater: ModuleType
) -> None:
    monkeypatch.setattr(dump_file, "INFLATER", inflater)
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1, files=40)
    dump = _newest(root, stats)
    cut_gzip_stream(dump, 0.6)
    records = list(read_dump_file(dump))
    end = _end(records)
    assert not end.complete and end.truncated
    assert end.problem == (
        f"the dump {dump.name} is truncated: its gzip stream ends before the end-of-stream "
        "marker (the file was cut short, e.g. by a full disk)"
    )
    assert any(isinstance(record, Asset) for record in records)  # what came before is read
    with pytest.raises(DumpFileProblem) as raised:
        for _ in dump_file_lines(dump, inflater):
            pass
    assert raised.value.truncated


@pytest.mark.parametrize("inflater", INFLATERS, ids=lambda module: module.__name__)
def test_corrupt_gzip_data_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inflater: ModuleType
) -> None:
    monkeypatch.setattr(dump_file, "INFLATER", inflater)
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1, files=40)
    dump = _newest(root, stats)
    corrupt_gzip(dump)
    end = check_dump_file(dump)
    assert not end.complete and end.truncated
    assert end.problem is not None
    assert end.problem.startswith(f"the dump {dump.name} is not valid gzip (")
    assert end.problem.endswith("): it is damaged or truncated")


def test_a_dump_cut_inside_a_copy_block_is_truncated(tmp_path: Path) -> None:
    root, stats = _tree(tmp_path, DUMP_V1_123, dumps=1)
    dump = _newest(root, stats)
    cut_mid_copy(dump, "assets", keep_rows=3)
    records = list(read_dump_file(dump))
    end = _end(records)
    assert not end.complete and end.truncated
    assert end.problem is not None and "inside the data of table assets" in end.problem
    assert len([record for record in records if isinstance(record, Asset)]) == 3
    assert dict(end.rows)["assets"] == 3


def test_a_dump_without_its_completion_line_is_truncated(tmp_path: Path) -> None:
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1)
    dump = _newest(root, stats)
    cut_before_completion(dump)
    end = check_dump_file(dump)
    assert not end.complete and end.truncated
    assert end.problem is not None
    assert "lacks pg_dump's completion line '-- PostgreSQL database dump complete'" in end.problem


def test_an_empty_or_missing_file_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "immich-db-backup-20261120T020000-v2.5.6-pg14.19.sql.gz"
    empty.write_bytes(b"")
    end = check_dump_file(empty)
    assert end.truncated and end.problem == f"the dump {empty.name} is an empty file"
    missing = check_dump_file(tmp_path / "gone.sql.gz")
    assert not missing.complete and not missing.truncated
    assert missing.problem == "cannot read the dump gone.sql.gz: No such file or directory"


def test_data_after_the_gzip_stream_is_reported(tmp_path: Path) -> None:
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1)
    dump = _newest(root, stats)
    dump.write_bytes(dump.read_bytes() + b"garbage after the end")
    end = check_dump_file(dump)
    assert not end.complete and end.problem == (
        f"the dump {dump.name} has data after its gzip stream: it is damaged"
    )


@pytest.mark.parametrize("inflater", INFLATERS, ids=lambda module: module.__name__)
def test_a_wrong_gzip_checksum_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inflater: ModuleType
) -> None:
    monkeypatch.setattr(dump_file, "INFLATER", inflater)
    root, stats = _tree(tmp_path, DUMP_V2_5, dumps=1)
    dump = _newest(root, stats)
    data = bytearray(dump.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC-32 of the trailer: every byte of SQL is intact
    dump.write_bytes(bytes(data))
    end = check_dump_file(dump)
    assert not end.complete and end.truncated
    assert end.problem is not None and end.problem.startswith(f"the dump {dump.name} is not valid")
