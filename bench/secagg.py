"""Benchmark of SecAgg+: round overhead against plain FedAvg, measured in the same run.

For each node count (default 10, 50, 100) and ``--params`` float32 parameters (default 1e5),
FedAvg and ``SecAggPlus(FedAvg)`` each run ``--rounds`` rounds in which every node trains
(a trivial ClientApp that adds a small random update). Printed per case, best of
``--repeats`` runs:

- round time of plain FedAvg and of SecAgg+ (median round of the run), and the overhead;
- where the overhead goes (``inline`` backend only, where everything runs in one thread):
  time inside ``secaggplus_mod`` per node (key generation, sharing, encryption, masks),
  and the server side of a round (round time minus all time inside the ClientApps: the
  strategy, message routing, and for SecAgg+ the unmasking), without and with SecAgg+;
- the largest difference between the two results, beside the quantisation bound and the
  float32 resolution of the values (both means are float32 sums, each a few ulps off).

Each node does O(num_shares x params) work however many nodes there are, and the server
O(nodes x params + dropped x num_shares x params): the per-node overhead should stay flat
as nodes grow.

Usage: python bench/secagg.py [--nodes 10,50,100] [--params 100000] [--rounds 3]
       [--repeats 3] [--num-shares 15] [--backend inline|local]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from glade import ArrayRecord, ClientApp, Context, Message, MetricRecord, RecordDict, keys
from glade.client.app import CallNext
from glade.privacy import SecAggPlus, secaggplus_mod
from glade.server import RunEvent, ServerApp
from glade.simulation import run_simulation
from glade.strategies import FedAvg

HERE = Path(__file__).resolve().parent
TIMES = {"outer": 0.0, "inner": 0.0}


def _timed(key: str) -> Callable[[Message, Context, CallNext], Message]:
    def mod(msg: Message, context: Context, call_next: CallNext) -> Message:
        started = time.perf_counter()
        try:
            return call_next(msg, context)
        finally:
            TIMES[key] += time.perf_counter() - started

    return mod


def _train(msg: Message, context: Context) -> RecordDict:
    assert msg.content is not None
    rng = np.random.default_rng(int(context.node_config["partition-id"]))
    arrays = {
        name: a.numpy() + rng.uniform(-0.01, 0.01, a.shape).astype(np.float32)
        for name, a in msg.content[keys.ARRAYS].items()
    }
    metrics = MetricRecord({keys.NUM_EXAMPLES: 10})
    return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: metrics})


# Workers of the local backend import these by reference ("secagg:plain_app").
plain_app = ClientApp(mods=[_timed("outer")])
plain_app.train()(_train)
secure_app = ClientApp(mods=[_timed("outer"), secaggplus_mod, _timed("inner")])
secure_app.train()(_train)


def run(
    *, nodes: int, params: int, rounds: int, secure: bool, num_shares: int, backend: str
) -> tuple[list[float], ArrayRecord]:
    """Round times (s) and final arrays of one run."""
    server = ServerApp()

    @server.main()
    def main(grid: Any, context: Any) -> ArrayRecord:
        strategy: Any = FedAvg(min_available_nodes=nodes, fraction_evaluate=0.0)
        if secure:
            strategy = SecAggPlus(strategy, num_shares=num_shares, clipping_range=0.1)
        initial = ArrayRecord({"w": np.zeros(params, np.float32)})
        return strategy.start(grid, initial_arrays=initial, num_rounds=rounds).arrays

    times: list[float] = []

    def on_event(event: RunEvent) -> None:
        if event.kind == "round-finished":
            times.append(event.elapsed_s)

    app = (
        ("secagg:secure_app" if secure else "secagg:plain_app")
        if backend == "local"
        else (secure_app if secure else plain_app)
    )
    result = run_simulation(
        server,
        app,
        num_supernodes=nodes,
        backend=backend,
        app_dir=HERE,
        seed=0,
        on_event=on_event,
        raise_on_error=True,
    )
    return times, result.return_value


def case(args: argparse.Namespace, nodes: int) -> None:
    # secure -> (median round s, server-side s per round, node-side SecAgg+ s per round)
    best: dict[bool, tuple[float, float, float]] = {}
    arrays: dict[bool, ArrayRecord] = {}
    for _ in range(args.repeats):
        for secure in (False, True):
            TIMES.update(outer=0.0, inner=0.0)
            times, arrays[secure] = run(
                nodes=nodes,
                params=args.params,
                rounds=args.rounds,
                secure=secure,
                num_shares=args.num_shares,
                backend=args.backend,
            )
            median = statistics.median(times)
            server = sum(times) / len(times) - TIMES["outer"] / args.rounds
            node = (TIMES["outer"] - TIMES["inner"]) / args.rounds if secure else 0.0
            if median < best.get(secure, (float("inf"),))[0]:
                best[secure] = (median, server, node)
    overhead = best[True][0] - best[False][0]
    bound = SecAggPlus(FedAvg(), clipping_range=0.1).max_error
    plain_w = arrays[False]["w"].numpy()
    error = float(np.max(np.abs(arrays[True]["w"].numpy() - plain_w)))
    ulp = float(np.spacing(np.max(np.abs(plain_w))))
    line = (
        f"{nodes:>5} nodes x {args.params:.0e} params: FedAvg {best[False][0] * 1e3:7.1f} ms"
        f"  SecAgg+ {best[True][0] * 1e3:7.1f} ms/round  overhead {overhead * 1e3:7.1f} ms"
        f" ({overhead / nodes * 1e3:5.2f} ms/node)"
    )
    if args.backend == "inline":
        line += (
            f"  [in secaggplus_mod {best[True][2] / nodes * 1e3:5.2f} ms/node;"
            f" server side {best[False][1] * 1e3:5.1f} -> {best[True][1] * 1e3:5.1f} ms/round]"
        )
    print(line + f"  max |diff| {error:.0e} (quantisation {bound:.0e}, float32 ulp {ulp:.0e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", default="10,50,100")
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-shares", type=int, default=15)
    parser.add_argument("--backend", choices=("inline", "local"), default="inline")
    args = parser.parse_args()
    print(
        f"SecAgg+ vs FedAvg, {args.backend} backend, num_shares={args.num_shares}, "
        f"threshold 60%, 24-bit quantisation; best of {args.repeats} runs of "
        f"{args.rounds} rounds"
    )
    for nodes in (int(n) for n in args.nodes.split(",")):
        case(args, nodes)


if __name__ == "__main__":
    main()
