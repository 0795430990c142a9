"""Regenerate the Python code of the wire protocol (``proto/glade/v1``).

Usage::

    python scripts/gen_proto.py           # rewrite src/glade/transport/v1/
    python scripts/gen_proto.py --check   # exit 1 if the committed code is stale

Runs ``grpc_tools.protoc`` with ``-I proto`` (descriptor names are ``glade/v1/<file>.proto``)
and writes ``*_pb2.py``, ``*_pb2.pyi`` and, for files that declare services, ``*_pb2_grpc.py``.
Generated imports of ``glade.v1`` are rewritten to ``glade.transport.v1``, where the code lives.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_PACKAGE = "glade/v1"
OUT_DIR = ROOT / "src" / "glade" / "transport" / "v1"
TARGET_MODULE = "glade.transport.v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

INIT_TEXT = '''"""Generated protobuf code of the ``glade.v1`` wire protocol.

Do not edit: regenerate with ``python scripts/gen_proto.py`` from ``proto/glade/v1/*.proto``.
"""
'''

_SOURCE_MODULE = PROTO_PACKAGE.replace("/", ".")
_REWRITES = (
    # from glade.v1 import message_pb2 as ...
    (
        re.compile(rf"^(\s*)from {re.escape(_SOURCE_MODULE)} import ", re.M),
        rf"\1from {TARGET_MODULE} import ",
    ),
    # import glade.v1.message_pb2 as ...
    (
        re.compile(rf"^(\s*)import {re.escape(_SOURCE_MODULE)}\.", re.M),
        rf"\1import {TARGET_MODULE}.",
    ),
    # _builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'glade.v1.message_pb2', _globals)
    (re.compile(rf"'{re.escape(_SOURCE_MODULE)}\.(\w+_pb2)'"), rf"'{TARGET_MODULE}.\1'"),
)
_HAS_SERVICE = re.compile(r"^class \w+Stub\b", re.M)


def _run_protoc(proto_root: Path, protos: list[str], out: Path) -> None:
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos} (see its messages above)")


def rewrite_imports(text: str) -> str:
    """Point generated imports of ``glade.v1`` at ``glade.transport.v1``."""
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text


def generate(out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Generate the code for every ``proto_root/glade/v1/*.proto`` into ``out_dir``.

    Stale generated files in ``out_dir`` are removed. Returns the files written.
    """
    protos = sorted(
        p.relative_to(proto_root).as_posix() for p in (proto_root / PROTO_PACKAGE).glob("*.proto")
    )
    if not protos:
        raise FileNotFoundError(f"no .proto files under {proto_root / PROTO_PACKAGE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.iterdir():
        if old.name.endswith(GENERATED_SUFFIXES):
            old.unlink()
    written = [out_dir / "__init__.py"]
    written[0].write_text(INIT_TEXT, encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        _run_protoc(proto_root, protos, Path(tmp))
        for src in sorted((Path(tmp) / PROTO_PACKAGE).iterdir()):
            text = src.read_text(encoding="utf-8")
            if src.name.endswith("_pb2_grpc.py") and not _HAS_SERVICE.search(text):
                continue  # protoc emits a grpc module for every file; keep only real services
            dst = out_dir / src.name
            dst.write_text(rewrite_imports(text), encoding="utf-8")
            written.append(dst)
    return written


def stale_files(out_dir: Path = OUT_DIR, *, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Names of files that differ between ``out_dir`` and a fresh generation (empty: current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_root=proto_root)
        names = {p.name for p in fresh.iterdir()}
        names |= {p.name for p in out_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
        return sorted(
            name
            for name in names
            if not (out_dir / name).is_file()
            or not (fresh / name).is_file()
            or not filecmp.cmp(out_dir / name, fresh / name, shallow=False)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the code is current")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated code in {OUT_DIR}: {', '.join(stale)}; run {sys.argv[0]}")
            return 1
        print("generated code is current")
        return 0
    for path in generate(OUT_DIR):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
