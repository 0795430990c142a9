import textwrap

import pytest

from glade import AppLoadError, ClientApp, ConfigError, ServerApp
from glade.project import ProjectConfig, load_app, parse_run_config

PYPROJECT = """
[project]
name = "demo"

[tool.glade.app]
server-app = "demo_pkg.server_app:app"
client-app = "demo_pkg.client_app:app"

[tool.glade.app.config]
num-server-rounds = 3
lr = 0.1

[tool.glade.federations]
default = "sim"

[tool.glade.federations.sim]
num-supernodes = 4
seed = 1

[tool.glade.federations.remote]
address = "127.0.0.1:9093"
"""


def _project(tmp_path, text=PYPROJECT):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(text))
    return tmp_path


def test_reads_app_config_and_federations(tmp_path):
    cfg = ProjectConfig.from_dir(_project(tmp_path))
    assert cfg.name == "demo"
    assert cfg.server_app == "demo_pkg.server_app:app"
    assert cfg.run_config == {"num-server-rounds": 3, "lr": 0.1}
    fed = cfg.federation(None)
    assert fed.name == "sim" and fed.is_simulation and fed.num_supernodes == 4
    assert not cfg.federation("remote").is_simulation


def test_missing_pyproject(tmp_path):
    with pytest.raises(ConfigError, match=r"no pyproject\.toml"):
        ProjectConfig.from_dir(tmp_path)


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        ProjectConfig.from_dir(_project(tmp_path, "[tool.glade\n"))


def test_missing_glade_section(tmp_path):
    with pytest.raises(ConfigError, match=r"\[tool.glade\]"):
        ProjectConfig.from_dir(_project(tmp_path, "[project]\nname='x'\n"))


def test_bad_app_reference(tmp_path):
    text = PYPROJECT.replace('"demo_pkg.client_app:app"', '"demo_pkg.client_app"')
    with pytest.raises(ConfigError, match="client-app must be 'module:attribute'"):
        ProjectConfig.from_dir(_project(tmp_path, text))


def test_unknown_federation_lists_known(tmp_path):
    cfg = ProjectConfig.from_dir(_project(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown federation 'nope'.*local, remote, sim"):
        cfg.federation("nope")


def test_unknown_simulation_option(tmp_path):
    text = PYPROJECT.replace("seed = 1", "sede = 1")
    cfg = ProjectConfig.from_dir(_project(tmp_path, text))
    with pytest.raises(ConfigError, match="sede"):
        cfg.federation("sim")


def test_bad_num_supernodes(tmp_path):
    cfg = ProjectConfig.from_dir(_project(tmp_path, PYPROJECT.replace("= 4", "= 0")))
    with pytest.raises(ConfigError, match="num-supernodes"):
        _ = cfg.federation("sim").num_supernodes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("a=1 b=0.5 c=true", {"a": 1, "b": 0.5, "c": True}),
        ("name='x y' opt=sgd", {"name": "x y", "opt": "sgd"}),
        ('layers=[1, 2, 3] s="q"', {"layers": [1, 2, 3], "s": "q"}),
    ],
)
def test_parse_run_config(text, expected):
    assert parse_run_config(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=3", "a='unclosed", "a=[1, 2"])
def test_parse_run_config_errors(text):
    with pytest.raises(ConfigError, match="run-config"):
        parse_run_config(text)


def _write_app(tmp_path, body):
    pkg = tmp_path / "apppkg_x"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(textwrap.dedent(body))
    return tmp_path


def test_load_app_by_reference(tmp_path):
    root = _write_app(
        tmp_path,
        """
        from glade import ClientApp, ServerApp
        client = ClientApp()
        server = ServerApp()
        number = 3
        """,
    )
    assert isinstance(load_app("apppkg_x.mod:client", kind=ClientApp, app_dir=root), ClientApp)
    with pytest.raises(AppLoadError, match="expected a ServerApp"):
        load_app("apppkg_x.mod:number", kind=ServerApp, app_dir=root)
    with pytest.raises(AppLoadError, match="has no attribute 'nope'"):
        load_app("apppkg_x.mod:nope", kind=ServerApp, app_dir=root)
    with pytest.raises(AppLoadError, match="no such module"):
        load_app("apppkg_missing.mod:x", kind=ServerApp, app_dir=root)
    with pytest.raises(AppLoadError, match="must look like"):
        load_app("nocolon", kind=ServerApp)


def test_load_app_reports_import_errors_inside_the_module(tmp_path):
    pkg = tmp_path / "apppkg_y"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("import not_installed_dependency_xyz\n")
    (pkg / "boom.py").write_text("raise RuntimeError('kaput')\n")
    with pytest.raises(AppLoadError, match="install the app's dependencies"):
        load_app("apppkg_y.mod:app", kind=ServerApp, app_dir=tmp_path)
    with pytest.raises(AppLoadError, match="RuntimeError: kaput"):
        load_app("apppkg_y.boom:app", kind=ServerApp, app_dir=tmp_path)
