"""Run generated template projects for real: one cached virtual environment per framework.

A template's slow test renders the project with ``glade new``, installs the project's own
dependencies into a virtual environment (``python -m venv``, no system site-packages) with
Glade from this checkout, and runs ``glade run --format json`` with that environment's
``glade``. The environments are kept in ``$GLADE_TEST_VENVS`` (default
``~/.cache/glade-test-venvs/<framework>-<hash of the requirements>``) and rebuilt when the
requirements change; a file lock makes concurrent test runs wait for one build.

Heavy frameworks come from local wheels where this machine has them: PyTorch is pinned to
``torch==2.13.0`` (any other version is a multi-GB download) and ``tensorflow`` / ``xgboost``
are installed as their CPU-only builds (``tensorflow-cpu``, ``xgboost-cpu``), which provide
the same modules. If an install fails, the test is skipped with pip's last lines as reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glade.project import tomllib
from glade.templates import render_project

REPO = Path(__file__).resolve().parents[2]
TORCH_PIN = "torch==2.13.0"
# Same import names, CPU-only wheels (no CUDA downloads on a machine without a GPU).
CPU_BUILDS = {"tensorflow": "tensorflow-cpu", "xgboost": "xgboost-cpu"}
INSTALL_TIMEOUT_S = 1500
# Never let a run reach the network: the templates must work offline.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def venv_root() -> Path:
    """Where the per-framework environments live."""
    default = Path.home() / ".cache" / "glade-test-venvs"
    return Path(os.environ.get("GLADE_TEST_VENVS", default))


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-")


def project_requirements(project: Path) -> list[str]:
    """The project's dependencies as this machine installs them (Glade comes from the repo)."""
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    out: list[str] = []
    for requirement in data["project"]["dependencies"]:
        name = _name(requirement)
        if name == "glade":
            continue
        if name in CPU_BUILDS:
            requirement = CPU_BUILDS[name] + requirement.strip()[len(name) :]
        out.append(requirement)
        if name == "torch":
            out.append(TORCH_PIN)
    return sorted(out)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pip(python: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _skip_reason(framework: str, step: str, result: subprocess.CompletedProcess[str]) -> str:
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-6:])
    return f"{framework}: cannot install {step} here:\n{tail}"


def _venv_folder(framework: str, requirements: list[str]) -> Path:
    # Glade's own dependencies are part of the key: a cached environment built before one
    # was added would lack it (Glade itself is installed editable, so its code is current).
    pyproject = (REPO / "pyproject.toml").read_text()
    key = hashlib.sha256(json.dumps([str(REPO), requirements, pyproject]).encode()).hexdigest()
    key = key[:12]
    return venv_root() / f"{framework}-{key}"


def framework_python(framework: str, requirements: list[str]) -> Path:
    """The Python of an environment with ``requirements`` and Glade (skips if impossible)."""
    folder = _venv_folder(framework, requirements)
    python = folder / "bin" / "python"
    with _locked(folder.with_suffix(".lock")):
        if (folder / ".complete").is_file():
            return python
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
        started = time.monotonic()
        result = _pip(python, "-e", str(REPO), *requirements, timeout=INSTALL_TIMEOUT_S)
        if result.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            reason = _skip_reason(framework, " ".join(requirements), result)
            print(reason)  # the closing note of the test run says which frameworks ran
            pytest.skip(reason)
        took = time.monotonic() - started
        print(f"{framework}: environment built in {took:.0f} s at {folder}")
        (folder / ".complete").write_text("\n".join(requirements) + "\n")
    return python


@dataclass(frozen=True)
class TemplateRun:
    """A finished ``glade run --format json`` of a generated project."""

    doc: dict
    stderr: str
    seconds: float

    def metrics(self, stage: str) -> dict[int, dict[str, float]]:
        """``{round: metrics}`` of one stage (``train``, ``evaluate``, ``centralized``)."""
        raw = self.doc["history"]["metrics"].get(stage, {})
        return {int(rnd): values for rnd, values in raw.items()}


def run_template(
    framework: str, tmp_path: Path, *, run_config: str | None = None, timeout: float = 900
) -> TemplateRun:
    """``glade new`` + ``pip install -e`` + ``glade run --format json`` in the framework's venv."""
    probe = tmp_path / "requirements-probe"
    render_project(framework, project_name="probe", dest=probe)
    requirements = project_requirements(probe)
    python = framework_python(framework, requirements)
    glade = python.with_name("glade")
    name = f"check-{framework}"
    new = subprocess.run(
        [str(glade), "new", name, "--framework", framework],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert new.returncode == 0, new.stderr
    project = tmp_path / name
    # The project itself, as its README says (pip install -e .); its dependencies are there.
    with _locked(_venv_folder(framework, requirements).with_suffix(".lock")):
        install = _pip(python, "--no-deps", "-e", str(project), timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    args = [str(glade), "run", str(project), "--format", "json"]
    if run_config:
        args += ["--run-config", run_config]
    env = {**os.environ, **OFFLINE_ENV}
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    done = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-5000:]
    doc = json.loads(done.stdout)  # exactly one JSON document on stdout
    assert doc["status"] == "completed", doc.get("reason")
    print(f"{framework}: glade run took {seconds:.1f} s")
    return TemplateRun(doc=doc, stderr=done.stderr, seconds=seconds)


@pytest.fixture
def template_run(tmp_path: Path):
    """``template_run(framework, run_config=None) -> TemplateRun`` (see :func:`run_template`)."""

    def run(framework: str, *, run_config: str | None = None) -> TemplateRun:
        return run_template(framework, tmp_path, run_config=run_config)

    return run


@pytest.fixture
def import_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``import_template(framework, module) -> module`` of a freshly rendered project.

    Each call renders the template under a unique package name, so imports never collide;
    ``sys.path`` and ``sys.modules`` are restored afterwards.
    """
    packages: list[str] = []

    def load(framework: str, module: str = "task") -> Any:
        package = f"tpl_{framework}_{uuid.uuid4().hex[:8]}"
        packages.append(package)
        render_project(framework, project_name=package, dest=tmp_path / package)
        monkeypatch.syspath_prepend(str(tmp_path / package))
        return importlib.import_module(f"{package}.{module}")

    yield load
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            del sys.modules[name]
