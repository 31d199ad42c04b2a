"""Source text of small plugins the registry and config tests install as fake distributions or register."""

from __future__ import annotations

import types

from pydantic import ConfigDict, Field

from fusionrec.core.params import Component, ConfigPath, Params
from fusionrec.registry import hookimpl

GOOD = """
from fusionrec.registry import hookimpl
from fusionrec.core.params import Params

class ToyParams(Params):
    size: int = 3

def make_toy(size=3):
    return {"size": size}

@hookimpl
def register_fusers(register):
    register("{prefix}.toy", make_toy, params=ToyParams)
"""

BROKEN_IMPORT = """
raise RuntimeError("this plugin cannot be imported")
"""

MISSPELT_HOOK = """
from fusionrec.registry import hookimpl

@hookimpl
def register_fuser(register):
    register("typo.toy", dict)
"""

UNPREFIXED = """
from fusionrec.registry import hookimpl

@hookimpl
def register_fusers(register):
    register("toy", dict)
"""

RAISING_HOOK = """
from fusionrec.registry import hookimpl

@hookimpl
def register_fusers(register):
    register("raiser.first", dict)

@hookimpl
def register_encoders(register):
    raise ValueError("boom")
"""

DUPLICATE_OF_BUILTIN = """
from fusionrec.registry import hookimpl

@hookimpl
def register_fusers(register):
    register("attention", dict)
"""


def module(name: str, source: str) -> types.ModuleType:
    """A module object built from source, for registering directly (no distribution)."""
    mod = types.ModuleType(name)
    exec(compile(source.replace("{prefix}", name), f"<{name}>", "exec"), mod.__dict__)
    return mod


# An in-process plugin with a dataset that has a nested split and a path parameter, for config tests.


class TinySplitParams(Params):
    valid: float = Field(0.1, ge=0, lt=1, description="Share of each user's interactions for validation.")


class TinyDataParams(Params):
    model_config = ConfigDict(json_schema_extra={"examples": [{"path": "data"}]})

    path: ConfigPath = Field(description="Folder with the data.")
    split: Component("split") = Field({"type": "tiny.split"}, description="How to split.")  # type: ignore[valid-type]
    min_rating: float = 0.0


class TinySplit(tuple):  # type: ignore[type-arg]
    """Compares equal to ("split", valid); meets the split contract by keeping everything in train."""

    def split(self, data):  # type: ignore[no-untyped-def]
        from fusionrec.core.data import SplitData

        rows = data.interactions
        return SplitData(rows, rows.iloc[:0], rows.iloc[:0])


class TinyDataset(dict):  # type: ignore[type-arg]
    """The parameters it was built with, as a dict; meets the dataset contract (there is never data to load)."""

    @property
    def split(self):  # type: ignore[no-untyped-def]
        return self["split"]

    def load(self):  # type: ignore[no-untyped-def]
        from fusionrec.core.errors import DataError

        raise DataError("the tiny dataset has no data", file=self["path"])


def make_split(valid: float = 0.1) -> tuple[str, float]:
    return TinySplit(("split", valid))


def make_data(path: object, split: object, min_rating: float = 0.0) -> dict[str, object]:
    return TinyDataset(path=path, split=split, min_rating=min_rating)


class TinyPlugin:
    @hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("tiny.data", make_data, params=TinyDataParams)

    @hookimpl
    def register_splits(self, register):  # type: ignore[no-untyped-def]
        register("tiny.split", make_split, params=TinySplitParams)

    @hookimpl
    def register_metrics(self, register):  # type: ignore[no-untyped-def]
        register("tiny.hits", lambda k: ("hits", k))
