"""The Control API servicer: users upload bundles, start, list and stop runs, read logs;
admins manage users, SuperNode keys and read the audit log.

StartRun refers to a bundle uploaded before (PushObject/HasObjects); an unknown bundle is
NOT_FOUND, a bad one INVALID_ARGUMENT with the reason. StreamLogs sends the log from an
offset and, with ``follow``, keeps streaming until the run finishes.

Who may call what is :data:`CONTROL_RULES`, applied by
:class:`~glade.superlink.access.AccessInterceptor` before any handler runs. Handlers only
check what depends on the request: a user sees, follows and stops its own runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc

from glade.errors import AccessDeniedError, InvalidArgumentError, NotFoundError
from glade.keypairs import PublicKey
from glade.superlink.access import PUBLIC, Rule, current_call
from glade.superlink.accounts import Accounts, Caller, Role, UserSummary
from glade.superlink.bundles import read_app_bundle
from glade.superlink.convert import (
    audit_to_proto,
    node_key_to_proto,
    node_to_proto,
    run_to_proto,
    user_config,
    user_to_proto,
)
from glade.superlink.delivery import Delivery
from glade.superlink.notify import Notifier
from glade.superlink.object_store import check_object_id
from glade.superlink.rpc import ObjectRpcs, check_id
from glade.superlink.runs import RunManager, log_topic
from glade.superlink.state import NodeKey, RunInfo, State
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import control_pb2_grpc, run_pb2
from glade.transport.v1 import message_pb2 as pb

__all__ = ["CONTROL_RULES", "ControlServicer"]

_USER = Role.USER
_ADMIN = Role.ADMIN
CONTROL_RULES: dict[str, Rule] = {
    "Login": Rule(PUBLIC, "login", changes=True),
    "Logout": Rule(_USER, "logout", changes=True),
    "WhoAmI": Rule(_USER, "whoami"),
    "PushObject": Rule(_USER, "bundle.upload"),
    "HasObjects": Rule(_USER, "bundle.upload"),
    "StartRun": Rule(_USER, "run.start", changes=True),
    "ListRuns": Rule(_USER, "run.list"),
    "StopRun": Rule(_USER, "run.stop", changes=True),
    "SetPassword": Rule(_USER, "user.password", changes=True),
    "StreamLogs": Rule(_USER, "run.logs"),
    "ListNodes": Rule(_USER, "node.list"),
    "AddUser": Rule(_ADMIN, "user.add", changes=True),
    "ListUsers": Rule(_ADMIN, "user.list"),
    "RemoveUser": Rule(_ADMIN, "user.remove", changes=True),
    "SetUserRole": Rule(_ADMIN, "user.role", changes=True),
    "AddNodeKey": Rule(_ADMIN, "node.add", changes=True),
    "ListNodeKeys": Rule(_ADMIN, "node.keys"),
    "RemoveNodeKey": Rule(_ADMIN, "node.remove", changes=True),
    "ListAudit": Rule(_ADMIN, "audit.list"),
}
"""Control method -> the role it needs and its audit action (see glade.superlink.access)."""

_MAX_AUDIT_LIMIT = 10_000


def _uploader(context: grpc.ServicerContext) -> tuple[str, str]:
    """Who pins uploaded bundles: the user's connection."""
    return ("control", context.peer())


_LOG_PIECE = 256 * 1024
_FOLLOW_RECHECK_S = 1.0


