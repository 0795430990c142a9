"""Keep the import direction of STYLE.md (core <- client/server <- strategies ...; no cli)."""

import ast
from pathlib import Path

import glade

SRC = Path(glade.__file__).parent
CORE = {
    "errors",
    "array",
    "records",
    "message",
    "context",
    "keys",
    "keypairs",
    "typing",
    "project",
    "files",
}

# package -> glade subpackages it must never import
FORBIDDEN = {
    "core": {
        "client",
        "server",
        "strategies",
        "simulation",
        "transport",
        "cli",
        "superlink",
        "supernode",
        "privacy",
        "datasets",
    },
    "client": {"server", "strategies", "simulation", "transport", "cli", "superlink", "supernode"},
    "server": {"client", "strategies", "simulation", "transport", "cli", "superlink", "supernode"},
    "strategies": {"client", "simulation", "transport", "cli", "superlink", "supernode"},
    "simulation": {"transport", "cli", "superlink", "supernode"},
    "transport": {"server", "client", "strategies", "simulation", "cli"},
    "datasets": {"server", "client", "strategies", "simulation", "transport", "cli"},
    # the node agent talks to the SuperLink over the wire only
    "supernode": {"server", "strategies", "cli", "superlink"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return "core" if rel.stem in CORE else rel.stem
    return rel.parts[0]


def test_import_direction():
    problems = []
    for path in SRC.rglob("*.py"):
        if "templates" in path.parts or "_pb2" in path.name:
            continue
        pkg = _package_of(path)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "glade" or len(parts) < 2:
                continue
            target = parts[1]
            if target == "cli" and pkg != "cli":
                problems.append(f"{path.relative_to(SRC)} imports {name} (nothing imports cli)")
            if target in FORBIDDEN.get(pkg, set()):
                problems.append(f"{path.relative_to(SRC)} ({pkg}) imports {name}")
    assert not problems, "\n".join(problems)


def test_only_transport_touches_protobuf():
    allowed = {"transport", "superlink", "supernode"}
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if _package_of(p) not in allowed
        and "templates" not in p.parts
        and any(n.startswith("google.protobuf") or n.endswith("_pb2") for n in _imports(p))
    ]
    assert not offenders
