"""How ``glade run`` shows a run: live progress on stderr, a summary table at the end."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from glade import keys
from glade.cli.console import JsonOutput, stdout_console
from glade.errors import ConfigError
from glade.server import History, RunEvent

__all__ = [
    "RunProgress",
    "check_plot",
    "first_line",
    "format_metrics",
    "format_value",
    "save_plot",
    "show_result",
    "summary_table",
]

_STAGE_ORDER = ("train", "evaluate", "centralized")


def format_value(value: Any) -> str:
    """A metric value, short: ``0.9344``, ``12``, ``[3 values]``."""
    if isinstance(value, bool) or not isinstance(value, int | float | list):
        return str(value)
    if isinstance(value, list):
        return f"[{len(value)} values]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``accuracy 0.9344 · loss 0.2711`` (``num-examples`` left out)."""
    return " · ".join(
        f"{name} {format_value(value)}"
        for name, value in sorted(metrics.items())
        if name != keys.NUM_EXAMPLES
    )


def _stages(names: set[str]) -> list[str]:
    return [s for s in _STAGE_ORDER if s in names] + sorted(names - set(_STAGE_ORDER))


class RunProgress:
    """Follows :class:`~glade.RunEvent`s: a live line on a terminal, a line per round elsewhere.

    Use as a context manager and pass :meth:`on_event` to ``run_simulation(on_event=...)``.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._started = time.monotonic()
        self._num_rounds = 0
        self._round = 0
        self._done = 0
        self._latest: dict[str, Mapping[str, Any]] = {}
        self._failures: dict[str, int] = {}
        self._live: Live | None = None
        self.history = History()

    def __enter__(self) -> RunProgress:
        self._started = time.monotonic()
        if self._console.is_terminal:
            self._live = Live(self, console=self._console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    @property
    def rounds_done(self) -> int:
        return self._done

    def on_event(self, event: RunEvent) -> None:
        """Record ``event``; off a terminal, print a line when a round finishes."""
        self.history.add(event)
        if event.kind == "round-started":
            self._round = event.server_round
            self._num_rounds = event.num_rounds or self._num_rounds
        elif event.kind == "stage-finished":
            self._latest = {**self._latest, event.stage: dict(event.metrics)}
            self._failures = {**self._failures, event.stage: event.num_failures}
        elif event.kind == "round-finished":
            self._done = max(self._done, event.server_round)
            if self._live is None:
                self._console.print(self._status_line(), highlight=False)

    def _status_line(self) -> Text:
        total = f"/{self._num_rounds}" if self._num_rounds else ""
        line = Text(f"round {self._round}{total}", style="bold")
        line.append(f"  {time.monotonic() - self._started:.1f} s")
        for stage in _stages(set(self._latest)):
            shown = format_metrics(self._latest[stage])
            if shown:
                line.append(f"  {stage}: ", style="cyan")
                line.append(shown)
        failures = sum(self._failures.values())
        if failures:
            line.append(f"  failures: {failures}", style="yellow")
        return line

    def __rich__(self) -> RenderableType:
        if not self._round:
            return Text(f"starting...  {time.monotonic() - self._started:.1f} s")
        bar = ProgressBar(total=self._num_rounds or None, completed=self._done, width=30)
        view = Table.grid()
        view.add_row(bar)
        view.add_row(self._status_line())
        return view


def summary_table(history: History, *, title: str = "") -> Table:
    """One row per round, one column per (stage, metric), and the failed replies."""
    stages = _stages(set(history.metrics))
    columns = [
        (stage, name)
        for stage in stages
        for name in sorted({n for m in history.metrics[stage].values() for n in m})
        if name != keys.NUM_EXAMPLES
    ]
    table = Table(title=title or None, title_justify="left")
    table.add_column("round", justify="right")
    for stage, name in columns:
        table.add_column(f"{stage}\n{name}", justify="right")
    table.add_column("failures", justify="right")
    rounds = sorted({r for stage in stages for r in history.metrics[stage]})
    for rnd in rounds:
        cells = [str(rnd)]
        for stage, name in columns:
            value = history.metrics[stage].get(rnd, {}).get(name)
            cells.append("" if value is None else format_value(value))
        failed = sum(counts.get(rnd, 0) for counts in history.failures.values())
        cells.append(str(failed))
        table.add_row(*cells)
    return table


def show_result(
    document: Mapping[str, Any],
    history: History,
    *,
    took: str,
    json_out: JsonOutput | None,
    err: Console,
) -> None:
    """A finished run: its JSON document (``--format json``) or its metric table on stdout,
    and, if it completed, the line that says so."""
    run_id = document["run_id"]
    if json_out is not None:
        json_out.emit(dict(document))
    elif history.metrics:
        stdout_console().print(summary_table(history, title=f"Run {run_id}"))
    if document["status"] == "completed":
        final = format_metrics(history.last("evaluate"))
        line = f"Run {run_id} completed in {took}" + (f"; evaluate: {final}" if final else "")
        (err if json_out is not None else stdout_console()).print(line, highlight=False)


def first_line(reason: str) -> str:
    """The first line of a run's failure reason (for a one-line summary)."""
    return (reason.strip().splitlines() or ["no reason given"])[0]


def check_plot(path: Path | None) -> None:
    """Before a run with ``--plot PATH``: fail now if the plot could not be made later."""
    if path is not None and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'glade[plot]'")


def save_plot(history: History, path: Path, *, run_id: int | None, err: Console) -> None:
    """After the run: the metrics per round as a PNG at ``path``, said on stderr."""
    from glade.strategies.export import plot_history

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = plot_history(history, path, title=f"Run {run_id}")
    except OSError as exc:
        raise ConfigError(f"cannot save the metric plot to {path}: {exc}") from None
    err.print(f"Saved the metric plot to {saved}", highlight=False, soft_wrap=True)
