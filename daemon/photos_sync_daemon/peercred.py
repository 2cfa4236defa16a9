"""The uid of the process at the other end of a Unix socket.

Linux: SO_PEERCRED (struct ucred: pid, uid, gid). macOS/BSD: LOCAL_PEERCRED (struct xucred:
version, uid, ...), the same data as getpeereid(3). None when the platform offers neither.
"""

from __future__ import annotations

import socket
import struct
import sys

_SOL_LOCAL = 0  # macOS <sys/un.h>
_LOCAL_PEERCRED = 0x001


def peer_uid(sock: socket.socket) -> int | None:
    if hasattr(socket, "SO_PEERCRED"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        level = getattr(socket, "SOL_LOCAL", _SOL_LOCAL)
        option = getattr(socket, "LOCAL_PEERCRED", _LOCAL_PEERCRED)
        raw = sock.getsockopt(level, option, struct.calcsize("IIh16I") + 8)
        _version, uid = struct.unpack_from("II", raw)
        return int(uid)
    return None
