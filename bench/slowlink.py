"""A slow-link TCP proxy for the benchmarks: fixed added delay per direction, token-bucket rate.

    python bench/slowlink.py --target 127.0.0.1:9000 --delay-ms 20 --rate-mbit 100

Listens on 127.0.0.1 (a free port unless --port), prints `READY <port>` on stdout, and
forwards every connection to --target. Each direction of the link has its own token bucket
(shared by all connections, like one uplink and one downlink) and adds --delay-ms to every
byte (RTT = 2 x delay). The buffer per connection and direction is bounded by the
bandwidth-delay product plus 256 KiB, so TCP back-pressure reaches the sender as on a real
link instead of the proxy swallowing the upload at loopback speed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

READ_SIZE = 16 * 1024


class Bucket:
    """Token bucket with debt: a sender reserves its bytes and sleeps off any deficit."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = asyncio.get_running_loop().time()
        self.total = 0

    async def take(self, n: int) -> None:
        now = asyncio.get_running_loop().time()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        self.total += n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


async def pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    bucket: Bucket,
    delay: float,
    max_chunks: int,
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=max_chunks)

    async def receive() -> None:
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError:
                data = b""
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            await bucket.take(len(data))
            writer.write(data)
            await writer.drain()

    receiving = asyncio.create_task(receive())
    try:
        await send()
    except OSError:
        pass
    finally:
        receiving.cancel()


async def main_async(args: argparse.Namespace) -> None:
    host, port = args.target.rsplit(":", 1)
    rate = args.rate_mbit * 1e6 / 8
    delay = args.delay_ms / 1000
    max_chunks = int((rate * delay + 256 * 1024) // READ_SIZE) + 1
    up, down = Bucket(rate, args.burst_kib * 1024), Bucket(rate, args.burst_kib * 1024)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pipe(client_r, server_w, up, delay, max_chunks),
            pipe(server_r, client_w, down, delay, max_chunks),
            return_exceptions=True,
        )
        for w in (client_w, server_w):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"BYTES up={up.total} down={down.total}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added delay per direction")
    parser.add_argument("--rate-mbit", type=float, default=100.0, help="per direction")
    parser.add_argument("--burst-kib", type=float, default=64.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
