"""`ControlClient`: the SuperLink's Control API for users (``glade run/ls/log/stop``).

A user-facing client of the SuperLink, next to the Control servicer it talks to (the CLI
must not touch protobuf, so it goes through this class). Failures raise Glade exceptions:
an unreachable SuperLink is a :class:`~glade.errors.TransportError`, an unknown run a
:class:`~glade.errors.NotFoundError`, a bad bundle an
:class:`~glade.errors.InvalidArgumentError`.

>>> from glade.superlink.client import ControlClient
>>> with ControlClient("127.0.0.1:9093") as client:  # doctest: +SKIP
...     runs, now = client.list_runs()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from glade.bundle import Bundle
from glade.errors import NotFoundError
from glade.superlink.convert import node_from_proto, run_from_proto
from glade.superlink.state import NodeInfo, RunInfo
from glade.transport._record_codec import user_config_to_proto
from glade.transport.grpc_options import channel as open_channel
from glade.transport.object_wire import ObjectStub
from glade.transport.objects import push_objects
from glade.transport.status import error_from_rpc
from glade.transport.tls import channel_credentials
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc

__all__ = ["ControlClient", "LogStream"]


class ControlClient:
    """A connection to a SuperLink's Control API at ``address`` ("host:port").

    With ``root_certificates`` (a PEM file of the CA that signed the SuperLink's
    certificate) the connection uses TLS; without it, it is unencrypted.
    """

    def __init__(
        self,
        address: str,
        *,
        root_certificates: Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.address = address
        creds = None
        if root_certificates is not None:
            creds = channel_credentials(root_certificates=root_certificates)
        self._channel = open_channel(address, credentials=creds)
        self._stub = control_pb2_grpc.ControlStub(self._channel)  # type: ignore[no-untyped-call]
        self._objects = ObjectStub(self._channel, "glade.v1.Control")
        self._timeout = timeout_s
        self._peer = f"(SuperLink Control API at {address})"

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, peer=self._peer) from exc

    def upload_bundle(self, bundle: Bundle) -> bool:
        """Upload the bundle unless the SuperLink has it; True if it was sent."""
        try:
            sent = push_objects(self._objects, {bundle.bundle_id: bundle.data})
        except grpc.RpcError as exc:  # pragma: no cover - push_objects translates
            raise error_from_rpc(exc, peer=self._peer) from exc
        return bool(sent)

    def start_run(
        self,
        bundle_id: str,
        *,
        run_config: Mapping[str, Any],
        federation_options: Mapping[str, Any] | None = None,
    ) -> int:
        """Queue a run of an uploaded bundle; returns its run id."""
        request = cpb.StartRunRequest(bundle_id=bundle_id)
        user_config_to_proto(dict(run_config), request.run_config, where="run_config")
        user_config_to_proto(
            dict(federation_options or {}),
            request.federation_options,
            where="federation_options",
        )
        return int(self._call("StartRun", request).run_id)

    def list_runs(self) -> tuple[list[RunInfo], float]:
        """Every run the SuperLink knows (oldest first) and the SuperLink's clock."""
        response = self._call("ListRuns", cpb.ListRunsRequest())
        return [run_from_proto(r) for r in response.runs], float(response.now)

    def get_run(self, run_id: int) -> tuple[RunInfo, float]:
        """One run (NotFoundError if unknown) and the SuperLink's clock."""
        response = self._call("ListRuns", cpb.ListRunsRequest(run_id=run_id))
        if not response.runs:
            raise NotFoundError(f"unknown run id {run_id}")
        return run_from_proto(response.runs[0]), float(response.now)

    def stop_run(self, run_id: int) -> bool:
        """Stop a run; False if it had finished already."""
        return bool(self._call("StopRun", cpb.StopRunRequest(run_id=run_id)).stopped)

    def stream_logs(
        self,
        run_id: int,
        *,
        offset: int = 0,
        follow: bool = False,
        timeout_s: float | None = None,
    ) -> LogStream:
        """The run's log from byte ``offset``; with ``follow`` until the run finishes.

        ``timeout_s`` bounds the whole stream (default: none when following).
        """
        request = cpb.StreamLogsRequest(run_id=run_id, offset=offset, follow=follow)
        timeout = timeout_s if timeout_s is not None or follow else self._timeout
        return LogStream(self._stub.StreamLogs(request, timeout=timeout), self._peer)

    def list_nodes(self) -> list[NodeInfo]:
        """Every node the SuperLink knows, online or not."""
        response = self._call("ListNodes", cpb.ListNodesRequest())
        return [node_from_proto(n) for n in response.nodes]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LogStream:
    """Iterates over pieces of a run's log as (offset, text); :meth:`cancel` ends it."""

    def __init__(self, call: Any, peer: str) -> None:
        self._call = call
        self._peer = peer

    def __iter__(self) -> Iterator[tuple[int, str]]:
        try:
            for chunk in self._call:
                yield int(chunk.offset), str(chunk.text)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise error_from_rpc(exc, peer=self._peer) from exc

    def cancel(self) -> None:
        self._call.cancel()
