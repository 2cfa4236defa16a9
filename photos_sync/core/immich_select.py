"""Restore by meaning: which files of the backup `restore --user/--album/--person/--taken` brings
back, chosen from Immich's database dump. Pure: no I/O; the caller feeds the records that
photos_sync.core.immich_dump.read_dump yields.

**Criteria** combine as an intersection: `--album Holidays --taken 2019` is the assets of the
album "Holidays" taken in 2019. `--user` is the e-mail of the assets' owner (any case);
`--album` and `--person` are names (exact, else the only match in another case; several
albums of one name are all taken); `--taken 2019`, `2019-06` or `2019-06-12` is the day the
asset was taken: its `localDateTime` (the wall-clock time where it was taken, which Immich keeps
as if it were UTC), else its `fileCreatedAt`. Assets in Immich's trash (`deletedAt` set, or
status trashed/deleted) are left out and counted; so are originals outside UPLOAD_LOCATION
(external libraries), which the Immich folders of the backup do not hold.

**What is selected** for each chosen asset: its original, its XMP sidecar (`asset.sidecarPath`
before Immich v2, an `asset_file` row of type `sidecar` after) and, for a live photo, its video
(the asset `livePhotoVideoId` names), as paths relative to UPLOAD_LOCATION. Hidden assets (a
live photo's video, v1.133+) are never chosen for themselves: they come with their photo.

**Passes.** pg_dump writes the rows of each table in one block, tables in name order, so a row
may refer to one that comes later (`asset_face` comes before `person`, and after `asset`). A
selection therefore reads the dump up to three times, each time building only the records it
needs and keeping only sets of ids: `NAMES` (users, albums, people: the ids the criteria name),
`MEMBERS` (album entries and faces: the assets of those albums and people), then `ASSETS`
(assets and their files). Memory grows with the selection, not with the library, except for
two maps kept while the asset table is being read: the originals of assets that can be a live
photo's video (type VIDEO, hidden or of unknown visibility), since the video's row may come
before the photo's, and the sidecar rows read before the asset table (none when pg_dump's
name order holds: `asset` comes before `asset_file`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from photos_sync.core.immich_dump import (
    Album,
    AlbumAsset,
    Asset,
    AssetFace,
    AssetFile,
    DumpRecord,
    Person,
    StoredPath,
    User,
)

#: Statuses of an asset in Immich's trash (or on its way out of the database).
TRASHED_STATUSES = frozenset({"trashed", "deleted"})
#: How many close matches an unknown name error offers.
CLOSE_MATCHES = 3

_TAKEN = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


@dataclass(frozen=True, slots=True)
class Taken:
    """`--taken`: a year, a month of a year, or a day."""

    year: int
    month: int | None = None
    day: int | None = None

    def matches(self, day: tuple[int, int, int]) -> bool:
        year, month, dom = day
        return (
            year == self.year
            and (self.month is None or month == self.month)
            and (self.day is None or dom == self.day)
        )

    def __str__(self) -> str:
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        return text


def parse_taken(text: str) -> Taken:
    """`2019`, `2019-06` or `2019-06-12` → Taken; ValueError (one line saying what is expected)
    for anything else, an impossible month or day included."""
    match = _TAKEN.match(text.strip())
    problem = f"--taken {text!r} is not a year, month or day: use e.g. 2019, 2019-06 or 2019-06-12"
    if match is None:
        raise ValueError(problem)
    year, month, day = (int(part) if part else None for part in match.groups())
    assert year is not None
    try:
        datetime(year, month or 1, day or 1)
    except ValueError:
        raise ValueError(problem) from None
    return Taken(year, month, day)


def taken_day(text: str | None) -> tuple[int, int, int] | None:
    """The UTC (year, month, day) of a timestamp as pg_dump prints it (`2019-06-12
    10:11:12.345+00`, any offset); None for NULL and for what is not a plain timestamp
    (`infinity`, years BC)."""
    if not text:
        return None
    if text.endswith("+00") and len(text) >= 10 and text[4] == "-" and text[7] == "-":
        head = text[:10]  # the common case: printed in UTC
        if head[:4].isdigit() and head[5:7].isdigit() and head[8:10].isdigit():
            return int(head[:4]), int(head[5:7]), int(head[8:10])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.year, moment.month, moment.day


@dataclass(frozen=True, slots=True)
class Criteria:
    """What a restore by meaning asks for; every criterion given must hold."""

    user: str | None = None
    album: str | None = None
    person: str | None = None
    taken: Taken | None = None

    @property
    def empty(self) -> bool:
        return self.user is None and self.album is None and self.person is None and not self.taken

    def describe(self) -> str:
        """`album "Holidays", taken 2019` — how the selection is named in output."""
        parts = []
        if self.user is not None:
            parts.append(f"user {self.user}")
        if self.album is not None:
            parts.append(f'album "{self.album}"')
        if self.person is not None:
            parts.append(f'person "{self.person}"')
        if self.taken is not None:
            parts.append(f"taken {self.taken}")
        return ", ".join(parts)

    def as_params(self) -> dict[str, str]:
        """The criteria as the daemon's `restore` request carries them (parse_criteria reads
        them back)."""
        params = {"user": self.user, "album": self.album, "person": self.person}
        if self.taken is not None:
            params["taken"] = str(self.taken)
        return {key: value for key, value in params.items() if value is not None}


def parse_criteria(
    user: str | None = None,
    album: str | None = None,
    person: str | None = None,
    taken: str | None = None,
) -> Criteria:
    """Criteria from the command line's (or an RPC request's) strings; ValueError for a bad
    `taken` or an empty name."""
    for flag, value in (("--user", user), ("--album", album), ("--person", person)):
        if value is not None and not value.strip():
            raise ValueError(f"{flag} needs a name, not an empty string")
    return Criteria(user, album, person, parse_taken(taken) if taken is not None else None)


class UnknownName(ValueError):
    """A criterion names no user, album or person in the dump; the message is one line with
    the close matches."""


@dataclass(frozen=True, slots=True)
class Selected:
    """What a selection chose: plain paths below UPLOAD_LOCATION (sorted), and counts."""

    paths: tuple[str, ...]
    assets: int  # assets chosen
    sidecars: int  # of their files, XMP sidecars
    motion: int  # of their files, live photos' videos
    trashed: int  # assets that matched but are in Immich's trash: left out
    outside: int  # assets that matched but whose original is outside UPLOAD_LOCATION

    def as_dict(self) -> dict[str, int]:
        return {
            "assets": self.assets,
            "files": len(self.paths),
            "sidecars": self.sidecars,
            "live_photo_videos": self.motion,
            "trashed": self.trashed,
            "outside": self.outside,
        }


#: The record kinds of each pass.
NAMES: frozenset[type] = frozenset({User, Album, Person})
MEMBERS: frozenset[type] = frozenset({AlbumAsset, AssetFace})
ASSETS: frozenset[type] = frozenset({Asset, AssetFile})


@dataclass
class _Named:
    """The ids one name criterion resolved to, and every name seen (for close matches)."""

    wanted: str
    fold: bool  # compare case-insensitively from the start (e-mail addresses)
    exact: set[str] = field(default_factory=set)
    folded: set[str] = field(default_factory=set)
    folded_names: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def see(self, record_id: str, name: str | None) -> None:
        if not name:
            return
        self.names.add(name)
        if not self.fold and name == self.wanted:
            self.exact.add(record_id)
        elif name.casefold() == self.wanted.casefold():
            self.folded.add(record_id)
            self.folded_names.add(name)

    def ids(self, what: str) -> frozenset[str]:
        """The ids named: exact matches, else case-insensitive ones (of one spelling only);
        UnknownName otherwise."""
        if self.exact:
            return frozenset(self.exact)
        if self.folded and (self.fold or len(self.folded_names) == 1):
            return frozenset(self.folded)
        if self.folded:
            spellings = ", ".join(f'"{name}"' for name in sorted(self.folded_names))
            raise UnknownName(
                f'no {what} is named exactly "{self.wanted}"; several differ only in case: '
                f"{spellings} (give one exactly)"
            )
        import difflib  # only for this error: kept off the import of every restore

        close = difflib.get_close_matches(self.wanted, sorted(self.names), CLOSE_MATCHES, 0.5)
        if not close:
            lowered = self.wanted.casefold()
            close = sorted(n for n in self.names if lowered in n.casefold())[:CLOSE_MATCHES]
        hint = (
            "close matches: " + ", ".join(f'"{name}"' for name in close)
            if close
            else f"the dump has {len(self.names)} {what} name(s), none close"
        )
        raise UnknownName(f'no {what} "{self.wanted}" in the database dump; {hint}')


class Selection:
    """One restore by meaning, fed record by record (see the module docstring).

    Use: for each kind set in `passes()`, read the dump building those records and give each
    to `feed`, then call `end_pass()` (which raises UnknownName after the NAMES pass when a
    name matches nothing); then `result()`."""

    def __init__(self, criteria: Criteria) -> None:
        if criteria.empty:
            raise ValueError("a selection needs at least one criterion")
        self.criteria = criteria
        self._user = _Named(criteria.user, True) if criteria.user is not None else None
        self._album = _Named(criteria.album, False) if criteria.album is not None else None
        self._person = _Named(criteria.person, False) if criteria.person is not None else None
        self._owners: frozenset[str] | None = None
        self._albums: frozenset[str] = frozenset()
        self._people: frozenset[str] = frozenset()
        self._in_albums: set[str] | None = set() if self._album is not None else None
        self._with_people: set[str] | None = set() if self._person is not None else None
        self._passes: list[tuple[frozenset[type], Callable[[DumpRecord], None]]] = []
        if self._user or self._album or self._person:
            self._passes.append((NAMES, self._name))
        if self._album or self._person:
            self._passes.append((MEMBERS, self._member))
        self._passes.append((ASSETS, self._asset))
        self._stage = 0
        #: Takes one record of the current pass.
        self.feed: Callable[[DumpRecord], None] = self._passes[0][1]
        # the ASSETS pass
        self._chosen: set[str] = set()
        self._paths: set[str] = set()
        self._sidecars = 0
        self._motion = 0
        self._trashed = 0
        self._outside = 0
        self._wanted_motion: set[str] = set()
        self._motion_candidates: dict[str, str] = {}
        self._pending_sidecars: dict[str, list[str]] = {}
        # a sidecar row after asset rows comes from the asset_file table, dumped after the
        # asset table: no asset comes any more (assets before v1.113 yield thumbnail files
        # of their own, never sidecars)
        self._seen_assets = False
        self._assets_over = False

    def passes(self) -> list[frozenset[type]]:
        """The record kinds of each pass this selection needs, in order."""
        return [kinds for kinds, _ in self._passes]

    def end_pass(self) -> None:
        """The current pass read the whole dump: resolve what it found, go to the next."""
        kinds = self._passes[self._stage][0]
        if kinds is NAMES:
            if self._user is not None:
                self._owners = self._user.ids("user (e-mail)")
            if self._album is not None:
                self._albums = self._album.ids("album")
            if self._person is not None:
                self._people = self._person.ids("person")
        self._stage += 1
        if self._stage < len(self._passes):
            self.feed = self._passes[self._stage][1]

    # -- the passes --------------------------------------------------------------------------

    def _name(self, record: DumpRecord) -> None:
        if isinstance(record, User):
            if self._user is not None:
                self._user.see(record.id, record.email)
        elif isinstance(record, Album):
            if self._album is not None and record.deleted_at is None:
                self._album.see(record.id, record.name)
        elif isinstance(record, Person) and self._person is not None:
            self._person.see(record.id, record.name)

    def _member(self, record: DumpRecord) -> None:
        if isinstance(record, AlbumAsset):
            if self._in_albums is not None and record.album_id in self._albums:
                self._in_albums.add(record.asset_id)
        elif (
            isinstance(record, AssetFace)
            and self._with_people is not None
            and record.deleted_at is None
            and record.person_id in self._people
        ):
            self._with_people.add(record.asset_id)

    def _asset(self, record: DumpRecord) -> None:
        if isinstance(record, AssetFile):
            if record.type != "sidecar" or record.path.relative is None:
                return
            if self._seen_assets:
                # the asset table (one COPY block) is over: every chosen asset is known
                self._assets_over = True
                self._motion_candidates.clear()
            if record.asset_id in self._chosen:
                self._add(record.path.relative, sidecar=True)
            elif not self._assets_over:
                self._pending_sidecars.setdefault(record.asset_id, []).append(record.path.relative)
            return
        if not isinstance(record, Asset):
            return
        self._seen_assets = True
        if record.id in self._wanted_motion:
            self._add_motion(record.original)
        elif (
            record.type == "VIDEO"
            and record.visibility in (None, "hidden")
            and record.original is not None
            and record.original.relative is not None
        ):
            self._motion_candidates[record.id] = record.original.relative
        if record.visibility == "hidden" or not self._matches(record):
            return  # a hidden asset (a live photo's video) comes with the photo only
        if record.deleted_at is not None or record.status in TRASHED_STATUSES:
            self._trashed += 1
            return
        if record.original is None:
            return
        if record.original.relative is None:
            self._outside += 1
            return
        self._chosen.add(record.id)
        self._paths.add(record.original.relative)
        if record.sidecar is not None and record.sidecar.relative is not None:
            self._add(record.sidecar.relative, sidecar=True)
        for path in self._pending_sidecars.pop(record.id, ()):
            self._add(path, sidecar=True)
        video = record.live_photo_video_id
        if video is not None and video != record.id:
            if video in self._motion_candidates:
                self._add(self._motion_candidates.pop(video), motion=True)
            else:
                self._wanted_motion.add(video)

    def _matches(self, asset: Asset) -> bool:
        if self._owners is not None and asset.owner_id not in self._owners:
            return False
        if self._in_albums is not None and asset.id not in self._in_albums:
            return False
        if self._with_people is not None and asset.id not in self._with_people:
            return False
        taken = self.criteria.taken
        if taken is not None:
            day = taken_day(asset.local_date_time) or taken_day(asset.file_created_at)
            if day is None or not taken.matches(day):
                return False
        return True

    def _add_motion(self, original: StoredPath | None) -> None:
        if original is not None and original.relative is not None:
            self._add(original.relative, motion=True)

    def _add(self, path: str, *, sidecar: bool = False, motion: bool = False) -> None:
        if path in self._paths:
            return
        self._paths.add(path)
        self._sidecars += sidecar
        self._motion += motion

    def result(self) -> Selected:
        """What was chosen (after the last pass)."""
        return Selected(
            tuple(sorted(self._paths)),
            len(self._chosen),
            self._sidecars,
            self._motion,
            self._trashed,
            self._outside,
        )


def select(criteria: Criteria, records: Sequence[DumpRecord]) -> Selected:
    """A Selection over records already read (in dump order), each pass reading them all:
    for callers that hold a small dump's records."""
    selection = Selection(criteria)
    for _ in selection.passes():
        for record in records:
            selection.feed(record)
        selection.end_pass()
    return selection.result()
