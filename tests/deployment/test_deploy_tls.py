"""TLS end to end with real processes: ``glade certs create``, a SuperLink with mutual TLS on
Fleet, SuperNodes with client certificates, and ``glade run/ls`` through root-certificates."""

from __future__ import annotations

from pathlib import Path

from glade_testing import glade_in_process, run_glade


def _certs(root: Path, name: str = "certs") -> Path:
    out = root / name
    done = glade_in_process("certs", "create", "--out", str(out), "--hostname", "link.test")
    assert done.exit_code == 0, done.stderr
    assert "--root-certificates" in done.stderr and "link.test" in done.stderr
    return out


def test_a_run_completes_over_tls_and_a_wrong_ca_is_a_clear_error(deploy, fault_app, tmp_path):
    certs = _certs(tmp_path)
    deployment = deploy(num_nodes=2, certs=certs, node_auth=False)  # keys: test_deploy_node_auth
    deployment.add_to(fault_app)
    done = run_glade("run", ".", "dev", "-c", "num-server-rounds=1", cwd=fault_app, timeout=120)
    assert done.returncode == 0, done.stderr + deployment.logs()
    assert "completed" in done.stderr
    listed = run_glade("ls", "dev", "--format", "json", cwd=fault_app)
    assert listed.returncode == 0 and '"completed"' in listed.stdout, listed.stderr
    warnings = (deployment.root / "superlink.log").read_text()
    assert "WITHOUT TLS" not in warnings and "(TLS)" in warnings

    other = _certs(tmp_path, "other")
    text = (fault_app / "pyproject.toml").read_text()
    text = text.replace(str(certs / "ca.pem"), str(other / "ca.pem"))
    (fault_app / "pyproject.toml").write_text(text)
    wrong = run_glade("ls", "dev", cwd=fault_app)
    assert wrong.returncode != 0
    assert "cannot verify the TLS certificate" in wrong.stderr, wrong.stderr
    assert "root-certificates" in wrong.stderr and "Traceback" not in wrong.stderr

    text = text.replace(f'root-certificates = "{other / "ca.pem"}"', "insecure = true")
    (fault_app / "pyproject.toml").write_text(text)
    plain = run_glade("ls", "dev", cwd=fault_app)
    assert plain.returncode != 0 and "cannot reach" in plain.stderr, plain.stderr
    assert "set root-certificates" in plain.stderr and "Traceback" not in plain.stderr


def test_federations_need_tls_or_insecure(fault_app, tmp_path):
    base = (fault_app / "pyproject.toml").read_text()
    table = '\n[tool.glade.federations.dev]\naddress = "127.0.0.1:1"\n'
    (fault_app / "pyproject.toml").write_text(base + table)
    result = glade_in_process("ls", "dev", "--app", str(fault_app))
    assert result.exit_code == 2 and "root-certificates" in result.stderr, result.stderr
    missing = table + 'root-certificates = "certs/nope.pem"\n'
    (fault_app / "pyproject.toml").write_text(base + missing)
    result = glade_in_process("ls", "dev", "--app", str(fault_app))
    assert result.exit_code == 2 and "does not exist" in result.stderr, result.stderr


def test_services_without_certificates_or_insecure_refuse_to_start(tmp_path):
    link = glade_in_process(
        "superlink", "--database", ":memory:", "--control-address", "127.0.0.1:0"
    )
    assert link.exit_code == 2, link.stderr
    assert "needs TLS certificates" in link.stderr and "--insecure" in link.stderr
    node = glade_in_process("supernode", "--superlink", "127.0.0.1:1", "--data-dir", str(tmp_path))
    assert node.exit_code == 2, node.stderr
    assert "--root-certificates" in node.stderr and "--insecure" in node.stderr
