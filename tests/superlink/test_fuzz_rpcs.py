"""Every gRPC method of a real SuperLink process gets random bytes and mutated valid requests.

The SuperLink must answer each with an error status it chose (never INTERNAL/UNKNOWN, never
die), and its stored state must be unchanged afterwards. The default suite tries a bounded
number of inputs (``GLADE_FUZZ_EXAMPLES``, default 60 per method); ``-m slow`` runs a longer
campaign. The number of inputs tried is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import os
import random
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

from glade.transport.objects import node_metadata

METHODS = all_methods()


class Target:
    """A SuperLink process with a finished run, its log and a registered node."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.database = root / "state.db"
        ready = root / "ready.json"
        self.proc = GladeProcess(
            [
                "superlink",
                "--insecure",
                *("--control-address", "127.0.0.1:0", "--fleet-address", "127.0.0.1:0"),
                *("--serverappio-address", "127.0.0.1:0", "--database", str(self.database)),
                *("--node-offline-timeout", "3600", "--ready-file", str(ready)),
                *extra,
            ],
            log=root / "superlink.log",
            cwd=root,
        )
        self.addresses = read_ready_file(ready, proc=self.proc.popen, what="the SuperLink")
        control = Control(self.addresses["control"])
        try:
            self.run_id = control.start(make_bundle(echo_app()), mode="exit", code=0)
            control.wait(self.run_id)
        finally:
            control.close()
        node = FakeNode(self.addresses["fleet"])
        self.node_id = node.node_id
        node.close()
        self.caller = Caller(self.addresses)
        self.tried: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def send(self, method: Method, payload: bytes | list[bytes], **kw: Any) -> grpc.StatusCode:
        code = self.caller.call(method, payload, **kw)
        self.tried[method.path] += 1
        self.codes[code.name] += 1
        return code

    def alive(self) -> bool:
        return self.proc.popen.poll() is None

    def close(self) -> None:
        self.caller.close()
        self.proc.terminate()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    try:
        yield t
    finally:
        total = sum(t.tried.values())
        print(f"\nfuzzed {total} inputs over {len(t.tried)} methods; statuses: {dict(t.codes)}")
        t.close()


EXAMPLES = int(os.environ.get("GLADE_FUZZ_EXAMPLES", "60"))


def _campaign(target: Target, method: Method, examples: int, seed: int) -> None:
    rng = random.Random(seed)
    # Unregister with the real id would legitimately remove the node: seed an unknown one
    node_id = target.node_id + 1 if method.name == "Unregister" else target.node_id
    valid = seed_request(method, node_id=node_id, run_id=target.run_id)
    metadata = node_metadata(target.node_id) if method.api == "fleet" else ()

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
        with_metadata=st.booleans(),
    )
    def one(raw: bytes | None, rounds: int, with_metadata: bool) -> None:
        payload = valid if raw is None else raw
        if raw is None:
            for _ in range(rounds):
                payload = mutate(payload, rng)
        sent: bytes | list[bytes] = payload
        if method.client_streaming:
            sent = [payload, mutate(valid, rng)][: rounds % 2 + 1]
        code = target.send(method, sent, metadata=metadata if with_metadata else ())
        assert code not in BAD_CODES, (
            f"{method.path} answered {code.name} to {payload!r}: see the SuperLink log"
        )

    one()


def _assert_state_kept(method: Method, before: State, after: State) -> None:
    """Unchanged, except that an open Fleet (no node auth) lets any request Register."""
    if method.name == "Register" and not method.authenticated:
        grown = {t: [r for r in rows if r not in after.get(t, [])] for t, rows in before.items()}
        assert not any(grown.values()), f"Register lost or changed stored rows: {grown}"
        assert {t: r for t, r in after.items() if t != "nodes"} == {
            t: r for t, r in before.items() if t != "nodes"
        }
        return
    assert after == before, f"{method.path} changed the stored state"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path.strip("/"))
def test_method_survives_random_and_mutated_requests(target: Target, method: Method) -> None:
    before = snapshot(target.database)
    _campaign(target, method, EXAMPLES, seed=hash(method.path) & 0xFFFF)
    assert target.alive(), "the SuperLink died"
    _assert_state_kept(method, before, snapshot(target.database))
    assert target.tried[method.path] >= EXAMPLES


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.path.strip("/"))
def test_method_survives_a_long_campaign(target: Target, method: Method) -> None:
    before = snapshot(target.database)
    _campaign(target, method, 20 * EXAMPLES, seed=7 + (hash(method.path) & 0xFFFF))
    assert target.alive()
    _assert_state_kept(method, before, snapshot(target.database))
