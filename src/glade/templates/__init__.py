"""Project templates for ``glade new``: a registry of folders of files with placeholders.

A template is a folder next to this file. Every file in it is copied into the new project;
a ``.tmpl`` suffix is dropped, a path part named ``_package_`` becomes the project's Python
package, and ``{{name}}`` placeholders in file contents are replaced (``project_name``,
``package_name``, ``glade_version``). Add a template by adding a folder and a
:func:`register` call below.

>>> from glade.templates import TEMPLATES
>>> TEMPLATES["numpy"].name
'numpy'
>>> list(TEMPLATES)[:3]
['numpy', 'pytorch', 'tensorflow']
"""

from __future__ import annotations

import keyword
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from glade import __version__
from glade.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["TEMPLATES", "Template", "package_name_for", "register", "render_project"]

_PACKAGE_PART = "_package_"
_SUFFIX = ".tmpl"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_PROJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# Package names that would shadow a module the app itself imports.
_RESERVED = frozenset(
    {
        "glade",
        "numpy",
        "sklearn",
        "scipy",
        "torch",
        "tests",
        "tensorflow",
        "keras",
        "jax",
        "flax",
        "optax",
        "xgboost",
        "transformers",
        "tokenizers",
        "peft",
        "datasets",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A registered project template: a name, a one-line description and its folder."""

    name: str
    description: str
    folder: str

    def files(self) -> list[tuple[str, Traversable]]:
        """``(relative path, file)`` for every file of the template, sorted by path."""
        root = resources.files(__name__).joinpath(self.folder)
        if not root.is_dir():
            raise ConfigError(f"template {self.name!r}: folder {self.folder!r} is missing")
        found: list[tuple[str, Traversable]] = []
        stack: list[tuple[str, Traversable]] = [("", root)]
        while stack:
            prefix, folder = stack.pop()
            for entry in folder.iterdir():
                if entry.name == "__pycache__":
                    continue
                rel = f"{prefix}{entry.name}"
                if entry.is_dir():
                    stack.append((f"{rel}/", entry))
                else:
                    found.append((rel, entry))
        return sorted(found, key=lambda item: item[0])


TEMPLATES: dict[str, Template] = {}


def register(template: Template) -> Template:
    """Add ``template`` to :data:`TEMPLATES` (names are unique)."""
    if template.name in TEMPLATES:
        raise ValueError(f"a template named {template.name!r} is already registered")
    TEMPLATES[template.name] = template
    return template


# The built-in templates, in the order `glade new` lists them: the default (numpy) first.
_BUILTIN = (
    ("numpy", "softmax regression in pure NumPy on scikit-learn's digits (CPU, seconds)"),
    ("pytorch", "a small CNN in PyTorch on scikit-learn's digits (CPU or GPU, under a minute)"),
    ("tensorflow", "a Keras 3 network on TensorFlow on scikit-learn's digits (CPU or GPU)"),
    ("jax", "an MLP in plain JAX + optax on scikit-learn's digits (CPU or GPU)"),
    ("sklearn", "warm-started logistic regression in scikit-learn on the wine data (seconds)"),
    ("xgboost", "gradient-boosted trees with XGBoost and FedXgbBagging on breast cancer data"),
    ("huggingface", "a small BERT text classifier from a config (transformers) on local text"),
    ("llm", "LoRA fine-tuning of a small causal LM (transformers + peft) on local text"),
)
for _name, _description in _BUILTIN:
    register(Template(name=_name, description=_description, folder=_name))
del _name, _description


def package_name_for(project_name: str) -> str:
    """The Python package of a project: ``My-App`` -> ``my_app`` (checked to be importable)."""
    if not _PROJECT_NAME.match(project_name):
        raise ConfigError(
            f"invalid project name {project_name!r}: use a letter followed by letters, digits, "
            "'-' or '_' (at most 64 characters), e.g. 'my-fl-app'"
        )
    package = project_name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in _RESERVED or package in sys.stdlib_module_names:
        raise ConfigError(
            f"invalid project name {project_name!r}: its package {package!r} would shadow a "
            "Python keyword or a module the app needs; pick another name, e.g. "
            f"'{project_name}-app'"
        )
    return package


def render_project(template: str, *, project_name: str, dest: Path) -> list[Path]:
    """Create the project ``project_name`` from ``template`` in the folder ``dest``.

    ``dest`` must not exist or be an empty folder. Returns the files written. If writing
    fails half-way, the folder is removed again (only if this call created it).
    """
    if template not in TEMPLATES:
        known = ", ".join(sorted(TEMPLATES))
        raise ConfigError(f"unknown template {template!r}; choose one of: {known}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(
            f"{dest} already exists and is not an empty folder; glade new never overwrites "
            "files: choose another project name or remove that folder"
        )
    package = package_name_for(project_name)
    values = {
        "project_name": project_name,
        "package_name": package,
        "glade_version": __version__,
    }
    created = not dest.exists()
    written: list[Path] = []
    try:
        for rel, source in TEMPLATES[template].files():
            target = dest / _target_path(rel, package)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_fill(source.read_text(encoding="utf-8"), values, rel), "utf-8")
            written.append(target)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return written


def _target_path(rel: str, package: str) -> Path:
    parts = [package if part == _PACKAGE_PART else part for part in rel.split("/")]
    if parts[-1].endswith(_SUFFIX):
        parts[-1] = parts[-1][: -len(_SUFFIX)]
    return Path(*parts)


def _fill(text: str, values: dict[str, str], rel: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"template file {rel}: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(replace, text)
