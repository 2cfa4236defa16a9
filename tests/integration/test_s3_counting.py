"""The request-counting proxy (tests/support/s3_counting.py) against the real rclone, and what
the rclone commands an incremental run may use cost in S3 requests through a crypt remote.

Every rclone here talks to `rclone serve s3` only through the proxy, with the Host header it
signed (the proxy's address) forwarded unchanged: that these commands succeed is the proof
that the server checks Signature V4 without comparing Host with its own address.

The exact figures are those of rclone v1.75 with its defaults for an S3 remote of provider
Other; a different rclone version may move them (then re-measure and update the tables).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import rclone_binary
from tests.support import plain_rclone
from tests.support.s3_counting import CountingS3, CountSnapshot, Kind, counting_s3  # noqa: F401

CRYPT_PASSWORD = "counting-proxy-password"
MIB = 1024 * 1024


def rclone(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [rclone_binary(), *args], env=env, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def s3_env(s3: CountingS3) -> dict[str, str]:
    """Remote `s3:` through the proxy, configured only by RCLONE_CONFIG_* variables."""
    return {**os.environ, "RCLONE_CONFIG": "", **s3.rclone_env("s3")}


# --- the proxy itself --------------------------------------------------------------------


def test_framing_chunked_body_head_and_keep_alive(counting_s3: CountingS3) -> None:  # noqa: F811
    """Unsigned requests (the server rejects each with an XML error) on ONE kept-alive
    connection: a chunked PUT body with a chunk extension and a trailer, a HEAD (an error
    without body), then a GET of the service root. Had the proxy misread where a body ends,
    the next request or response would be garbled or the connection lost."""
    host, port = counting_s3.endpoint.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    statuses = []
    try:
        conn.putrequest("PUT", "/bucket/key.bin")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Trailer", "X-Check")
        conn.endheaders()
        conn.send(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Check: 1\r\n\r\n")
        response = conn.getresponse()
        assert b"<Error>" in response.read()
        statuses.append(response.status)
        conn.request("HEAD", "/bucket/key.bin")
        response = conn.getresponse()
        assert response.read() == b""
        statuses.append(response.status)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert b"<Error>" in response.read()
        statuses.append(response.status)
    finally:
        conn.close()
    assert all(status >= 400 for status in statuses)
    snapshot = counting_s3.counter.snapshot()
    assert [(r.kind, r.method, r.target) for r in snapshot.requests] == [
        (Kind.PUT, "PUT", "/bucket/key.bin"),
        (Kind.HEAD, "HEAD", "/bucket/key.bin"),
        (Kind.LIST, "GET", "/"),
    ]
    assert [r.status for r in snapshot.requests] == statuses
    assert snapshot.requests[0].body_bytes == len(b"hello world")
    assert snapshot.put_bytes == len(b"hello world")
    assert counting_s3.proxy.connections_accepted == 1


def test_request_cut_off_is_logged_not_counted(counting_s3: CountingS3) -> None:  # noqa: F811
    """A client that goes away in the middle of a body gets no response: the request is in
    the log with status 0, and not in the counts (rclone would send it again)."""
    host, port = counting_s3.endpoint.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"PUT /bucket/cut.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        sock.sendall(b"0123456789")
    snapshot = counting_s3.counter.wait_for(lambda seen: bool(seen.requests))
    assert [(r.kind, r.target, r.status, r.body_bytes) for r in snapshot.requests] == [
        (Kind.PUT, "/bucket/cut.jpg", 0, 10)
    ]
    assert snapshot.total == 0 and snapshot.unanswered == 1


def test_reset_forgets_counts(counting_s3: CountingS3) -> None:  # noqa: F811
    rclone(s3_env(counting_s3), "lsjson", "-R", f"s3:{counting_s3.bucket}")
    assert counting_s3.counter.snapshot()[Kind.LIST] == 1
    counting_s3.counter.reset()
    snapshot = counting_s3.counter.snapshot()
    assert snapshot.total == 0 and snapshot.put_bytes == 0 and snapshot.requests == ()


# --- plain S3 remote ---------------------------------------------------------------------


def test_listing_counts_list(counting_s3: CountingS3) -> None:  # noqa: F811
    bucket = counting_s3.root / counting_s3.bucket
    (bucket / "album").mkdir()
    (bucket / "album" / "one.jpg").write_bytes(b"1" * 10)
    (bucket / "two.jpg").write_bytes(b"2" * 20)
    listed = rclone(s3_env(counting_s3), "lsjson", "-R", f"s3:{counting_s3.bucket}")
    assert {entry["Path"] for entry in json.loads(listed.stdout)} == {
        "album",
        "album/one.jpg",
        "two.jpg",
    }
    snapshot = counting_s3.counter.snapshot()
    # One recursive ListObjectsV2 page, then one HEAD per object: rclone reads an object's
    # modification time from its X-Amz-Meta-Mtime metadata, which a listing does not carry.
    assert snapshot.nonzero() == {"LIST": 1, "HEAD": 2}, snapshot.describe()


def test_upload_counts_one_put_and_its_bytes(
    counting_s3: CountingS3,  # noqa: F811
    tmp_path: Path,
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(os.urandom(1000))
    rclone(s3_env(counting_s3), "copyto", str(photo), f"s3:{counting_s3.bucket}/a/photo.jpg")
    snapshot = counting_s3.counter.snapshot()
    # HEAD a/photo.jpg (404: is it there already?), PUT /bucket (OTHER, 409: rclone makes
    # sure the bucket exists by creating it), PUT a/photo.jpg, HEAD a/photo.jpg (200: rclone
    # reads back the metadata of what it uploaded; --s3-no-head would skip it).
    assert snapshot.nonzero() == {"HEAD": 2, "PUT": 1, "OTHER": 1}, snapshot.describe()
    assert snapshot.put_bytes == 1000
    assert (counting_s3.root / counting_s3.bucket / "a" / "photo.jpg").read_bytes() == (
        photo.read_bytes()
    )


def test_multipart_upload_streams_large_bodies(
    counting_s3: CountingS3,  # noqa: F811
    tmp_path: Path,
) -> None:
    """12 MiB in 5 MiB parts: each part is a PUT of its own (with `Expect: 100-continue`, which
    the SDK sends for bodies over 2 MiB), initiate and complete are OTHER."""
    video = tmp_path / "video.mp4"
    video.write_bytes(os.urandom(12 * MIB))
    rclone(
        s3_env(counting_s3),
        "copyto",
        str(video),
        f"s3:{counting_s3.bucket}/video.mp4",
        "--s3-upload-cutoff",
        "5M",
        "--s3-chunk-size",
        "5M",
    )
    snapshot = counting_s3.counter.snapshot()
    # HEAD (404) and HEAD after the upload as above; OTHER: the bucket check, POST ?uploads
    # (initiate), POST ?uploadId (complete).
    assert snapshot.nonzero() == {"HEAD": 2, "PUT": 3, "OTHER": 3}, snapshot.describe()
    assert snapshot.put_bytes == 12 * MIB
    assert (counting_s3.root / counting_s3.bucket / "video.mp4").read_bytes() == (
        video.read_bytes()
    )


def test_server_side_move_is_copy_and_delete(
    counting_s3: CountingS3,  # noqa: F811
) -> None:
    bucket = counting_s3.root / counting_s3.bucket
    (bucket / "upload").mkdir()
    (bucket / "upload" / "uuid.jpg").write_bytes(b"x" * 500)
    rclone(
        s3_env(counting_s3),
        "moveto",
        f"s3:{counting_s3.bucket}/upload/uuid.jpg",
        f"s3:{counting_s3.bucket}/library/IMG_1.jpg",
    )
    snapshot = counting_s3.counter.snapshot()
    # HEAD upload/uuid.jpg twice (rclone finds the source path is a file, then gets the
    # object), HEAD library/IMG_1.jpg (404), the bucket check (OTHER), CopyObject, HEAD of
    # the copy, DeleteObject of the source. No byte of content goes up.
    assert snapshot.nonzero() == {"HEAD": 4, "COPY": 1, "DELETE": 1, "OTHER": 1}, (
        snapshot.describe()
    )
    assert snapshot.put_bytes == 0
    assert not (bucket / "upload" / "uuid.jpg").exists()
    assert (bucket / "library" / "IMG_1.jpg").read_bytes() == b"x" * 500


def test_download_counts_get(counting_s3: CountingS3, tmp_path: Path) -> None:  # noqa: F811
    bucket = counting_s3.root / counting_s3.bucket
    (bucket / "photo.jpg").write_bytes(b"y" * 300)
    rclone(s3_env(counting_s3), "copyto", f"s3:{counting_s3.bucket}/photo.jpg", str(tmp_path / "p"))
    snapshot = counting_s3.counter.snapshot()
    # HEAD twice (the source path is a file; the object), then GetObject.
    assert snapshot.nonzero() == {"HEAD": 2, "GET": 1}, snapshot.describe()
    assert (tmp_path / "p").read_bytes() == b"y" * 300


# --- crypt over S3: the commands an incremental run may use --------------------------------


@dataclass
class CryptCase:
    """A crypt remote `pscrypt:` over `psbase:bucket/path`, seeded, and a local folder."""

    s3: CountingS3
    env: dict[str, str]
    local: Path

    def rclone(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return rclone(self.env, *args)

    def measure(self, *args: str) -> CountSnapshot:
        """Run one rclone command and return the requests it made (and only those)."""
        self.s3.counter.reset()
        self.rclone(*args)
        return self.s3.counter.snapshot()

    def listed(self, path: str) -> set[str]:
        return set(self.rclone("lsf", "-R", f"pscrypt:{path}").stdout.decode().split())

    def files_from(self, *names: str) -> str:
        listing = self.local.parent / "files-from.txt"
        listing.write_text("".join(name + "\n" for name in names))
        return str(listing)


@pytest.fixture
def crypt_case(counting_s3: CountingS3, tmp_path: Path) -> CryptCase:  # noqa: F811
    env = {
        **os.environ,
        "RCLONE_CONFIG": "",
        **counting_s3.rclone_env("psbase"),
        "RCLONE_CONFIG_PSCRYPT_TYPE": "crypt",
        "RCLONE_CONFIG_PSCRYPT_REMOTE": f"psbase:{counting_s3.bucket}/path",
        "RCLONE_CONFIG_PSCRYPT_PASSWORD": plain_rclone.obscure(CRYPT_PASSWORD),
        "RCLONE_CONFIG_PSCRYPT_FILENAME_ENCRYPTION": "standard",
        "RCLONE_CONFIG_PSCRYPT_DIRECTORY_NAME_ENCRYPTION": "true",
    }
    local = tmp_path / "local"
    local.mkdir()
    for name in ("new1.jpg", "new2.jpg", "new3.jpg", "old1.jpg", "old2.jpg", "kept.jpg"):
        (local / name).write_bytes(os.urandom(1000))
    seed = tmp_path / "seed"
    (seed / "some").mkdir(parents=True)
    (seed / "some" / "file").write_bytes(b"some content\n")
    (seed / "folder").mkdir()
    for name in ("old1.jpg", "old2.jpg", "kept.jpg"):
        (seed / "folder" / name).write_bytes((local / name).read_bytes())
    (seed / "a").write_bytes(b"moved by the rc API\n")
    (seed / ".photos-sync").mkdir()
    (seed / ".photos-sync" / "head.json").write_bytes(b'{"run": 1}\n')
    (seed / ".photos-sync" / "manifest-old.gz").write_bytes(os.urandom(400))
    case = CryptCase(counting_s3, env, local)
    case.rclone("copy", str(seed), "pscrypt:")
    counting_s3.counter.reset()
    return case


@contextmanager
def rclone_rcd(env: dict[str, str]) -> Iterator[str]:
    """`rclone rcd` on a free loopback port without auth; yields its URL once it serves."""
    proc = subprocess.Popen(
        [rclone_binary(), "rcd", "--rc-addr", "127.0.0.1:0", "--rc-no-auth"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # NOTICE: Serving remote control on http://127.0.0.1:PORT/
            if "Serving remote control on " in line:
                yield line.split("Serving remote control on ", 1)[1].strip().rstrip("/")
                break
        else:
            raise AssertionError("rclone rcd did not start")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def rc_call(url: str, method: str, params: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/{method}",
        data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def cat_file(case: CryptCase) -> CountSnapshot:
    case.s3.counter.reset()
    printed = case.rclone("cat", "pscrypt:some/file").stdout
    snapshot = case.s3.counter.snapshot()
    assert printed == b"some content\n"
    return snapshot


def lsjson_file(*flags: str) -> Callable[[CryptCase], CountSnapshot]:
    def run(case: CryptCase) -> CountSnapshot:
        case.s3.counter.reset()
        printed = case.rclone("lsjson", *flags, "pscrypt:some/file").stdout
        snapshot = case.s3.counter.snapshot()
        entries = json.loads(printed)
        entry = entries if isinstance(entries, dict) else entries[0]
        assert (entry["Name"], entry["Size"]) == ("file", len(b"some content\n"))
        return snapshot

    return run


def copy_files_from(*flags: str) -> Callable[[CryptCase], CountSnapshot]:
    def run(case: CryptCase) -> CountSnapshot:
        names = ("new1.jpg", "new2.jpg", "new3.jpg")
        snapshot = case.measure(
            "copy",
            str(case.local),
            "pscrypt:folder",
            "--files-from-raw",
            case.files_from(*names),
            "--no-traverse",
            *flags,
        )
        assert case.listed("folder") == {*names, "old1.jpg", "old2.jpg", "kept.jpg"}
        return snapshot

    return run


def move_to_archive(case: CryptCase) -> CountSnapshot:
    snapshot = case.measure(
        "move",
        "pscrypt:folder",
        "pscrypt:.deleted/RUN/folder",
        "--files-from-raw",
        case.files_from("old1.jpg", "old2.jpg"),
        "--no-traverse",
    )
    assert case.listed("folder") == {"kept.jpg"}
    assert case.listed(".deleted/RUN/folder") == {"old1.jpg", "old2.jpg"}
    return snapshot


def rc_movefile(calls_before: int) -> Callable[[CryptCase], CountSnapshot]:
    """`operations/movefile` through `rclone rcd`, measured after `calls_before` earlier
    moves in the same rcd (0: a cold start, 1: the crypt and S3 Fs are cached)."""

    def run(case: CryptCase) -> CountSnapshot:
        names = ["a", "b", "c"]
        with rclone_rcd(case.env) as url:
            for step in range(calls_before + 1):
                if step == calls_before:
                    case.s3.counter.reset()
                rc_call(
                    url,
                    "operations/movefile",
                    {
                        "srcFs": "pscrypt:",
                        "srcRemote": names[step],
                        "dstFs": "pscrypt:",
                        "dstRemote": names[step + 1],
                    },
                )
            snapshot = case.s3.counter.snapshot()
        top = case.listed("")
        assert names[calls_before + 1] in top and not {*names[: calls_before + 1]} & top
        return snapshot

    return run


def upload_manifest(exists: bool, *flags: str) -> Callable[[CryptCase], CountSnapshot]:
    def run(case: CryptCase) -> CountSnapshot:
        if exists:
            case.rclone("copyto", str(case.local / "kept.jpg"), "pscrypt:.photos-sync/manifest.gz")
        manifest = case.local.parent / "manifest.gz"
        manifest.write_bytes(os.urandom(700))
        snapshot = case.measure("copyto", str(manifest), "pscrypt:.photos-sync/manifest.gz", *flags)
        fetched = case.local.parent / "fetched.gz"
        case.rclone("copyto", "pscrypt:.photos-sync/manifest.gz", str(fetched))
        assert fetched.read_bytes() == manifest.read_bytes()
        return snapshot

    return run


def download_head(case: CryptCase) -> CountSnapshot:
    target = case.local.parent / "head.json"
    snapshot = case.measure("copyto", "pscrypt:.photos-sync/head.json", str(target))
    assert target.read_bytes() == b'{"run": 1}\n'
    return snapshot


# rclone v1.75 with default S3 flags; a crypt object name is one key (folder names are
# encrypted segments of it). Recurring requests, explained once:
# - "root HEAD": rclone's S3 NewFs HEADs the path it is given, to learn whether it names a
#   file (an object) or a folder (a prefix: 404). A file path then also gets HEADed as the
#   object. Both for a source and for a destination Fs.
# - "bucket check": PUT /bucket (OTHER, 409 here) before the first write of an Fs, unless a
#   HEAD of that Fs found an object (bucket known to exist). --s3-no-check-bucket drops it.
# - "read-back HEAD": after each PutObject or CopyObject rclone HEADs the new object for its
#   metadata. --s3-no-head drops it after uploads (not after server-side copies).
CRYPT_CASES = [
    # a) root HEAD of some/file (a file) -> an Fs on some/ filtered to the one file, which
    #    cat LISTs (delimiter=/, prefix=<some>/), then GetObject. cat does list.
    pytest.param(cat_file, {"HEAD": 1, "LIST": 1, "GET": 1}, id="a-cat"),
    # b) root HEAD of the file, then HEAD of the object: no listing.
    pytest.param(lsjson_file("--stat"), {"HEAD": 2}, id="b-lsjson-stat"),
    # b') without --stat, lsjson lists the parent folder filtered to the file, as cat does.
    pytest.param(lsjson_file(), {"HEAD": 2, "LIST": 1}, id="b-lsjson"),
    # c) root HEAD of folder (404), bucket check, 3 PutObject, 3 read-back HEADs.
    pytest.param(
        copy_files_from("--no-check-dest"),
        {"HEAD": 4, "PUT": 3, "OTHER": 1},
        id="c-copy-no-traverse-no-check-dest",
    ),
    # d) as c) plus one HEAD per file (404) to see whether the destination holds it.
    pytest.param(
        copy_files_from(),
        {"HEAD": 7, "PUT": 3, "OTHER": 1},
        id="d-copy-no-traverse",
    ),
    # e) root HEADs of folder and of .deleted/RUN/folder (404 both), HEAD of each source
    #    object (200), HEAD of each destination (404), the bucket check (the destination Fs
    #    found no object), 2 CopyObject, 2 read-back HEADs, 2 DeleteObject.
    pytest.param(
        move_to_archive,
        {"HEAD": 8, "COPY": 2, "DELETE": 2, "OTHER": 1},
        id="e-move-no-traverse",
    ),
    # f) root HEAD of pscrypt: itself (the first use of that Fs in the rcd), HEAD a (200),
    #    HEAD b (404), CopyObject, read-back HEAD, DeleteObject a. No bucket check: source
    #    and destination are the same cached Fs, whose HEAD of a found an object.
    pytest.param(rc_movefile(0), {"HEAD": 4, "COPY": 1, "DELETE": 1}, id="f-rc-movefile"),
    # f') a second movefile in the same rcd: the Fs is cached, no root HEAD.
    pytest.param(rc_movefile(1), {"HEAD": 3, "COPY": 1, "DELETE": 1}, id="f-rc-movefile-warm"),
    # g) root HEAD of .photos-sync (404), HEAD manifest.gz (404), bucket check, PutObject,
    #    read-back HEAD.
    pytest.param(
        upload_manifest(exists=False), {"HEAD": 3, "PUT": 1, "OTHER": 1}, id="g-copyto-new"
    ),
    # g') manifest.gz already there (and different): its HEAD is a 200, no bucket check.
    pytest.param(upload_manifest(exists=True), {"HEAD": 3, "PUT": 1}, id="g-copyto-replace"),
    # g'') with --s3-no-check-bucket --s3-no-head: the two root/object HEADs and the PUT.
    pytest.param(
        upload_manifest(False, "--s3-no-check-bucket", "--s3-no-head"),
        {"HEAD": 2, "PUT": 1},
        id="g-copyto-new-tuned",
    ),
    # c') c) with --s3-no-check-bucket --s3-no-head: the root HEAD and the 3 PutObject.
    pytest.param(
        copy_files_from("--no-check-dest", "--s3-no-check-bucket", "--s3-no-head"),
        {"HEAD": 1, "PUT": 3},
        id="c-copy-tuned",
    ),
    # h) root HEAD of head.json (a file), HEAD of the object, GetObject.
    pytest.param(download_head, {"HEAD": 2, "GET": 1}, id="h-copyto-download"),
]


@pytest.mark.parametrize(("command", "expected"), CRYPT_CASES)
def test_crypt_command_requests(
    crypt_case: CryptCase,
    command: Callable[[CryptCase], CountSnapshot],
    expected: dict[str, int],
) -> None:
    snapshot = command(crypt_case)
    assert snapshot.nonzero() == expected, snapshot.describe()
