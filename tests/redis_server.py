"""A real ``redis-server`` on a free loopback port, started and stopped by the tests, and the
deployments fleets run: a Cluster of three masters, a master with a replica watched by a
Sentinel, and TLS with a CA and a server certificate made by ``openssl``.

No persistence (``--save '' --appendonly no``), its files in a temporary directory. Under
``CI=true`` a missing ``redis-server`` fails the test instead of skipping it: CI installs
it (``.ci/run``), so a missing one there is a broken setup, not a reason to test less.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

START_TIMEOUT = 20.0


def redis_server_binary(name: str = "redis-server", package: str = "redis-server") -> str:
    """The path of ``name``; skips the test (fails it under CI) when missing."""
    binary = shutil.which(name)
    if binary is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it (see .ci/run)")
        pytest.skip(message)
    return binary


def free_port(bus: bool = False) -> int:
    """A free loopback port; with ``bus``, one whose Cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as probe, socket.socket() as bus_probe:
            probe.bind(("127.0.0.1", random.randrange(20000, 30000) if bus else 0))
            port = int(probe.getsockname()[1])
            try:
                if bus:
                    bus_probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port


@dataclasses.dataclass(frozen=True)
class Tls:
    """A CA and a server certificate for 127.0.0.1 signed by it, made by ``openssl``."""

    ca: str
    cert: str
    key: str

    @classmethod
    def make(cls, directory: str) -> Tls:
        openssl = redis_server_binary("openssl", "openssl")
        ca, cert, key = (
            os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")
        )
        ca_key, request = os.path.join(directory, "ca.key"), os.path.join(directory, "req.pem")
        san = os.path.join(directory, "san.cnf")
        with open(san, "w") as file:  # what Python 3.13's strict X.509 checks ask of a leaf
            file.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                       "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")  # fmt: skip
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_extensions = ["-addext", "basicConstraints=critical,CA:TRUE",
                         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]  # fmt: skip
        for command in (
            ["req", "-x509", *ec, *ca_extensions, "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=test CA"],
            ["req", *ec, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", san],
        ):  # fmt: skip
            subprocess.run([openssl, *command], check=True, capture_output=True, timeout=60)
        return cls(ca, cert, key)


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``url`` to reach it, ``client()`` to set it
    up. ``options`` are more command-line options; ``tls`` makes it take TLS only;
    ``sentinel`` runs it as a Sentinel (``options`` then start with its monitor line)."""

    def __init__(self, *options: str, tls: bool = False, sentinel: bool = False) -> None:
        self.port = 0
        self.options, self.sentinel = options, sentinel
        self._process: subprocess.Popen[bytes] | None = None
        self._directory = tempfile.TemporaryDirectory(prefix="redis-test-")
        self.tls = Tls.make(self._directory.name) if tls else None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        """A client for setting the server up (TLS if it takes TLS)."""
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=self.tls.ca)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10.0, **options)

    def start(self, port: int = 0) -> RedisServer:
        binary = redis_server_binary()
        directory = self._directory.name
        for _ in range(3):  # another process may take the free port before redis binds it
            self.port = port or free_port(bus="--cluster-enabled" in self.options)
            listen = ["--port", str(self.port)]
            if self.tls is not None:
                listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                          "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                          "--tls-ca-cert-file", self.tls.ca]  # fmt: skip
            command = [binary, *listen, "--bind", "127.0.0.1", "--dir", directory,
                       "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
            if self.sentinel:  # a Sentinel keeps its state in a config file of its own
                config = os.path.join(directory, "sentinel.conf")
                with open(config, "w") as file:
                    file.write("\n".join(self.options) + "\n")
                command[1:1] = [config, "--sentinel"]
            else:
                command += ["--save", "", "--appendonly", "no", *self.options]
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_ready():
                return self
            self._kill()
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
        self._process = None

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def close(self) -> None:
        self.stop()
        self._directory.cleanup()

    def __enter__(self) -> RedisServer:  # noqa: PYI034 - typing.Self needs Python 3.11
        try:
            return self.start()
        except BaseException:
            # A skip (no redis-server here) or a failed start leaves no directory behind.
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_for(check: Any, what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:g} s")


@contextlib.contextmanager
def redis_cluster() -> Iterator[list[RedisServer]]:
    """A Redis Cluster of three masters (no replicas) on loopback, its slots all served."""
    cli = redis_server_binary("redis-cli", "redis-tools")
    nodes = [RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
             for _ in range(3)]  # fmt: skip
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in nodes),
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for node in nodes:
            client = node.client()
            wait_for(
                lambda c=client: c.execute_command("CLUSTER INFO")["cluster_state"] == "ok",
                "the cluster did not become ready",
            )
            client.close()
        yield nodes
    finally:
        for node in nodes:
            node.close()


@contextlib.contextmanager
def redis_sentinel() -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    """A master, a replica of it, and a Sentinel watching them as ``mymaster`` (quorum 1)."""
    master = RedisServer()
    replica = RedisServer()
    sentinel = None
    try:
        master.start()
        replica.options = ("--replicaof", "127.0.0.1", str(master.port))
        replica.start()
        sentinel = RedisServer(
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1",
            "sentinel down-after-milliseconds mymaster 2000",
            "sentinel failover-timeout mymaster 10000",
            sentinel=True,
        ).start()
        client = sentinel.client()
        wait_for(lambda: client.sentinel_slaves("mymaster"), "the Sentinel found no replica")
        client.close()
        yield master, replica, sentinel
    finally:
        for server in (sentinel, replica, master):
            if server is not None:
                server.close()
