"""`ControlClient`: the SuperLink's Control API for users (``glade run/ls/log/stop``,
``glade login``, and the admin commands ``glade user/node/audit``).

A user-facing client of the SuperLink, next to the Control servicer it talks to (the CLI
must not touch protobuf, so it goes through this class). Failures raise Glade exceptions:
an unreachable SuperLink is a :class:`~glade.errors.TransportError`, an unknown run a
:class:`~glade.errors.NotFoundError`, a bad bundle an
:class:`~glade.errors.InvalidArgumentError`, a missing or expired login an
:class:`~glade.errors.AuthenticationError`, a call the user may not make an
:class:`~glade.errors.AccessDeniedError`. With ``token`` (from :meth:`ControlClient.login`)
every call carries the gRPC metadata ``authorization: Bearer <token>``.

>>> from glade.superlink.client import ControlClient
>>> with ControlClient("127.0.0.1:9093") as client:  # doctest: +SKIP
...     runs, now = client.list_runs()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from glade.bundle import Bundle
from glade.errors import NotFoundError
from glade.superlink.accounts import Session, UserSummary
from glade.superlink.convert import (
    audit_from_proto,
    node_from_proto,
    node_key_from_proto,
    run_from_proto,
    user_from_proto,
)
from glade.superlink.state import AuditEntry, NodeInfo, NodeKey, RunInfo
from glade.transport._record_codec import user_config_to_proto
from glade.transport.grpc_options import channel as open_channel
from glade.transport.object_wire import ObjectStub
from glade.transport.objects import push_objects
from glade.transport.status import error_from_rpc
from glade.transport.tls import channel_credentials
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc

__all__ = ["ControlClient", "Identity", "LogStream"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who the SuperLink takes the caller for (``glade whoami``)."""

    user: str
    role: str
    expires_at: float
    user_auth: bool
    """False: the SuperLink runs without user authentication (everyone acts as admin)."""


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
        token: str = "",
    ) -> None:
        self.address = address
        self.token = token
        """The bearer token sent with every call (``""``: none)."""
        creds = None
        if root_certificates is not None:
            creds = channel_credentials(root_certificates=root_certificates)
        self._raw_channel = open_channel(address, credentials=creds)
        self._channel = grpc.intercept_channel(self._raw_channel, _Bearer(lambda: self.token))
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

    # -- accounts --------------------------------------------------------------------------
    def login(self, *, username: str = "", password: str = "", api_key: str = "") -> Session:
        """Exchange a user name + password, or an API key, for a token (kept in :attr:`token`)."""
        request = cpb.LoginRequest(username=username, password=password, api_key=api_key)
        response = self._call("Login", request)
        self.token = str(response.token)
        return Session(
            token=self.token,
            user=response.user,
            role=response.role,
            expires_at=float(response.expires_at),
        )

    def logout(self) -> None:
        """End the session of :attr:`token` on the SuperLink."""
        self._call("Logout", cpb.LogoutRequest())

    def whoami(self) -> Identity:
        response = self._call("WhoAmI", cpb.WhoAmIRequest())
        return Identity(
            user=response.user,
            role=response.role,
            expires_at=float(response.expires_at),
            user_auth=bool(response.user_auth),
        )

    def add_user(
        self, name: str, *, role: str, password: str = "", api_key: bool = False
    ) -> tuple[UserSummary, str]:
        """Create a user (admin only); returns it and its API key (``""`` unless asked for)."""
        request = cpb.AddUserRequest(name=name, role=role, password=password, api_key=api_key)
        response = self._call("AddUser", request)
        return user_from_proto(response.user), str(response.api_key)

    def set_password(self, new_password: str, *, name: str = "", old_password: str = "") -> int:
        """Set a password (``name`` empty: your own, with ``old_password``); returns how many
        other logins of the user ended."""
        request = cpb.SetPasswordRequest(
            name=name, old_password=old_password, new_password=new_password
        )
        return int(self._call("SetPassword", request).logins_ended)

    def list_users(self) -> list[UserSummary]:
        response = self._call("ListUsers", cpb.ListUsersRequest())
        return [user_from_proto(u) for u in response.users]

    def remove_user(self, name: str) -> UserSummary:
        response = self._call("RemoveUser", cpb.RemoveUserRequest(name=name))
        return user_from_proto(response.user)

    def set_user_role(self, name: str, role: str) -> UserSummary:
        response = self._call("SetUserRole", cpb.SetUserRoleRequest(name=name, role=role))
        return user_from_proto(response.user)

    # -- SuperNode keys and the audit log --------------------------------------------------
    def add_node_key(self, public_key: bytes, *, name: str) -> NodeKey:
        """Allow a SuperNode's public key (32 raw Ed25519 bytes) under ``name``."""
        request = cpb.AddNodeKeyRequest(public_key=public_key, name=name)
        return node_key_from_proto(self._call("AddNodeKey", request).key)

    def list_node_keys(self) -> list[NodeKey]:
        response = self._call("ListNodeKeys", cpb.ListNodeKeysRequest())
        return [node_key_from_proto(k) for k in response.keys]

    def remove_node_key(self, name: str) -> tuple[NodeKey, bool]:
        """Disallow a key; returns it and whether its node was removed from the federation."""
        response = self._call("RemoveNodeKey", cpb.RemoveNodeKeyRequest(name=name))
        return node_key_from_proto(response.key), bool(response.node_removed)

    def list_audit(self, *, limit: int = 100, after_id: int = 0) -> list[AuditEntry]:
        """The newest ``limit`` audit entries (after ``after_id``), oldest first."""
        response = self._call("ListAudit", cpb.ListAuditRequest(limit=limit, after_id=after_id))
        return [audit_from_proto(e) for e in response.entries]

    def close(self) -> None:
        self._raw_channel.close()

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


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds ``authorization: Bearer <token>`` to every call while there is a token."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        token = self._token()
        if not token:
            return details
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
        return _CallDetails(details, metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)
