"""Every gRPC method of a real SuperLink process gets random bytes and mutated valid requests.

The SuperLink must answer each with an error status it chose (never INTERNAL/UNKNOWN, never
die), and its stored state must be unchanged afterwards. The default suite tries a bounded
number of inputs (``GLADE_FUZZ_EXAMPLES``, default 60 per method); ``-m slow`` runs a longer
campaign. The number of inputs tried is printed (run with ``-s`` to see it). Two SuperLinks
are fuzzed: an open one (requests reach the handlers) and one with user and node
authentication on.
"""

from __future__ import annotations

import base64
import os
import random
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzz_harness import (
    BAD_CODES,
    Caller,
    Method,
    State,
    all_methods,
    mutate,
    seed_request,
    snapshot,
)
from glade_testing import GladeProcess, read_ready_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sl_harness import Control, FakeNode, echo_app, make_bundle

from glade.keypairs import PrivateKey
from glade.transport.grpc_options import channel
from glade.transport.objects import node_metadata
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc

Metadata = tuple[tuple[str, str | bytes], ...]

METHODS = all_methods()


PASSWORD = "correct horse battery staple"


class Target:
    """A SuperLink process to fuzz, with something stored in each table.

    ``open``: no user or node authentication (requests reach the handlers); it holds a
    finished run with its log and a registered node. ``secured``: user and node
    authentication on; it holds an admin, a user and an allow-listed node key, and the
    Control calls carry the (non-admin) user's token half of the time.
    """

    def __init__(self, root: Path, mode: str) -> None:
        self.mode = mode
        self.database = root / "state.db"
        ready = root / "ready.json"
        extra: list[str] = []
        if mode == "secured":
            (root / "pw").write_text(PASSWORD + "\n")
            extra = ["--user-auth", "--node-auth", "--init-admin", "admin"]
            extra += ["--init-admin-password-file", str(root / "pw")]
        self.proc = GladeProcess(
            [
                "superlink",
                "--insecure",
                *("--control-address", "127.0.0.1:0", "--fleet-address", "127.0.0.1:0"),
                *("--serverappio-address", "127.0.0.1:0", "--database", str(self.database)),
                *("--node-offline-timeout", "3600", "--ready-file", str(ready)),
                "--bulk",  # OpenBulk hands out tickets (glade.superlink.bulk)
                *extra,
            ],
            log=root / "superlink.log",
            cwd=root,
        )
        self.addresses = read_ready_file(ready, proc=self.proc.popen, what="the SuperLink")
        self.run_id, self.node_id = 1, 1
        self.users = 0
        if mode == "secured":
            self._seed_secured()
        else:
            self._seed_open()
        self.caller = Caller(self.addresses)
        self.tried: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def _seed_open(self) -> None:
        control = Control(self.addresses["control"])
        try:
            self.run_id = control.start(make_bundle(echo_app()), mode="exit", code=0)
            control.wait(self.run_id)
        finally:
            control.close()
        node = FakeNode(self.addresses["fleet"])
        self.node_id = node.node_id
        node.close()

    def _seed_secured(self) -> None:
        with channel(self.addresses["control"]) as ch:
            stub = control_pb2_grpc.ControlStub(ch)
            self.admin = admin = self.bearer(stub, "admin")
            stub.AddUser(
                cpb.AddUserRequest(name="alice", role="user", password=PASSWORD), metadata=admin
            )
            key = PrivateKey.generate().public_key.raw
            stub.AddNodeKey(
                cpb.AddNodeKeyRequest(public_key=key, name="hospital-a"), metadata=admin
            )

    def bearer(self, stub: Any, user: str) -> tuple[tuple[str, str], ...]:
        token = stub.Login(cpb.LoginRequest(username=user, password=PASSWORD)).token
        return (("authorization", f"Bearer {token}"),)

    def metadata_variants(self, method: Method) -> list[Metadata]:
        """What the fuzzed calls of ``method`` carry (one variant per call, drawn at random)."""
        if method.api == "fleet":
            forged = (
                ("glade-node-key", base64.b64encode(b"k" * 32).decode()),
                ("glade-timestamp", "1"),
                ("glade-nonce", "00" * 16),
                ("glade-signature-bin", b"\x00" * 64),
            )
            return [(), node_metadata(self.node_id), forged]
        if method.api == "control" and self.mode == "secured":
            with channel(self.addresses["control"]) as ch:
                # a fresh user per campaign: a fuzzed SetPassword may lock its name out
                stub = control_pb2_grpc.ControlStub(ch)
                self.users += 1
                name = f"user{self.users}"
                stub.AddUser(
                    cpb.AddUserRequest(name=name, role="user", password=PASSWORD),
                    metadata=self.admin,
                )
                user = self.bearer(stub, name)
            return [(), (("authorization", "Bearer not-a-token"),), user, user]
        return [()]

    def send(self, method: Method, payload: bytes | list[bytes], **kw: Any) -> grpc.StatusCode:
        code = self.caller.call(method, payload, **kw)
        self.tried[f"{self.mode}:{method.path}"] += 1
        self.codes[code.name] += 1
        return code

    def alive(self) -> bool:
        return self.proc.popen.poll() is None

    def close(self) -> None:
        self.caller.close()
        self.proc.terminate()


