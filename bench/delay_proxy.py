"""A userspace network delay: a TCP proxy on 127.0.0.1 that holds every chunk `delay` seconds.

`tc netem` is not available here, so bench/throughput.py puts this in front of PostgreSQL to
add a round-trip time (10 ms each way: RTT +20 ms). Each chunk read from one side is stamped
with a release time (arrival + delay) and queued; that direction's writer sends it at its
release time, in order. Reading never waits for writing, so chunks in flight overlap as on a
real link: the delay is added once per direction, not once per chunk, and the bandwidth is
what the machine gives (a sleep per chunk in one loop would serialise the delays).

`python bench/delay_proxy.py --target 127.0.0.1:5432 --delay-ms 10 [--port N]` runs one
until Ctrl-C; `DelayProxy(...)` runs one in a thread of the calling process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from typing import Self

CHUNK = 256 * 1024
_EOF = b""


class DelayProxy:
    """A delaying TCP proxy on 127.0.0.1:`port` in front of `target`, served in a thread."""

    def __init__(self, target_host: str, target_port: int, delay: float, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay  # seconds, each direction
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(port,), daemon=True, name="delay-proxy"
        )
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop listening, drop every connection and end the thread."""
        if self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop's thread ---------------------------------------------------------------------
    def _serve(self, port: int) -> None:
        try:
            self._loop.run_until_complete(self._main(port))
        finally:
            self._loop.close()

    async def _main(self, port: int) -> None:
        self._stopped = asyncio.Event()
        links: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            assert task is not None
            links.add(task)
            try:
                await self._link(reader, writer)
            except asyncio.CancelledError:
                pass  # close(): the link ends with the proxy (asyncio would log a cancelled task)
            finally:
                links.discard(task)

        try:
            self._server = await asyncio.start_server(accept, "127.0.0.1", port)
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        async with self._server:
            await self._stopped.wait()
            self._server.close()
            for task in list(links):
                task.cancel()
            await asyncio.gather(*links, return_exceptions=True)

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        # Both directions run until each has passed on its EOF; either failing ends the link.
        try:
            await asyncio.gather(
                self._direction(client_r, server_w), self._direction(server_r, client_w)
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_w, server_w):
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _direction(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Read as fast as data comes; a writer task releases each chunk at arrival + delay."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        writer = asyncio.create_task(self._release(queue, sink))
        try:
            while not writer.done():  # done early: the sink failed; its error ends the link
                data = await source.read(CHUNK)
                queue.put_nowait((loop.time() + self.delay, data))
                if data == _EOF:
                    break
            await writer
        finally:
            writer.cancel()

    @staticmethod
    async def _release(
        queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            release, data = await queue.get()
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data == _EOF:  # the peer closed its side: pass the FIN on, late like the rest
                if sink.can_write_eof():
                    with contextlib.suppress(OSError):
                        sink.write_eof()
                return
            sink.write(data)
            await sink.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="each direction (default 10)")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any free)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with DelayProxy(host or "127.0.0.1", int(port), args.delay_ms / 1000, args.port) as proxy:
        print(
            f"127.0.0.1:{proxy.port} -> {args.target}, +{args.delay_ms:g} ms each way", flush=True
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
