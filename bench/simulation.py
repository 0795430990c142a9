"""Benchmark of the local simulation backend (prints numbers; not a test).

For each case (nodes x float32 params), FedAvg runs ``--rounds`` rounds in which every node
trains every round, with a trivial ClientApp (adds 1 to the arrays). Printed per case, the
best of ``--repeats`` runs:

- per client-round: wall time of the rounds / (nodes x rounds): everything the framework
  does (FedAvg, grid, IPC, shared memory, worker loop) plus the trivial client work; beside
  it the CPU time of the parent and of the workers per client-round (independent of other
  load on the machine), and the same run with the ``inline`` backend (no processes, no
  copies) as the same-run baseline;
- fixed cost: launch to the first round plus the last round to ``run_simulation``'s return;
- peak RSS of the whole process tree (psutil, sampled every 10 ms in a thread);
- FedAvg aggregation (``glade.strategies.aggregate.weighted_average``) in GB/s of input,
  beside ``np.sum`` over the same bytes (stacked) in this run, and the ratio.

Usage: python bench/simulation.py [--cases a,b,c] [--rounds 5] [--repeats 3] [--workers N]
       [--no-inline] [--option tune_malloc=False ...]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from glade import ArrayRecord, ClientApp, Message, MetricRecord, RecordDict, ServerApp, keys
from glade.server import RunEvent

CASES = {"a": (1000, 1_000), "b": (100, 100_000), "c": (10, 1_000_000)}
TARGET_MS = {"a": 0.5, "b": 0.8, "c": 4.0}
HERE = Path(__file__).resolve().parent

# The workers import this module by reference ("simulation:client_app" from bench/).
client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Any) -> RecordDict:
    assert msg.content is not None
    arrays = msg.content[keys.ARRAYS]
    out = ArrayRecord({name: a.numpy() + np.float32(1) for name, a in arrays.items()})
    return RecordDict({keys.ARRAYS: out, keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 1})})


server_app = ServerApp()


@server_app.main()
def server_main(grid: Any, context: Any) -> ArrayRecord:
    from glade.strategies import FedAvg

    cfg = context.run_config
    nodes, params, rounds = cfg["nodes"], cfg["params"], cfg["rounds"]
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
    )
    initial = ArrayRecord({"w": np.zeros(params, dtype=np.float32)})
    return strategy.start(grid, initial_arrays=initial, num_rounds=rounds).arrays


class ProcessTree:
    """Peak RSS of this process and its descendants (sampled in a thread), and CPU times."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0

    def cpu(self) -> tuple[float, float]:
        """CPU seconds (user + system) of this process, and of its children alive now."""
        import psutil

        def total(p: Any) -> float:
            t = p.cpu_times()
            return float(t.user + t.system)

        children = 0.0
        for child in self._me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children += total(child)
        return time.process_time(), children

    def _run(self) -> None:
        import psutil

        procs, refreshed = [self._me], 0.0
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.1:  # listing children scans /proc: not often
                procs, refreshed = [self._me, *self._me.children(recursive=True)], time.monotonic()
            rss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak = max(self.peak, rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> ProcessTree:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_case(
    nodes: int, params: int, rounds: int, backend: str, options: dict[str, Any] | None
) -> dict:
    from glade.simulation import run_simulation

    marks: dict[str, Any] = {}

    with ProcessTree() as tree:

        def on_event(event: RunEvent) -> None:
            if event.kind == "round-started" and event.server_round == 1:
                marks["first"], marks["cpu0"] = time.perf_counter(), tree.cpu()
            if event.kind == "round-finished" and event.server_round == rounds:
                marks["last"], marks["cpu1"] = time.perf_counter(), tree.cpu()

        started = time.perf_counter()
        result = run_simulation(
            server_app,
            "simulation:client_app",
            num_supernodes=nodes,
            backend=backend,
            backend_config=options if backend == "local" else None,
            run_config={"nodes": nodes, "params": params, "rounds": rounds},
            app_dir=HERE,
            on_event=on_event,
            raise_on_error=True,
        )
        ended = time.perf_counter()
    assert result.status == "completed", result.reason
    final = result.return_value["w"].numpy()
    assert np.allclose(final, rounds, rtol=1e-5), "wrong aggregate"
    client_rounds = nodes * rounds
    (main0, workers0), (main1, workers1) = marks["cpu0"], marks["cpu1"]
    return {
        "wall_ms": (marks["last"] - marks["first"]) / client_rounds * 1e3,
        "main_cpu_ms": (main1 - main0) / client_rounds * 1e3,
        "workers_cpu_ms": (workers1 - workers0) / client_rounds * 1e3,
        "fixed_s": (marks["first"] - started) + (ended - marks["last"]),
        "peak_rss_mb": tree.peak / 2**20,
    }


def best(runs: list[dict]) -> dict:
    return {key: min(run[key] for run in runs) for key in runs[0]}


def aggregation(nodes: int, params: int, repeats: int = 5) -> tuple[float, float]:
    """GB/s of weighted_average (FedAvg's math) and of np.sum over the same bytes."""
    from glade.strategies.aggregate import weighted_average

    rng = np.random.default_rng(0)
    stacked = rng.standard_normal((nodes, params), dtype=np.float32)
    replies = [([row], 1.0) for row in stacked]

    def fastest(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    fedavg = fastest(lambda: weighted_average(replies))
    numpy = fastest(lambda: np.sum(stacked, axis=0))
    return stacked.nbytes / fedavg / 1e9, stacked.nbytes / numpy / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", default="a,b,c")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-inline", action="store_true")
    parser.add_argument(
        "--option", action="append", default=[], help="LocalBackend option NAME=PYTHON_VALUE"
    )
    args = parser.parse_args()
    options: dict[str, Any] = {}
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = ast.literal_eval(value)
    if args.workers:
        options["num_workers"] = args.workers
    for name in args.cases.split(","):
        nodes, params = CASES[name]
        runs = [run_case(nodes, params, args.rounds, "local", options) for _ in range(args.repeats)]
        local = best(runs)
        print(
            f"({name}) {nodes} nodes x {params:.0e} float32, {args.rounds} rounds, local "
            f"(best of {args.repeats}): {local['wall_ms']:.3f} ms per client-round "
            f"(target <= {TARGET_MS[name]}; CPU: parent {local['main_cpu_ms']:.3f} ms, "
            f"workers {local['workers_cpu_ms']:.3f} ms); fixed cost {local['fixed_s']:.3f} s "
            f"(<= 1); peak RSS {local['peak_rss_mb']:.0f} MB (<= 500)"
        )
        if not args.no_inline:
            inline = best([run_case(nodes, params, args.rounds, "inline", None)])
            print(
                f"    inline (same run, in-process): {inline['wall_ms']:.3f} ms per "
                f"client-round, peak RSS {inline['peak_rss_mb']:.0f} MB"
            )
        fedavg, numpy = aggregation(nodes, params)
        print(
            f"    FedAvg aggregation {fedavg:.2f} GB/s vs np.sum {numpy:.2f} GB/s "
            f"over the same {nodes * params * 4 / 1e6:.0f} MB (ratio {fedavg / numpy:.2f})"
        )


if __name__ == "__main__":
    main()
