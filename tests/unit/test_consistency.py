"""The consistency proof's pure part (#16.2): counts, names, coverage, the dump's verdict."""

from __future__ import annotations

from photos_sync.core.consistency import (
    NOT_COVERED,
    PERSON_THUMBNAIL,
    folder_coverage,
    proof_from_dict,
    prove,
    prove_deferring,
)
from photos_sync.core.immich_dump import (
    Asset,
    AssetFile,
    DumpEnd,
    DumpRecord,
    Person,
    StoredPath,
    User,
)


def stored(relative: str | None, raw: str = "") -> StoredPath:
    return StoredPath(raw or f"/data/{relative}", relative)


def asset(original: StoredPath) -> Asset:
    return Asset(
        "a1", "u1", None, "IMAGE", original, "x.jpg", None, None, None, None, None, None, None, None
    )


END = DumpEnd(True, None, False, "pg_dump", "14.19", "2.5.6", (("asset", 3),), 100)


def test_present_missing_and_not_covered_are_counted_apart() -> None:
    records: list[DumpRecord] = [
        asset(stored("library/anna/IMG_1.jpg")),
        asset(stored("upload/u/x.jpg")),
        asset(stored(None, "/mnt/external/photo.jpg")),
        AssetFile("a1", "preview", stored("thumbs/u/a1-preview.jpeg")),
        Person("p1", "u1", "Anna", stored("thumbs/u/p1.jpeg"), False),
        User("u1", "anna@example.org", "Anna", stored("profile/u1/me.jpg"), None, None),
        END,
    ]
    backed_up = {"library/anna/IMG_1.jpg", "profile/u1/me.jpg"}
    proof = prove(
        "immich-db-backup-x.sql.gz",
        records,
        covered=folder_coverage({"library", "upload", "profile", "backups"}),
        present=backed_up.__contains__,
    )
    assert (proof.referenced, proof.present, proof.missing) == (3, 2, 1)
    assert proof.missing_paths == ["upload/u/x.jpg"]
    assert proof.not_covered == {NOT_COVERED["outside"]: 1, NOT_COVERED["thumbs"]: 2}
    assert not proof.ok and proof.complete and proof.immich_version == "2.5.6"
    line = proof.line()
    assert "3 files referenced, 2 in the backup, 1 missing (e.g. upload/u/x.jpg)" in line
    assert proof_from_dict(proof.as_dict()) == proof


def test_person_thumbnails_are_covered_when_they_are_backed_up_on_their_own() -> None:
    covered = folder_coverage({"library"}, person_thumbnails=True)
    assert covered(stored("thumbs/u/p1.jpeg"), PERSON_THUMBNAIL) is None
    assert covered(stored("thumbs/u/a1-preview.jpeg"), "preview") == "thumbs"
    assert covered(stored("encoded-video/u/a.mp4"), "encoded video") == "encoded-video"


def test_a_truncated_dump_is_not_ok_whatever_it_held() -> None:
    cut = DumpEnd(
        False, "the dump stops inside the rows of asset", True, "pg_dump", None, None, (), 9
    )
    proof = prove(
        "d.sql.gz",
        [asset(stored("library/a.jpg")), cut],
        covered=folder_coverage({"library"}),
        present=lambda p: True,
    )
    assert not proof.ok and proof.truncated
    assert (
        proof.line()
        == "Immich database dump d.sql.gz: ERROR: the dump stops inside the rows of asset"
    )
    unended = prove(
        "d.sql.gz",
        [asset(stored("library/a.jpg"))],
        covered=folder_coverage({"library"}),
        present=lambda p: True,
    )
    assert unended.truncated and not unended.ok


def test_deferred_references_are_looked_up_when_settled_not_when_read() -> None:
    """The people thumbnails' references wait for their job: looked up at settle time, with
    what the backup holds then; every other reference is judged as the dump is read."""
    records: list[DumpRecord] = [
        asset(stored("library/a.jpg")),
        Person("p1", "u1", "Anna", stored("thumbs/u/p1.jpeg"), False),
        Person("p2", "u1", "Ben", stored("thumbs/u/p2.jpeg"), False),
        END,
    ]
    held = {"library/a.jpg"}
    pending = prove_deferring(
        "d.sql.gz",
        records,
        covered=folder_coverage({"library"}, person_thumbnails=True),
        present=held.__contains__,
        defer=lambda kind: kind == PERSON_THUMBNAIL,
    )
    assert pending.deferred == ["thumbs/u/p1.jpeg", "thumbs/u/p2.jpeg"]
    assert (pending.proof.referenced, pending.proof.present) == (1, 1)
    held |= {"thumbs/u/p1.jpeg", "library/gone-after-the-read.jpg"}  # the job then ran
    settled = pending.settle(held.__contains__)
    assert (settled.referenced, settled.present, settled.missing) == (3, 2, 1)
    assert settled.missing_paths == ["thumbs/u/p2.jpeg"] and not settled.ok
    assert pending.proof.referenced == 1  # settling twice gives the same, the pending is kept
    assert pending.settle(held.__contains__) == settled
    whole = prove(
        "d.sql.gz",
        records,
        covered=folder_coverage({"library"}, person_thumbnails=True),
        present=held.__contains__,
    )
    assert whole == settled