class ControlServicer(control_pb2_grpc.ControlServicer):
    """Implements ``glade.v1.Control`` (see the module docstring)."""

    def __init__(
        self,
        *,
        state: State,
        runs: RunManager,
        objects: ObjectRpcs,
        notifier: Notifier,
        accounts: Accounts,
        delivery: Delivery | None = None,
        user_auth: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._runs = runs
        self._objects = objects
        self._notifier = notifier
        self._accounts = accounts
        self._delivery = delivery
        self._user_auth = user_auth
        self._clock = clock

    def _own_run(self, run_id: int, caller: Caller, verb: str) -> RunInfo:
        """The run, if the caller may ``verb`` it (NotFoundError, AccessDeniedError)."""
        run = self._state.get_run(check_id(run_id, "run id"))
        if run is None:
            raise NotFoundError(f"unknown run id {run_id}")
        if not caller.may_access(run.owner):
            raise AccessDeniedError(
                f"run {run_id} belongs to another user: user {caller.name!r} can {verb} only "
                "its own runs (an admin can see all runs)"
            )
        return run

    def PushObject(
        self, request_iterator: Iterator[pb.ObjectChunk], context: grpc.ServicerContext
    ) -> run_pb2.PushObjectResponse:
        return self._objects.push(request_iterator, _uploader(context))

    def HasObjects(
        self, request: run_pb2.HasObjectsRequest, context: grpc.ServicerContext
    ) -> run_pb2.HasObjectsResponse:
        return self._objects.has(request, _uploader(context))

    def StartRun(
        self, request: cpb.StartRunRequest, context: grpc.ServicerContext
    ) -> cpb.StartRunResponse:
        bundle_id = check_object_id(request.bundle_id)
        store = self._objects.store
        if not store.has(bundle_id):
            raise NotFoundError(
                f"unknown bundle {bundle_id}: upload it first (HasObjects + PushObject)"
            )
        run_config = user_config(request.run_config, where="run_config")
        options = user_config(request.federation_options, where="federation_options")
        bundle = read_app_bundle(
            store.path(bundle_id), bundle_id=bundle_id, policy=self._runs.bundle_policy
        )
        call = current_call()
        run_id = self._runs.submit(
            bundle, run_config=run_config, federation_options=options, owner=call.caller.name
        )
        call.target = str(run_id)
        call.detail = f"app {bundle.publisher}/{bundle.name} {bundle.version}"
        self._objects.garbage.release(_uploader(context))  # the run refers to the bundle now
        return cpb.StartRunResponse(run_id=run_id)

    def ListRuns(self, request: cpb.ListRunsRequest, context: object) -> cpb.ListRunsResponse:
        call = current_call()
        caller = call.caller
        if request.run_id:
            call.target = str(request.run_id)
            runs = [self._own_run(request.run_id, caller, "see")]
        else:
            runs = [r for r in self._state.list_runs() if caller.may_access(r.owner)]
        return cpb.ListRunsResponse(runs=[run_to_proto(r) for r in runs], now=self._clock())

    def StopRun(self, request: cpb.StopRunRequest, context: object) -> cpb.StopRunResponse:
        call = current_call()
        call.target = str(request.run_id)
        run = self._own_run(request.run_id, call.caller, "stop")
        stopped = self._runs.stop(run.run_id)
        call.detail = "" if stopped else "the run had finished already"
        return cpb.StopRunResponse(stopped=stopped)

    def StreamLogs(
        self, request: cpb.StreamLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[run_pb2.LogChunk]:
        call = current_call()
        call.target = str(request.run_id)
        run = self._own_run(request.run_id, call.caller, "follow")
        return self._stream_logs(run.run_id, request.offset, request.follow, context)

    def _stream_logs(
        self, run_id: int, offset: int, follow: bool, context: grpc.ServicerContext
    ) -> Iterator[run_pb2.LogChunk]:
        topic = log_topic(run_id)
        while True:
            version = self._notifier.version(topic)
            run = self._state.get_run(run_id)
            finished = run is None or run.finished
            text, end = self._state.read_log(run_id, offset=offset, limit=_LOG_PIECE)
            if end > offset:
                yield run_pb2.LogChunk(run_id=run_id, offset=offset, text=text)
                offset = end
                continue
            if finished or not follow or self._notifier.closed or not context.is_active():
                return
            self._notifier.wait(topic, version, timeout=_FOLLOW_RECHECK_S)

    def ListNodes(self, request: cpb.ListNodesRequest, context: object) -> cpb.ListNodesResponse:
        nodes = [node_to_proto(n) for n in self._state.list_nodes()]
        return cpb.ListNodesResponse(nodes=nodes, now=self._clock())

    # -- accounts --------------------------------------------------------------------------
    def Login(self, request: cpb.LoginRequest, context: object) -> cpb.LoginResponse:
        call = current_call()
        call.actor = request.username[:64] or ("api-key" if request.api_key else "anonymous")
        call.detail = f"{'API key' if request.api_key else 'password'} from {call.peer}"
        session = self._accounts.login(
            username=request.username,
            password=request.password,
            api_key=request.api_key,
            peer=call.peer,
        )
        call.actor = session.user
        return cpb.LoginResponse(
            token=session.token, expires_at=session.expires_at, user=session.user, role=session.role
        )

    def Logout(self, request: cpb.LogoutRequest, context: object) -> cpb.LogoutResponse:
        self._accounts.logout(current_call().caller)
        return cpb.LogoutResponse()

    def WhoAmI(self, request: cpb.WhoAmIRequest, context: object) -> cpb.WhoAmIResponse:
        caller = current_call().caller
        return cpb.WhoAmIResponse(
            user=caller.name,
            role=caller.role,
            expires_at=caller.expires_at,
            user_auth=self._user_auth,
        )

    def AddUser(self, request: cpb.AddUserRequest, context: object) -> cpb.AddUserResponse:
        call = current_call()
        call.target = request.name[:64]
        call.detail = f"role {request.role}"
        user, api_key = self._accounts.create_user(
            request.name, request.role, password=request.password, api_key=request.api_key
        )
        return cpb.AddUserResponse(user=user_to_proto(UserSummary.of(user)), api_key=api_key)

    def ListUsers(self, request: cpb.ListUsersRequest, context: object) -> cpb.ListUsersResponse:
        users = [user_to_proto(UserSummary.of(u)) for u in self._state.list_users()]
        return cpb.ListUsersResponse(users=users)

    def RemoveUser(self, request: cpb.RemoveUserRequest, context: object) -> cpb.RemoveUserResponse:
        current_call().target = request.name[:64]
        user = self._accounts.remove_user(request.name)
        return cpb.RemoveUserResponse(user=user_to_proto(UserSummary.of(user)))

    def SetUserRole(
        self, request: cpb.SetUserRoleRequest, context: object
    ) -> cpb.SetUserRoleResponse:
        call = current_call()
        call.target = request.name[:64]
        call.detail = f"role {request.role[:16]}"
        user = self._accounts.set_role(request.name, request.role)
        return cpb.SetUserRoleResponse(user=user_to_proto(UserSummary.of(user)))

    def SetPassword(
        self, request: cpb.SetPasswordRequest, context: object
    ) -> cpb.SetPasswordResponse:
        call = current_call()
        caller = call.caller
        name = request.name or caller.name
        call.target = name[:64]
        own = name == caller.name
        if not own and not caller.is_admin:
            raise AccessDeniedError(
                f"only an admin may set the password of another user ({name!r})"
            )
        if not name:
            raise InvalidArgumentError("name the user whose password to set")
        old = request.old_password if own and caller.authenticated else None
        ended = self._accounts.set_password(
            name, request.new_password, old_password=old, keep=caller.token_hash, peer=call.peer
        )
        return cpb.SetPasswordResponse(logins_ended=ended)

    # -- SuperNode keys --------------------------------------------------------------------
    def AddNodeKey(self, request: cpb.AddNodeKeyRequest, context: object) -> cpb.AddNodeKeyResponse:
        call = current_call()
        call.target = request.name[:64]
        name = _node_key_name(request.name)
        if len(request.public_key) != 32:
            raise InvalidArgumentError(
                f"a node public key has 32 bytes (Ed25519), got {len(request.public_key)}"
            )
        key = NodeKey(
            public_key=request.public_key,
            name=name,
            added_at=self._clock(),
            added_by=call.caller.actor,
        )
        call.detail = PublicKey(key.public_key).fingerprint
        self._state.add_node_key(key)
        return cpb.AddNodeKeyResponse(key=node_key_to_proto(key))

    def ListNodeKeys(
        self, request: cpb.ListNodeKeysRequest, context: object
    ) -> cpb.ListNodeKeysResponse:
        keys = [node_key_to_proto(k) for k in self._state.list_node_keys()]
        return cpb.ListNodeKeysResponse(keys=keys)

    def RemoveNodeKey(
        self, request: cpb.RemoveNodeKeyRequest, context: object
    ) -> cpb.RemoveNodeKeyResponse:
        call = current_call()
        call.target = request.name[:64]
        key = self._state.remove_node_key(request.name)
        if key is None:
            raise NotFoundError(f"no node key named {request.name!r} (see 'glade node ls')")
        call.detail = PublicKey(key.public_key).fingerprint
        removed = False
        if key.node_id and self._state.get_node(key.node_id) is not None:
            if self._delivery is not None:
                self._delivery.node_unavailable(
                    key.node_id, f"its key {key.name!r} was removed from the allow-list"
                )
            removed = self._state.remove_node(key.node_id)
            call.detail += f"; node {key.node_id} removed"
        return cpb.RemoveNodeKeyResponse(key=node_key_to_proto(key), node_removed=removed)

    # -- audit log -------------------------------------------------------------------------
    def ListAudit(self, request: cpb.ListAuditRequest, context: object) -> cpb.ListAuditResponse:
        limit = min(request.limit or 100, _MAX_AUDIT_LIMIT)
        entries = self._state.list_audit(limit=limit, after_id=request.after_id)
        return cpb.ListAuditResponse(entries=[audit_to_proto(e) for e in entries])


def _node_key_name(name: str) -> str:
    if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
        raise InvalidArgumentError(
            f"bad node name {name[:80]!r}: give 1 to 64 printable characters (--name)"
        )
    return name
