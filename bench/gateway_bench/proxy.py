"""A TCP proxy the benchmark can cut, run as its own process so that its copying does not share the
bench's interpreter (and GIL) with the Kafka consumer that times the drain.

    python -m bench.gateway_bench.proxy LISTEN_PORT TARGET_PORT

It forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT and takes commands on stdin, one a line,
answering each on stdout once it is done:

    cut      -> "cut"       every connection is reset and the port refuses new ones: the service
                            looks dead, as a broker whose host went away does
    restore  -> "restored"  the port accepts again

It says "ready" once it listens, and exits when stdin closes (the bench is gone) or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

HOST = "127.0.0.1"
CHUNK = 256 * 1024


class Proxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()

    async def listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, HOST, self.listen_port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # RST, as a vanished peer's kernel would answer
        self._transports.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer.transport, upstream_writer.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


async def serve(listen_port: int, target_port: int) -> None:
    proxy = Proxy(listen_port, target_port)
    await proxy.listen()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    while line := await stdin.readline():
        command = line.decode().strip()
        if command == "cut":
            await proxy.cut()
            print("cut", flush=True)
        elif command == "restore":
            await proxy.listen()
            print("restored", flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)
    await proxy.cut()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(arg.isdigit() for arg in argv):
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(int(argv[0]), int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
