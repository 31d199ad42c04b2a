"""``fusionrec plugins new``: a ready-to-install plugin package, generated from templates.

The templates are package data (``fusionrec/registry/templates``, listed in ``pyproject.toml``): ``common/`` holds
what every package has (``pyproject.toml`` with the ``fusionrec`` entry point, README, the pytest fixture), and
one folder per kind holds the plugin module (parameter model + ``@hookimpl`` with a lazy factory), the
implementation and its tests. Placeholders are written ``@@name@@``; :func:`render` fails on an unknown one.

A plugin called ``acme`` becomes the distribution ``fusionrec-acme``, the import package ``fusionrec_acme`` and
the entry point ``acme``, and its component is ``acme.<component>``.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fusionrec.core.errors import FusionrecError, did_you_mean
from fusionrec.registry.compat import fusionrec_version
from fusionrec.registry.hookspecs import HOOK_VERSION
from fusionrec.registry.tables import KINDS_BY_NAME, NAME_RE

PLACEHOLDER = re.compile(r"@@([a-z_]+)@@")
MAX_NAME_LENGTH = 24


@dataclass(frozen=True)
class KindTemplate:
    """What ``plugins new --kind KIND`` generates.

    Attributes:
        kind: the component kind.
        component: the component's own name (the part after ``NAME.``).
        cls: the implementation class.
        params_cls: the parameter model.
        summary: one line on what the component does.
        dependencies: distributions the implementation imports, besides fusionrec.
        pipeline: YAML lines using the component (``@@component@@`` is replaced).
    """

    kind: str
    component: str
    cls: str
    params_cls: str
    summary: str
    dependencies: tuple[str, ...]
    pipeline: str


KIND_TEMPLATES: dict[str, KindTemplate] = {
    t.kind: t
    for t in (
        KindTemplate(
            "encoder",
            "hashed_bow",
            "HashedBagOfWords",
            "HashedBagOfWordsParams",
            "a hashed bag-of-words text encoder (no model to download)",
            ("numpy", "torch"),
            "encoders:\n  text: {type: @@component@@, dim: 64}",
        ),
        KindTemplate(
            "fuser",
            "weighted_sum",
            "WeightedSumFuser",
            "WeightedSumParams",
            "a learned, per-item weighted sum of the projected modality vectors",
            ("torch",),
            "fuser: {type: @@component@@, dim: 32}",
        ),
        KindTemplate(
            "user_tower",
            "mean_pool",
            "MeanPoolTower",
            "MeanPoolParams",
            "the (recency-weighted) mean of the history's item vectors",
            ("torch",),
            "user: {type: @@component@@, decay: 0.9}",
        ),
        KindTemplate(
            "retriever",
            "exact",
            "ExactRetriever",
            "ExactRetrieverParams",
            "exact nearest-neighbour search with numpy (inner product or cosine)",
            ("numpy",),
            "retriever: {type: @@component@@, metric: cosine}",
        ),
        KindTemplate(
            "ranker",
            "logistic",
            "LogisticRanker",
            "LogisticRankerParams",
            "a logistic-regression reranker over user, item and retrieval features",
            ("torch",),
            "ranker: {type: @@component@@, epochs: 50}",
        ),
        KindTemplate(
            "dataset",
            "csv",
            "CsvDataset",
            "CsvDatasetParams",
            "items and interactions read from two CSV files",
            ("numpy", "pandas"),
            "data: {type: @@component@@, path: data}",
        ),
        KindTemplate(
            "split",
            "random_holdout",
            "RandomHoldoutSplit",
            "RandomHoldoutParams",
            "a seeded per-user random hold-out of validation and test interactions",
            ("numpy", "pandas"),
            "data: {type: DATASET, split: {type: @@component@@, valid: 0.1, test: 0.1, seed: 0}}",
        ),
        KindTemplate(
            "metric",
            "hit_rate",
            "HitRate",
            "HitRateParams",
            "hit rate at K: whether any of the top K items is relevant",
            ("torch",),
            "evaluate:\n  metrics: [@@component@@@10]",
        ),
        KindTemplate(
            "model",
            "recent_popularity",
            "RecentPopularity",
            "RecentPopularityParams",
            "item popularity in which recent interactions weigh more",
            ("numpy", "pandas", "torch"),
            "model: {type: @@component@@, half_life_days: 30}",
        ),
    )
}
"""One template per kind; every kind in :data:`fusionrec.registry.tables.KINDS` has one."""

COMMON_FILES: tuple[tuple[str, str], ...] = (
    ("common/pyproject.toml.tmpl", "pyproject.toml"),
    ("common/README.md.tmpl", "README.md"),
    ("common/__init__.py.tmpl", "@@module@@/__init__.py"),
    ("common/conftest.py.tmpl", "tests/conftest.py"),
    ("common/test_plugin.py.tmpl", "tests/test_plugin.py"),
)
KIND_FILES: tuple[tuple[str, str], ...] = (
    ("plugin.py.tmpl", "@@module@@/plugin.py"),
    ("impl.py.tmpl", "@@module@@/@@impl@@.py"),
    ("test.py.tmpl", "tests/test_@@impl@@.py"),
)


def template_root() -> Path:
    """The folder holding the templates, inside the installed ``fusionrec.registry`` package."""
    return Path(str(resources.files("fusionrec.registry") / "templates"))


def check_plugin_name(name: str) -> None:
    """Check that ``name`` can be a plugin's name: entry point, component prefix, module and distribution.

    Raises:
        FusionrecError: it cannot, with what would work.
    """
    uses = (
        f"it becomes the entry-point name and component prefix ({name}.…), the module fusionrec_{name} and the "
        f"distribution fusionrec-{name.replace('_', '-')}"
    )
    if not NAME_RE.match(name):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        suggestion = suggestion if NAME_RE.match(suggestion) else "acme"
        raise FusionrecError(
            f"invalid plugin name {name!r}: use a lower-case identifier ([a-z][a-z0-9_]*), since {uses}. "
            f"For example: fusionrec plugins new {suggestion}"
        )
    if keyword.iskeyword(name) or len(name) > MAX_NAME_LENGTH or name.startswith("fusionrec"):
        why = (
            "it is a Python keyword"
            if keyword.iskeyword(name)
            else f"it is longer than {MAX_NAME_LENGTH} characters"
            if len(name) > MAX_NAME_LENGTH
            else "the fusionrec_ prefix is added for you (fusionrec_fusionrec_… would follow)"
        )
        raise FusionrecError(f"invalid plugin name {name!r}: {why}. Choose a short name of your own, such as 'acme'.")


def check_kind(kind: str) -> KindTemplate:
    """The template of ``kind``.

    Raises:
        FusionrecError: no such kind.
    """
    if kind not in KIND_TEMPLATES:
        raise FusionrecError(
            f"unknown kind {kind!r}.{did_you_mean(kind, list(KIND_TEMPLATES))} Kinds: {', '.join(KIND_TEMPLATES)}."
        )
    return KIND_TEMPLATES[kind]


def variables(name: str, kind: str) -> dict[str, str]:
    """The placeholder values for plugin ``name`` of ``kind``."""
    template = check_kind(kind)
    component = f"{name}.{template.component}"
    deps = [f"fusionrec>={fusionrec_version()}" if fusionrec_version() != "unknown" else "fusionrec"]
    deps += list(template.dependencies)
    values = {
        "name": name,
        "module": f"fusionrec_{name}",
        "dist": f"fusionrec-{name.replace('_', '-')}",
        "kind": kind,
        "kind_words": kind.replace("_", " "),
        "hook": KINDS_BY_NAME[kind].hook,
        "interface": KINDS_BY_NAME[kind].interface,
        "component": component,
        "component_short": template.component,
        "impl": kind,
        "cls": template.cls,
        "params_cls": template.params_cls,
        "summary": template.summary,
        "hook_version": str(HOOK_VERSION),
        "dependencies": ", ".join(f'"{dep}"' for dep in deps),
    }
    values["pipeline"] = template.pipeline.replace("@@component@@", component)
    values["pipeline_literal"] = json.dumps(f"fusionrec: 1\n{values['pipeline']}\n")  # a valid Python literal
    # isort order (the plugin module sorts among the implementation modules by name)
    values["test_imports"] = "\n".join(
        sorted(
            [
                f"from {values['module']}.{kind} import {template.cls}",
                f"from {values['module']}.plugin import COMPONENT",
            ]
        )
    )
    return values


def render(text: str, values: dict[str, str], *, source: str = "<template>") -> str:
    """Replace every ``@@placeholder@@`` in ``text``.

    Raises:
        FusionrecError: a placeholder has no value (a bug in the template).
    """

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise FusionrecError(f"{source}: unknown placeholder @@{key}@@ (known: {', '.join(sorted(values))})")
        return values[key]

    return PLACEHOLDER.sub(replace, text)


def package_files(name: str, kind: str = "fuser") -> dict[str, str]:
    """The files of a new plugin package: relative path → content (``py.typed`` is empty)."""
    check_plugin_name(name)
    values = variables(name, kind)
    root = template_root()
    pairs = [*COMMON_FILES, *((f"{kind}/{src}", dst) for src, dst in KIND_FILES)]
    files: dict[str, str] = {}
    for source, target in pairs:
        text = (root / source).read_text(encoding="utf-8")
        files[render(target, values)] = render(text, values, source=source)
    files[render("@@module@@/py.typed", values)] = ""
    return files


def create_plugin(name: str, kind: str = "fuser", dest: str | Path = ".") -> Path:
    """Write a new plugin package into ``dest/fusionrec-NAME`` and return that folder.

    The package is written into a temporary folder beside the target and renamed into place, so a failure leaves
    nothing half-written.

    Raises:
        FusionrecError: an invalid name or kind, or the target folder exists already (it is never overwritten).
    """
    files = package_files(name, kind)
    dest = Path(dest)
    target = dest / f"fusionrec-{name.replace('_', '-')}"
    if target.exists() or target.is_symlink():
        raise FusionrecError(
            f"{target}: already exists; fusionrec plugins new never overwrites a folder. Choose another name, "
            "another --dest, or remove the folder."
        )
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=dest))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists():
            raise FusionrecError(f"{target}: appeared while the package was being written; nothing was changed.")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


__all__ = ["KIND_TEMPLATES", "KindTemplate", "check_plugin_name", "create_plugin", "package_files", "render"]
