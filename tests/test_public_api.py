import ast
from pathlib import Path

import glade


def test_all_matches_what_is_exported():
    tree = ast.parse(Path(glade.__file__).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            imported |= {a.asname or a.name for a in node.names}
    imported.add("__version__")
    assert set(glade.__all__) == imported
    assert glade.__all__ == sorted(glade.__all__, key=str)
    for name in glade.__all__:
        assert hasattr(glade, name), name


def test_importing_glade_does_no_heavy_work():
    import subprocess
    import sys

    code = (
        "import sys, glade; "
        "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'grpc', 'sklearn', 'rich', 'typer') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
