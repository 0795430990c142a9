"""``glade run``: outputs, overrides and every error case with its exit code."""

from __future__ import annotations

import importlib.util

import pytest
from glade_testing import one_json_document

from glade import __version__

NODES = 4  # num-supernodes of the fixture project
TOTAL = NODES * (NODES + 1) // 2  # sum of (partition-id + 1) over the nodes


def test_json_output_is_one_document_with_the_history(make_project, glade_cli):
    project = make_project()
    result = glade_cli("run", str(project), "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = one_json_document(result.stdout)
    assert {"run_id", "status", "elapsed_s", "history"} <= set(doc)
    assert doc["status"] == "completed"
    assert isinstance(doc["run_id"], int) and doc["elapsed_s"] >= 0
    totals = {r: m["total"] for r, m in doc["history"]["metrics"]["evaluate"].items()}
    assert totals == {"1": TOTAL, "2": TOTAL}
    assert doc["history"]["failures"]["evaluate"] == {"1": 0, "2": 0}
    # progress went to stderr, not into the JSON
    assert "round 2/2" in result.stderr


def test_run_config_overrides_reach_the_apps(make_project, glade_cli):
    project = make_project()
    result = glade_cli(
        "run", str(project), "--run-config", "num-server-rounds=3 scale=5", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    totals = one_json_document(result.stdout)["history"]["metrics"]["evaluate"]
    assert totals == {str(r): {"total": 5 * TOTAL} for r in (1, 2, 3)}


def test_seeded_federation_gives_the_same_run_id(make_project, glade_cli):
    project = make_project()
    first = one_json_document(glade_cli("run", str(project), "--format", "json").stdout)
    second = one_json_document(glade_cli("run", str(project), "--format", "json").stdout)
    assert first["run_id"] == second["run_id"]


def test_text_output_has_progress_and_a_summary_table(make_project, glade_cli):
    project = make_project()
    result = glade_cli("run", str(project), "local")
    assert result.exit_code == 0, result.stderr
    assert "round 1/2" in result.stderr and "round 2/2" in result.stderr
    assert "virtual nodes" in result.stderr
    assert "total" in result.stdout  # the table's metric column
    assert "completed" in result.stdout
    assert "{" not in result.stdout  # no JSON in text mode


def test_app_dir_defaults_to_the_current_folder(make_project, glade_cli, monkeypatch):
    project = make_project()
    monkeypatch.chdir(project)
    result = glade_cli("run", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert one_json_document(result.stdout)["status"] == "completed"


def _assert_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_pyproject(tmp_path, glade_cli):
    _assert_error(glade_cli("run", str(tmp_path)), 2, "no pyproject.toml", "glade new")


@pytest.mark.parametrize(
    ("server_ref", "needle"),
    [
        ("no_such_module_xyz.server_app:app", "no_such_module_xyz"),
        ("{pkg}.server_app:missing", "no attribute 'missing'"),
        ("{pkg}.client_app:app", "expected a ServerApp"),
    ],
)
def test_bad_app_reference(make_project, glade_cli, server_ref, needle):
    project = make_project(server_ref=server_ref)
    _assert_error(glade_cli("run", str(project)), 3, needle)


def test_bad_client_app_reference_is_found_before_the_run(make_project, glade_cli):
    project = make_project(client_ref="nowhere_xyz:app")
    result = glade_cli("run", str(project), "--format", "json")
    _assert_error(result, 3, "nowhere_xyz")
    doc = one_json_document(result.stdout)
    assert doc["status"] == "failed" and doc["run_id"] is None and doc["exit_code"] == 3


def test_unknown_federation(make_project, glade_cli):
    _assert_error(glade_cli("run", str(make_project()), "nope"), 2, "'nope'", "local, remote")


def test_a_remote_federation_without_tls_or_insecure_is_refused_before_connecting(
    make_project, glade_cli
):
    result = glade_cli("run", str(make_project()), "remote", "--format", "json")
    _assert_error(result, 2, "need TLS", "root-certificates", "insecure = true", "remote")
    doc = one_json_document(result.stdout)
    assert doc["status"] == "failed" and doc["run_id"] is None and doc["exit_code"] == 2
    assert "cannot reach" not in result.stderr  # refused before any connection was tried


@pytest.mark.parametrize(
    ("run_config", "needle"),
    [
        ("num-server-rounds", "bad run-config entry"),
        ("scale='unclosed", "unbalanced quotes"),
        ("no-such-key=1", "unknown run-config key"),
        ("scale=1.5", "'scale' is an integer"),
    ],
)
def test_bad_run_config(make_project, glade_cli, run_config, needle):
    result = glade_cli("run", str(make_project()), "--run-config", run_config)
    _assert_error(result, 2, needle)


def test_bad_federation_option(make_project, glade_cli):
    project = make_project()
    text = (project / "pyproject.toml").read_text().replace("seed = 7", 'seed = "seven"')
    (project / "pyproject.toml").write_text(text)
    _assert_error(glade_cli("run", str(project)), 2, "seed must be an integer")


def test_failing_app_gives_status_failed_and_exit_1(make_project, glade_cli):
    project = make_project()
    result = glade_cli("run", str(project), "--run-config", "fail-at-round=1", "--format", "json")
    _assert_error(result, 1, "failed", "boom from the server app", "--verbose")
    doc = one_json_document(result.stdout)
    assert doc["status"] == "failed"
    assert "boom from the server app" in doc["reason"]
    assert doc["history"]["metrics"]["evaluate"] == {"1": {"total": TOTAL}}


def test_verbose_shows_the_traceback(make_project, glade_cli):
    project = make_project()
    result = glade_cli("run", str(project), "--run-config", "fail-at-round=2", "--verbose")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "boom from the server app" in result.stderr


def test_unknown_output_format_is_a_usage_error(make_project, glade_cli):
    result = glade_cli("run", str(make_project()), "--format", "xml")
    assert result.exit_code == 2


def test_version(glade_cli):
    result = glade_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"glade {__version__}")


def test_plot_saves_the_metrics_of_the_run(make_project, glade_cli, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "plots" / "run.png"
    result = glade_cli("run", str(make_project()), "--format", "json", "--plot", str(target))
    assert result.exit_code == 0, result.stderr
    assert one_json_document(result.stdout)["status"] == "completed"
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Saved the metric plot to {target}" in result.stderr


def test_plot_without_matplotlib_fails_before_the_run(make_project, glade_cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    result = glade_cli("run", str(make_project()), "--format", "json", "--plot", "x.png")
    _assert_error(result, 2, "--plot needs matplotlib: pip install 'glade[plot]'")
    assert one_json_document(result.stdout)["run_id"] is None
    assert "round 1" not in result.stderr  # nothing ran


def test_plot_cannot_go_with_detach(make_project, glade_cli):
    project = make_project()
    text = (project / "pyproject.toml").read_text()
    text = text.replace('address = "127.0.0.1:9093"', 'address = "127.0.0.1:9093"\ninsecure = true')
    (project / "pyproject.toml").write_text(text)
    result = glade_cli("run", str(project), "remote", "--detach", "--plot", "x.png")
    _assert_error(result, 2, "--plot", "--detach")
