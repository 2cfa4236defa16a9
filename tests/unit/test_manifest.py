"""The manifest's pure decisions (#15): the sorted merge, moves, when to reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from photos_sync.core.archive import ArchivedFile, LiveFile, MovedFile, as_of
from photos_sync.core.manifest import (
    Change,
    FileState,
    FolderChanges,
    ManifestHead,
    ManifestState,
    Reconcile,
    crypt_size,
    diff_sorted,
    find_moves,
    folder_changes,
    folder_reconcile,
    incremental_obstacle,
    moves_record,
    parse_head,
    parse_moves_record,
    run_reconcile,
    walk_order,
)

NOW = datetime(2026, 11, 30, 3, 30, tzinfo=UTC)
KEY = "local||/mnt/nas/backup|"


def state(path: str, size: int = 10, mtime: int = 1) -> FileState:
    return FileState(path.encode(), size, mtime)


def test_diff_finds_new_changed_and_deleted_files() -> None:
    scanned = [state("a.jpg"), state("b.jpg", 11), state("d.jpg")]
    recorded = [state("a.jpg"), state("b.jpg"), state("c.jpg")]
    assert list(diff_sorted(scanned, recorded)) == [
        (Change.CHANGED, state("b.jpg", 11)),
        (Change.DELETED, state("c.jpg")),
        (Change.NEW, state("d.jpg")),
    ]


def test_a_new_modification_time_alone_is_a_change() -> None:
    assert list(diff_sorted([state("a.jpg", 10, 2)], [state("a.jpg", 10, 1)])) == [
        (Change.CHANGED, state("a.jpg", 10, 2))
    ]


def test_diff_of_empty_sides() -> None:
    assert list(diff_sorted([], [state("x")])) == [(Change.DELETED, state("x"))]
    assert list(diff_sorted([state("x")], [])) == [(Change.NEW, state("x"))]
    assert list(diff_sorted([], [])) == []


def test_diff_does_not_hold_the_sides_in_memory() -> None:
    """Both sides are consumed one entry at a time: a generator of a million entries is
    merged without being listed (the merge yields before the walk has ended)."""
    consumed = 0

    def walk() -> object:
        nonlocal consumed
        for n in range(1_000_000):
            consumed += 1
            yield FileState(b"%07d" % n, 1, 1)

    merged = diff_sorted(walk(), iter(()))  # type: ignore[arg-type]
    next(merged)
    assert consumed <= 2


names = st.lists(
    st.text(alphabet="ab./0-_é", min_size=1, max_size=4).filter(
        lambda s: "//" not in s and not s.startswith("/") and not s.endswith("/")
    ),
    max_size=30,
)


@given(names)
def test_walk_order_sorts_a_tree_like_its_full_paths(paths: list[str]) -> None:
    """A depth-first walk that sorts each folder by walk_order yields full paths in byte
    order, the order SQLite gives BLOBs: the merge relies on it."""
    tree: dict[str, object] = {}
    for path in paths:
        node = tree
        parts = path.split("/")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.setdefault(parts[-1], None)

    def walk(node: dict[str, object], prefix: bytes) -> list[bytes]:
        out: list[bytes] = []
        entries = sorted(
            node.items(), key=lambda kv: walk_order(kv[0].encode(), isinstance(kv[1], dict))
        )
        for name, child in entries:
            full = prefix + name.encode()
            if isinstance(child, dict):
                out += walk(child, full + b"/")
            else:
                out.append(full)
        return out

    walked = walk(tree, b"")
    assert walked == sorted(walked)


def test_folder_changes_counts_the_walk() -> None:
    changes = folder_changes(
        "library", [state("a"), state("b"), state("c", 5)], [state("a"), state("c"), state("d")]
    )
    assert (changes.scanned, changes.unchanged) == (3, 1)
    assert [s.path for s in changes.new] == [b"b"]
    assert [s.path for s in changes.changed] == [b"c"]
    assert changes.to_archive == [b"d", b"c"]
    assert changes.bytes_to_send == 15 + 2 * 48  # encrypted: header and one block's tag each


def test_crypt_size_is_what_rclone_crypt_writes() -> None:
    assert crypt_size(0) == 32
    assert crypt_size(3000) == 3048
    assert crypt_size(65536) == 32 + 65536 + 16
    assert crypt_size(65537) == 32 + 65537 + 32


def test_a_unique_size_and_time_pair_is_a_move_across_folders() -> None:
    upload = FolderChanges("upload", deleted=[state("u/1/x.jpg", 500, 7), state("u/2/y.jpg", 9)])
    library = FolderChanges(
        "library", new=[state("anna/2024/IMG_1.jpg", 500, 7), state("anna/z.jpg", 3)]
    )
    moves = find_moves([upload, library])
    assert [(m.source, m.target) for m in moves] == [
        ("upload/u/1/x.jpg", "library/anna/2024/IMG_1.jpg")
    ]
    assert [s.path for s in upload.deleted] == [b"u/2/y.jpg"]
    assert [s.path for s in library.new] == [b"anna/z.jpg"]


def test_ambiguous_or_empty_or_undecodable_files_are_not_moves() -> None:
    twins = FolderChanges(
        "upload",
        deleted=[
            state("a", 500, 7),
            state("b", 500, 7),
            state("e", 0, 1),
            FileState(b"\xff", 4, 4),
        ],
        new=[state("c", 500, 7), state("f", 0, 1), state("g", 4, 4)],
    )
    assert find_moves([twins]) == []
    assert len(twins.deleted) == 4 and len(twins.new) == 3


def test_a_size_difference_is_not_a_move() -> None:
    folder = FolderChanges("upload", deleted=[state("a", 500, 7)], new=[state("b", 501, 7)])
    assert find_moves([folder]) == []


def test_the_moves_record_round_trips() -> None:
    folder = FolderChanges(
        "upload", deleted=[state("a/é.jpg", 5, 1)], new=[state("b\tc.jpg", 5, 1)]
    )
    moves = find_moves([folder])
    assert parse_moves_record("20261130T033000Z", moves_record(moves) + b"{broken") == [
        MovedFile("20261130T033000Z", "upload/a/é.jpg", "upload/b\tc.jpg")
    ]


def trusted(**overrides: object) -> ManifestState:
    values: dict[str, object] = {
        "destination_key": KEY,
        "copy_run": "20261129T033000Z",
        "reconciled_at": NOW - timedelta(days=1),
        "folders": frozenset({"library", "upload"}),
    }
    values.update(overrides)
    return ManifestState(**values)  # type: ignore[arg-type]


HEAD = ManifestHead("20261129T033000Z", KEY, 100)


def decide(state: ManifestState | None, head: ManifestHead | None = HEAD, **kw: object) -> object:
    options: dict[str, object] = {
        "key": KEY,
        "now": NOW,
        "every": timedelta(days=7),
        "full": False,
        "follow_symlinks": False,
    }
    options.update(kw)
    return run_reconcile(state, head, **options)  # type: ignore[arg-type]


def test_a_trusted_manifest_lets_the_run_go_incrementally() -> None:
    assert decide(trusted()) is None


def test_every_reason_to_reconcile() -> None:
    assert decide(None) is Reconcile.FIRST
    assert decide(trusted(reconciled_at=None)) is Reconcile.FIRST
    assert decide(trusted(), full=True) is Reconcile.ASKED
    assert decide(trusted(), follow_symlinks=True) is Reconcile.SYMLINKS
    assert decide(trusted(destination_key="local||/mnt/other|")) is Reconcile.OTHER_DESTINATION
    assert decide(trusted(), head=None) is Reconcile.STALE_COPY
    assert decide(trusted(copy_run="20261120T033000Z")) is Reconcile.STALE_COPY
    assert decide(trusted(reconciled_at=NOW - timedelta(days=7))) is Reconcile.DUE
    assert decide(trusted(reconciled_at=NOW - timedelta(days=70)), every=None) is None


def test_a_folder_left_unfinished_or_not_covered_reconciles() -> None:
    manifest = trusted(unfinished={"upload": "20261130T033000Z"})
    assert folder_reconcile(manifest, "upload") is Reconcile.UNFINISHED
    assert folder_reconcile(manifest, "library") is None
    assert folder_reconcile(manifest, "thumbs") is Reconcile.NEW_FOLDER


def test_names_that_cannot_be_listed_make_the_folder_reconcile() -> None:
    assert incremental_obstacle(FolderChanges("u", new=[state("a\nb.jpg")])) is Reconcile.NAMES
    assert incremental_obstacle(FolderChanges("u", deleted=[FileState(b"\xff", 1, 1)])) is (
        Reconcile.NAMES
    )
    assert incremental_obstacle(FolderChanges("u", new=[FileState(b"\xff", 1, 1)])) is None


def test_the_head_round_trips_and_rejects_what_it_cannot_use() -> None:
    assert parse_head(HEAD.encode()) == HEAD
    assert parse_head(None) is None
    assert parse_head(b"not json") is None
    assert parse_head(b'{"format": 99, "run": "x", "destination": "k", "files": 1}') is None


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def test_as_of_before_a_move_restores_the_file_at_its_old_path() -> None:
    before, move_run = NOW - timedelta(days=2), NOW - timedelta(days=1)
    old_time = NOW - timedelta(days=30)
    live = [LiveFile("library/anna/IMG_1.jpg", 5, old_time), LiveFile("library/b.jpg", 3, old_time)]
    moves = [MovedFile(stamp(move_run), "upload/u/x.jpg", "library/anna/IMG_1.jpg")]
    choice = as_of([], live, "", before, moves)
    assert choice.renamed == [(None, "library/anna/IMG_1.jpg", "upload/u/x.jpg")]
    assert choice.from_live == ["library/b.jpg"]  # the new path did not exist yet
    # after the move: the file at its new path, nothing at the old one
    after = as_of([], live, "", NOW, moves)
    assert after.renamed == [] and after.from_live == ["library/anna/IMG_1.jpg", "library/b.jpg"]


def test_as_of_follows_a_moved_file_into_the_archive() -> None:
    """Moved at run 1, deleted at run 2: the content is in run 2's archive, under the
    path it was moved to; restored before run 1 under its first path."""
    run1, run2 = NOW - timedelta(days=2), NOW - timedelta(days=1)
    old_time = NOW - timedelta(days=30)
    archived = [ArchivedFile(stamp(run2), "library/IMG_1.jpg", 5, old_time)]
    moves = [MovedFile(stamp(run1), "upload/x.jpg", "library/IMG_1.jpg")]
    choice = as_of(archived, [], "upload", run1 - timedelta(hours=1), moves)
    assert choice.renamed == [(stamp(run2), "library/IMG_1.jpg", "upload/x.jpg")]
    assert choice.from_archive == {}


def test_as_of_without_moves_is_unchanged() -> None:
    old_time = NOW - timedelta(days=30)
    run = NOW - timedelta(days=1)
    archived = [ArchivedFile(stamp(run), "library/a.jpg", 5, old_time)]
    live = [LiveFile("library/a.jpg", 6, NOW - timedelta(hours=2))]
    choice = as_of(archived, live, "", run - timedelta(hours=1))
    assert choice.from_archive == {stamp(run): ["library/a.jpg"]} and choice.renamed == []


def test_the_mass_change_threshold_and_its_setting() -> None:
    from photos_sync.core.guards import DEFAULT_MAX_CHANGE, max_change_refusal, parse_max_change

    assert DEFAULT_MAX_CHANGE.threshold(1000) == 500  # the floor
    assert DEFAULT_MAX_CHANGE.threshold(1_000_000) == 20_000  # 2 %
    assert parse_max_change("off") is None and parse_max_change("0") is None
    assert parse_max_change("5%").threshold(200) == 10  # type: ignore[union-attr]
    assert parse_max_change("5%/50").threshold(200) == 50  # type: ignore[union-attr]
    for bad in ("-1", "150%", "x", "0%"):
        with pytest.raises(ValueError):
            parse_max_change(bad)
    assert max_change_refusal("upload", 500, 1000, (), DEFAULT_MAX_CHANGE) is None
    refusal = max_change_refusal("upload", 501, 1000, ("a.jpg",), DEFAULT_MAX_CHANGE)
    assert refusal is not None and "501 of the 1000 files of upload/" in refusal
    assert "upload/a.jpg" in refusal
    assert max_change_refusal("upload", 10**6, 10**6, (), None) is None
