"""``glade new`` and the template registry."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glade import ArrayRecord
from glade.project import ProjectConfig
from glade.templates import TEMPLATES, Template, package_name_for, register, render_project

EXPECTED_FILES = {
    "README.md",
    "pyproject.toml",
    "my_app/__init__.py",
    "my_app/client_app.py",
    "my_app/server_app.py",
    "my_app/task.py",
}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_new_creates_the_numpy_project(in_tmp, glade_cli):
    result = glade_cli("new", "my-app", "--framework", "numpy")
    assert result.exit_code == 0, result.stderr
    root = in_tmp / "my-app"
    assert _files(root) == EXPECTED_FILES
    assert "glade run my-app" in result.stdout
    config = ProjectConfig.from_dir(root)
    assert config.name == "my-app"
    assert config.server_app == "my_app.server_app:app"
    assert config.client_app == "my_app.client_app:app"
    assert {"num-server-rounds", "local-epochs", "lr", "fraction-train"} <= set(config.run_config)
    assert config.default_federation == "local"
    assert config.federation("local").num_supernodes == 10
    for path in root.rglob("*"):
        if path.is_file():
            assert not re.search(r"\{\{\s*\w+\s*\}\}", path.read_text()), path


def test_new_refuses_to_overwrite_a_non_empty_folder(in_tmp, glade_cli):
    (in_tmp / "taken").mkdir()
    (in_tmp / "taken" / "keep.txt").write_text("mine")
    result = glade_cli("new", "taken", "--framework", "numpy")
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "Traceback" not in result.stderr
    assert _files(in_tmp / "taken") == {"keep.txt"}
    assert (in_tmp / "taken" / "keep.txt").read_text() == "mine"


def test_new_fills_an_existing_empty_folder(in_tmp, glade_cli):
    (in_tmp / "my-app").mkdir()
    assert glade_cli("new", "my-app", "-f", "numpy").exit_code == 0
    assert _files(in_tmp / "my-app") == EXPECTED_FILES


@pytest.mark.parametrize("name", ["1app", "bad name", "../escape", "glade", "class", "json", ""])
def test_new_rejects_unusable_names(in_tmp, glade_cli, name):
    result = glade_cli("new", name, "--framework", "numpy")
    assert result.exit_code == 2, result.stdout
    assert "invalid project name" in result.stderr
    assert list(in_tmp.iterdir()) == []


def test_new_rejects_an_unknown_framework(in_tmp, glade_cli):
    result = glade_cli("new", "my-app", "--framework", "cobol")
    assert result.exit_code == 2
    assert "unknown template 'cobol'" in result.stderr and "numpy" in result.stderr
    assert not (in_tmp / "my-app").exists()


def test_new_without_arguments_asks_with_defaults(in_tmp, glade_cli):
    result = glade_cli("new", input="\n\n")
    assert result.exit_code == 0, result.stderr
    assert "Project name [my-glade-app]" in result.stdout
    assert "numpy" in result.stdout and TEMPLATES["numpy"].description in result.stdout
    assert (in_tmp / "my-glade-app" / "my_glade_app" / "task.py").is_file()


def test_new_asks_again_after_a_bad_answer(in_tmp, glade_cli):
    result = glade_cli("new", input="bad name!\nfl-demo\nfortran\n1\n")
    assert result.exit_code == 0, result.stderr
    assert "invalid project name 'bad name!'" in result.stdout
    assert "choose one of numpy" in result.stdout
    assert _files(in_tmp / "fl-demo") == {f.replace("my_app", "fl_demo") for f in EXPECTED_FILES}


def test_new_without_input_aborts_cleanly(in_tmp, glade_cli):
    result = glade_cli("new", input="")
    assert result.exit_code == 1
    assert "Aborted" in result.stderr and "Traceback" not in result.stderr
    assert list(in_tmp.iterdir()) == []


def test_package_names():
    assert package_name_for("My-FL_App2") == "my_fl_app2"
    for bad in ("import", "numpy", "os", "x" * 65, "-x"):
        with pytest.raises(ValueError):
            package_name_for(bad)


def test_registry_rejects_duplicates_and_lists_files():
    with pytest.raises(ValueError, match="already registered"):
        register(Template(name="numpy", description="again", folder="numpy"))
    files = [rel for rel, _ in TEMPLATES["numpy"].files()]
    assert "_package_/task.py.tmpl" in files and "pyproject.toml.tmpl" in files


def test_render_removes_a_half_written_project(tmp_path, monkeypatch):
    broken = Template(name="broken", description="test", folder="numpy")
    monkeypatch.setitem(TEMPLATES, "broken", broken)

    def fail(text, values, rel):
        if rel.endswith("task.py.tmpl"):
            raise OSError("disk full")
        return text

    monkeypatch.setattr("glade.templates._fill", fail)
    with pytest.raises(OSError, match="disk full"):
        render_project("broken", project_name="half", dest=tmp_path / "half")
    assert not (tmp_path / "half").exists()


def test_rendered_template_is_lint_clean(tmp_path):
    render_project("numpy", project_name="lint-me", dest=tmp_path / "lint-me")
    ruff = [sys.executable, "-m", "ruff"]
    common = ["--isolated", "--line-length", "100", "--target-version", "py310"]
    check = subprocess.run(
        [*ruff, "check", *common, "--select", "E,F,W,I,B,UP,SIM,RUF", "."],
        cwd=tmp_path / "lint-me",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [*ruff, "format", "--check", *common, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def _import_task(root: Path, package: str):
    spec = importlib.util.spec_from_file_location(f"{package}_task", root / package / "task.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_template_task_partitions_and_learns(tmp_path):
    render_project("numpy", project_name="task-check", dest=tmp_path / "task-check")
    task = _import_task(tmp_path / "task-check", "task_check")
    parts = [task.load_data(i, 5) for i in range(5)]
    seen = [np.concatenate([p[0], p[2]]) for p in parts]
    rows = np.concatenate(seen)
    assert len(rows) == 1797  # every example in exactly one partition
    assert len(np.unique(rows, axis=0)) == len(np.unique(task._digits()[0], axis=0))
    for x_train, _, x_test, _ in parts:
        assert 0.15 < len(x_test) / (len(x_train) + len(x_test)) < 0.25
    x_train, y_train, x_test, y_test = parts[0]
    model = task.init_model(seed=0)
    _, before = task.evaluate(model, x_test, y_test)
    trained, loss = task.train(model, x_train, y_train, epochs=5, lr=0.5, batch_size=32, seed=1)
    _, after = task.evaluate(trained, x_test, y_test)
    assert after > max(0.6, before + 0.3) and np.isfinite(loss)
    assert np.array_equal(model["bias"], np.zeros(10))  # the input model is left as it was
    assert set(ArrayRecord(trained)) == {"weights", "bias"}
    with pytest.raises(ValueError, match="partition-id"):
        task.load_data(5, 5)
