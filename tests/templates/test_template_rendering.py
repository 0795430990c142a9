"""Every ``glade new`` template renders into a complete, lint-clean, configured project."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glade.cli.main import app
from glade.project import ProjectConfig, tomllib
from glade.templates import TEMPLATES, render_project

FRAMEWORKS = ["numpy", "pytorch", "tensorflow", "jax", "sklearn", "xgboost", "huggingface", "llm"]
# The import name of each template's framework, which its pyproject must depend on.
FRAMEWORK_DEPENDENCY = {
    "numpy": "numpy",
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "huggingface": "transformers",
    "llm": "peft",
}
APP_FILES = {"__init__.py", "client_app.py", "server_app.py", "task.py"}
README_SECTIONS = ["## Install", "## Run it in simulation", "## Run it on a deployment"]
README_SECTIONS += ["## Use your own data"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rendered")
    projects = {}
    for name in FRAMEWORKS:
        projects[name] = root / f"my-{name}-app"
        render_project(name, project_name=f"my-{name}-app", dest=projects[name])
    return projects


def test_every_framework_is_registered_in_order_with_a_description():
    assert list(TEMPLATES) == FRAMEWORKS  # numpy, the default, first
    for template in TEMPLATES.values():
        assert template.description and "\n" not in template.description
        assert len(template.description) <= 90, template.description
    assert len({t.description for t in TEMPLATES.values()}) == len(TEMPLATES)


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_template_renders_a_complete_project(rendered, name):
    root = rendered[name]
    package = root / f"my_{name}_app"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"README.md", "pyproject.toml"} | {f"my_{name}_app/{f}" for f in APP_FILES} <= files
    assert all(f.endswith((".py", ".md", ".toml")) for f in files), files
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"\{\{\s*\w+\s*\}\}", text), path
            if path.suffix == ".py":
                compile(text, str(path), "exec")  # raises SyntaxError on a broken template
    # The apps import the project's own package (the placeholder became its name).
    assert f"from my_{name}_app.task import" in (package / "client_app.py").read_text()
    assert "app = ServerApp()" in (package / "server_app.py").read_text()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_template_pyproject_configures_the_apps_and_federations(rendered, name):
    root = rendered[name]
    config = ProjectConfig.from_dir(root)
    assert config.name == f"my-{name}-app"
    assert config.server_app == f"my_{name}_app.server_app:app"
    assert config.client_app == f"my_{name}_app.client_app:app"
    assert isinstance(config.run_config["num-server-rounds"], int)
    assert 0 < config.run_config["fraction-train"] <= 1
    assert config.default_federation == "local"
    local = config.federation("local")
    assert local.is_simulation and local.num_supernodes >= 2
    deployment = config.federation("deployment")
    assert not deployment.is_simulation
    assert deployment.options == {"address": "127.0.0.1:9093", "insecure": True}
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=\[; ]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert {"glade", FRAMEWORK_DEPENDENCY[name]} <= names
    assert any(dep.startswith("glade>=") for dep in project["dependencies"])


def _string_keys(source: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, source))


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_template_apps_read_only_keys_that_exist(rendered, name):
    """Config keys the apps read are in the run config or sent by the server each round."""
    root = rendered[name]
    package = root / f"my_{name}_app"
    run_config = set(ProjectConfig.from_dir(root).run_config)
    server = (package / "server_app.py").read_text(encoding="utf-8")
    client = (package / "client_app.py").read_text(encoding="utf-8")
    from_run_config = _string_keys(server + client, r'run_config\["([a-z0-9-]+)"\]')
    assert from_run_config <= run_config, from_run_config - run_config
    sent = _train_config_keys(server)
    assert sent <= run_config  # every instruction is configurable
    read = _string_keys(server + client, r'(?<![\w])config\["([a-z0-9-]+)"\]')
    known = run_config | sent | {"server-round"}
    assert read <= known, read - known
    assert {"num-server-rounds", "fraction-train"} <= read | from_run_config


def _train_config_keys(server: str) -> set[str]:
    """String keys of the ``train_config={...}`` literal passed to ``strategy.start``."""
    tree = ast.parse(server)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "train_config":
            assert isinstance(node.value, ast.Dict)
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise AssertionError("server_app.py passes no train_config")


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_template_readme_explains_runs_and_own_data(rendered, name):
    readme = (rendered[name] / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# my-{name}-app\n")
    positions = [readme.index(section) for section in README_SECTIONS]
    assert positions == sorted(positions)
    for command in ("pip install -e .", "glade run .", "glade run . deployment"):
        assert command in readme, command
    assert "glade superlink" in readme and "glade supernode --superlink" in readme
    assert "--node-config" in readme
    own_data = readme[readme.index("## Use your own data") :]
    assert "load_local(" in own_data  # Hugging Face datasets from a local path
    assert "Hub" in own_data or "no download" in own_data
    for path in re.findall(r"`(my_\w+_app/\w+\.py)`", readme):
        assert (rendered[name] / path).is_file(), path


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_rendered_template_is_lint_clean(rendered, name):
    # Run from the project folder, as its author would: the package is first-party there.
    ruff = [sys.executable, "-m", "ruff"]
    common = ["--isolated", "--line-length", "100", "--target-version", "py310"]
    for args in (
        ["check", *common, "--select", "E,F,W,I,B,UP,SIM,RUF"],
        ["format", "--check", *common],
    ):
        done = subprocess.run(
            [*ruff, *args, "."],
            cwd=rendered[name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_interactive_new_lists_every_framework_with_its_description(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["new"], input="picked\nsklearn\n", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    listing = result.stdout[: result.stdout.index("Framework [")]
    for name, template in TEMPLATES.items():
        line = next(line for line in listing.splitlines() if f" {name} " in line)
        assert template.description in line
    assert (tmp_path / "picked" / "picked" / "task.py").is_file()
    assert "LogisticRegression" in (tmp_path / "picked" / "picked" / "task.py").read_text()


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_new_creates_every_framework_from_the_command_line(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["new", "proj", "--framework", name], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert f"from the {name!r} template" in result.stdout
    assert ProjectConfig.from_dir(tmp_path / "proj").client_app == "proj.client_app:app"
