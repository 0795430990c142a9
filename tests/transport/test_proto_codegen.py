"""The committed protobuf code matches proto/ and the generator handles service files."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

import glade.transport.v1

ROOT = Path(__file__).resolve().parents[2]

PROBE_PROTO = """
syntax = "proto3";
package glade.v1;
import "glade/v1/message.proto";
import "google/protobuf/empty.proto";

message ZzProbeRequest { glade.v1.Message message = 1; }

service ZzProbe {
  rpc Push(ZzProbeRequest) returns (google.protobuf.Empty);
  rpc Pull(google.protobuf.Empty) returns (stream glade.v1.ObjectChunk);
}
"""


@pytest.fixture(scope="module")
def gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_current(gen_proto: ModuleType) -> None:
    committed = ROOT / "src" / "glade" / "transport" / "v1"
    assert (committed / "message_pb2.py").is_file()
    assert gen_proto.stale_files(committed) == [], "run: python scripts/gen_proto.py"


def test_stale_code_is_detected(gen_proto: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    gen_proto.generate(out)
    (out / "message_pb2.pyi").write_text("# edited\n")
    (out / "gone_pb2.py").write_text("# a proto that was deleted\n")
    assert gen_proto.stale_files(out) == ["gone_pb2.py", "message_pb2.pyi"]


def test_service_file_imports_the_shared_messages(gen_proto: ModuleType, tmp_path: Path) -> None:
    proto_root = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto_root)
    (proto_root / "glade" / "v1" / "zz_probe.proto").write_text(PROBE_PROTO)
    out = tmp_path / "out"
    gen_proto.generate(out, proto_root=proto_root)

    names = sorted(p.name for p in out.iterdir())
    assert "message_pb2_grpc.py" not in names  # no services there: no grpc module
    assert {"zz_probe_pb2.py", "zz_probe_pb2.pyi", "zz_probe_pb2_grpc.py"} <= set(names)
    for name in names:
        text = (out / name).read_text()
        assert "from glade.v1 import" not in text, name
        assert not re.search(r"'glade\.v1\.\w+_pb2'", text), name  # module names rewritten
    assert "from glade.transport.v1 import message_pb2" in (out / "zz_probe_pb2.py").read_text()
    grpc_text = (out / "zz_probe_pb2_grpc.py").read_text()
    assert "'/glade.v1.ZzProbe/Push'" in grpc_text  # the wire name of the service is kept

    # Import the generated service next to the committed package, as a later issue will.
    sys.path_importer_cache.clear()
    glade.transport.v1.__path__.append(str(out))
    try:
        probe = importlib.import_module("glade.transport.v1.zz_probe_pb2")
        grpc_probe = importlib.import_module("glade.transport.v1.zz_probe_pb2_grpc")
        from glade.transport.v1 import message_pb2

        request = probe.ZzProbeRequest(message=message_pb2.Message())
        assert request.message.DESCRIPTOR is message_pb2.Message.DESCRIPTOR
        assert probe.DESCRIPTOR.name == "glade/v1/zz_probe.proto"
        assert hasattr(grpc_probe, "ZzProbeStub") and hasattr(grpc_probe, "ZzProbeServicer")
    finally:
        glade.transport.v1.__path__.remove(str(out))
        for name in ("glade.transport.v1.zz_probe_pb2", "glade.transport.v1.zz_probe_pb2_grpc"):
            sys.modules.pop(name, None)
