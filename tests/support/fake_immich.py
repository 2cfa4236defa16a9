"""A REAL HTTP server on 127.0.0.1 that speaks the bits of Immich's API photos-sync uses.

Endpoints (as Immich answers them; JSON error bodies {"message", "error", "statusCode"}):

- `GET /api/server/version` (public) → {"major", "minor", "patch"}
- `GET /api/users/me` → the key's user, {"id", "email", "name", "isAdmin", ...}
- `POST /api/jobs` {"name": "backup-database"} → 204; the dump is written into `backups/`
  (with `manual_backup_job=False`, 400 for that job name, like a server without it)
- `PUT /api/jobs/backupDatabase` {"command": "start", "force": false} → 200 with the queue's
  counts (with `queue_command=False`, 404, like a server that dropped that endpoint)

Authenticated endpoints need the `x-api-key` header: none → 401 "Authentication required",
a wrong one → 401 "Invalid API key"; on the admin-only job endpoints a non-admin user's key
→ 403 "Forbidden". Then, like Immich's AuthService.authenticate, the key's `permissions` must
grant the route's permission (`user.read` for /users/me, `job.create` for the job endpoints;
"all" grants every one), else 403 "Missing required permission: <name>".

A dump is written like Immich does: `<name>.sql.gz.tmp` growing in `grow_steps` pieces over
`dump_delay` seconds, then renamed to `<name>.sql.gz` (or, with `in_place`, written and grown
under its final name, as older Immich did).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MANUAL_JOBS = (
    "person-cleanup",
    "tag-cleanup",
    "user-cleanup",
    "memory-cleanup",
    "memory-create",
    "backup-database",
)


@dataclass
class FakeImmich:
    backups_dir: Path
    api_key: str
    version: tuple[int, int, int] = (2, 3, 1)
    is_admin: bool = True
    dump_size: int = 300_000
    dump_delay: float = 0.0
    grow_steps: int = 1
    in_place: bool = False
    write_dump: bool = True  # False: accept the job but never write (a hung Immich)
    manual_backup_job: bool = True
    queue_command: bool = True
    #: the API key's permissions, as chosen when it was created in Immich
    permissions: tuple[str, ...] = ("all",)
    #: (method, path, had a key header) of every request
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    port: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dump_name(self) -> str:
        if self.in_place:
            return f"immich-db-backup-{int(time.time() * 1000)}.sql.gz"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        major, minor, patch = self.version
        return f"immich-db-backup-{stamp}-v{major}.{minor}.{patch}-pg14.19.sql.gz"

    def _write(self) -> None:
        final = self.backups_dir / self.dump_name()
        target = final if self.in_place else final.with_name(final.name + ".tmp")
        steps = max(1, self.grow_steps)
        data = whole_dump(self.dump_size)
        chunk = -(-len(data) // steps)
        with target.open("wb") as handle:
            for n in range(steps):
                if n:
                    time.sleep(self.dump_delay / steps)
                handle.write(data[n * chunk : (n + 1) * chunk])  # growing, as pg_dump | gzip
                handle.flush()
        if self.dump_delay and steps == 1:
            time.sleep(self.dump_delay)
        if not self.in_place:
            target.rename(final)
        self.written.append(final)

    def start_dump(self) -> None:
        if not self.write_dump:
            return
        thread = threading.Thread(target=self._write, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self, timeout: float = 10) -> None:
        for thread in self._threads:
            thread.join(timeout)


def whole_dump(size: int) -> bytes:
    """A gzip'd dump of `size` bytes (when size allows) that reads as whole: pg_dump's first
    and last lines around filler comments, as the consistency proof (#16) expects."""
    head = b"--\n-- PostgreSQL database dump\n--\n\n"
    tail = b"--\n-- PostgreSQL database dump complete\n--\n\n"
    filler = max(0, size - 120)
    data = b""
    for _ in range(4):  # stored deflate blocks: the overhead settles after a step or two
        text = head + b"-- " + b"f" * filler + b"\n" + tail
        data = gzip.compress(text, compresslevel=0, mtime=0)
        if len(data) == size or filler == 0:
            break
        filler = max(0, filler + size - len(data))
    return data


def _handler(fake: FakeImmich) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: Any, error: str) -> None:
            self._send(status, {"message": message, "error": error, "statusCode": status})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"null")
            except ValueError:
                return None

        def _authorised(self) -> bool:
            key = self.headers.get("x-api-key")
            if not key:
                self._error(401, "Authentication required", "Unauthorized")
                return False
            if key != fake.api_key:
                self._error(401, "Invalid API key", "Unauthorized")
                return False
            return True

        def _granted(self, permission: str) -> bool:
            if "all" in fake.permissions or permission in fake.permissions:
                return True
            self._error(403, f"Missing required permission: {permission}", "Forbidden")
            return False

        def _admin(self, permission: str) -> bool:
            if not self._authorised():
                return False
            if not fake.is_admin:
                self._error(403, "Forbidden", "Forbidden")
                return False
            return self._granted(permission)

        def _not_found(self) -> None:
            self._error(404, f"Cannot {self.command} {self.path}", "Not Found")

        def _record(self) -> None:
            fake.requests.append((self.command, self.path, bool(self.headers.get("x-api-key"))))

        def do_GET(self) -> None:
            self._record()
            if self.path == "/api/server/version":
                major, minor, patch = fake.version
                self._send(200, {"major": major, "minor": minor, "patch": patch})
            elif self.path == "/api/users/me":
                if self._authorised() and self._granted("user.read"):
                    self._send(
                        200,
                        {
                            "id": "0b4bbde1-51b8-4a4a-a4c2-7d0c2e5f6a11",
                            "email": "admin@example.com",
                            "name": "Admin",
                            "isAdmin": fake.is_admin,
                            "shouldChangePassword": False,
                        },
                    )
            else:
                self._not_found()

        def do_POST(self) -> None:
            self._record()
            body = self._body()
            if self.path != "/api/jobs":
                self._not_found()
                return
            if not self._admin("job.create"):
                return
            known = MANUAL_JOBS if fake.manual_backup_job else MANUAL_JOBS[:-1]
            if not isinstance(body, dict) or body.get("name") not in known:
                self._error(
                    400,
                    [f"name must be one of the following values: {', '.join(known)}"],
                    "Bad Request",
                )
                return
            if body["name"] == "backup-database":
                fake.start_dump()
            self._send(204)

        def do_PUT(self) -> None:
            self._record()
            body = self._body()
            if not fake.queue_command or not self.path.startswith("/api/jobs/"):
                self._not_found()
                return
            if not self._admin("job.create"):
                return
            name = self.path.rsplit("/", 1)[1]
            if name != "backupDatabase" or not isinstance(body, dict) or "command" not in body:
                self._error(400, ["name must be a valid queue name"], "Bad Request")
                return
            if body["command"] == "start":
                fake.start_dump()
            self._send(
                200,
                {
                    "jobCounts": {
                        "active": 1,
                        "completed": 0,
                        "failed": 0,
                        "delayed": 0,
                        "waiting": 0,
                        "paused": 0,
                    },
                    "queueStatus": {"isActive": True, "isPaused": False},
                },
            )

    return Handler


@contextmanager
def serve_immich(backups_dir: Path, api_key: str, **options: Any) -> Iterator[FakeImmich]:
    """Run a FakeImmich on a free loopback port until the block ends."""
    fake = FakeImmich(backups_dir, api_key, **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.port = int(server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        fake.join()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (Immich down)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