@pytest.fixture(scope="module", params=["open", "secured"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp(f"fuzz-{request.param}"), request.param)
    try:
        yield t
    finally:
        total = sum(t.tried.values())
        print(f"\nfuzzed {total} inputs ({t.mode}) over {len(t.tried)} methods: {dict(t.codes)}")
        t.close()


EXAMPLES = int(os.environ.get("GLADE_FUZZ_EXAMPLES", "60"))


def _campaign(
    target: Target, method: Method, examples: int, seed: int, variants: list[Metadata]
) -> None:
    rng = random.Random(seed)
    # Unregister / Register with the real id would legitimately remove or rename the node
    node_id = 0 if method.name in ("Register", "Unregister") else target.node_id
    valid = seed_request(method, node_id=node_id, run_id=target.run_id)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        raw=st.one_of(st.binary(max_size=256), st.just(None)),
        rounds=st.integers(min_value=1, max_value=3),
        variant=st.integers(min_value=0, max_value=len(variants) - 1),
    )
    def one(raw: bytes | None, rounds: int, variant: int) -> None:
        payload = valid if raw is None else raw
        if raw is None:
            for _ in range(rounds):
                payload = mutate(payload, rng)
        sent: bytes | list[bytes] = payload
        if method.client_streaming:
            sent = [payload, mutate(valid, rng)][: rounds % 2 + 1]
        code = target.send(method, sent, metadata=variants[variant])
        assert code not in BAD_CODES, (
            f"{method.path} answered {code.name} to {payload!r}: see the SuperLink log"
        )

    one()


def _assert_state_kept(target: Target, method: Method, before: State, after: State) -> None:
    """Unchanged, except that an open Fleet (no node auth) lets anyone Register and Unregister
    nodes: there only the seeded node must be kept as it was."""
    if target.mode == "open" and method.name in ("Register", "Unregister"):
        seeded = [r for r in before["nodes"] if r[0] == target.node_id]
        assert seeded and [r for r in after["nodes"] if r[0] == target.node_id] == seeded
        before = {t: r for t, r in before.items() if t != "nodes"}
        after = {t: r for t, r in after.items() if t != "nodes"}
    assert after == before, f"{method.path} changed the stored state"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path.strip("/"))
def test_method_survives_random_and_mutated_requests(target: Target, method: Method) -> None:
    variants = target.metadata_variants(method)
    before = snapshot(target.database)
    _campaign(target, method, EXAMPLES, zlib.crc32(method.path.encode()), variants)
    assert target.alive(), "the SuperLink died"
    _assert_state_kept(target, method, before, snapshot(target.database))
    assert target.tried[f"{target.mode}:{method.path}"] >= EXAMPLES


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path.strip("/"))
def test_method_survives_a_long_campaign(target: Target, method: Method) -> None:
    variants = target.metadata_variants(method)
    before = snapshot(target.database)
    _campaign(target, method, 20 * EXAMPLES, 7 + zlib.crc32(method.path.encode()), variants)
    assert target.alive()
    _assert_state_kept(target, method, before, snapshot(target.database))
