"""The hooks a fusionrec plugin can implement: one per component kind, each taking a ``register`` callback.

Every hook is called once per plugin at start-up. Call ``register(name, factory, params=ParamsModel)`` for each
component the plugin provides:

- ``name``: a lower-case identifier (``[a-z][a-z0-9_]*``). A third-party plugin prefixes it with its entry-point
  name and a dot (``clip.vit``); built-ins have no prefix.
- ``factory``: a callable, or a lazy ``"module:attribute"`` string imported on first use (keeps start-up fast
  when the component needs heavy libraries). It is called with the validated parameters as keyword arguments,
  plus the kind's context arguments listed in each hook below.
- ``params``: a :class:`fusionrec.core.params.Params` subclass (``extra="forbid"``) describing the parameters;
  omitted, the component takes none.

This is version :data:`HOOK_VERSION` of the hook set. A plugin declares the version it was built for with a
module-level ``fusionrec_hook_version = 1``; fusionrec refuses (marks failed, with a message naming both versions)
a plugin built for a newer hook set than its own, see :mod:`fusionrec.registry.compat`.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT = "fusionrec"
HOOK_VERSION = 1
"""Version of this hook set. Raised when a hook is added or a hook's contract grows; plugins built for any version up
to this one load."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback each hook receives."""

    def __call__(self, name: str, factory: Any, *, params: Any = None) -> None: ...


@hookspec
def register_encoders(register: Register) -> None:
    """Register encoders (:class:`fusionrec.core.encoder.Encoder`): raw item content → vectors.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns an ``Encoder``.
    """


@hookspec
def register_fusers(register: Register) -> None:
    """Register fusers (:class:`fusionrec.core.fusion.Fuser`): per-modality vectors → one vector + weights.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(input_dims={modality: dim, ...}, **params)`` and returns a ``Fuser``.
    """


@hookspec
def register_user_towers(register: Register) -> None:
    """Register user towers (:class:`fusionrec.core.user_tower.UserTower`): history item vectors → user vector.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(item_dim=int, n_users=int, **params)`` and returns a ``UserTower`` (``n_users`` sizes an
            optional user-id embedding).
    """


@hookspec
def register_retrievers(register: Register) -> None:
    """Register retrievers (:class:`fusionrec.core.retrieval.Retriever`): nearest-neighbour indexes.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns a ``Retriever``.
    """


@hookspec
def register_rankers(register: Register) -> None:
    """Register rankers (:class:`fusionrec.core.ranking.Ranker`): classifiers that rerank candidates.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns a ``Ranker``.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets (:class:`fusionrec.core.data.Dataset`): sources of items and interactions.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns a ``Dataset``.
    """


@hookspec
def register_splits(register: Register) -> None:
    """Register splits (:class:`fusionrec.core.data.Split`): train/valid/test protocols.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns a ``Split``.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register metrics (:class:`fusionrec.core.metric.Metric`), named ``name@K`` in pipelines.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(k=int, **params)`` and returns a ``Metric``.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register models (:class:`fusionrec.core.model.Model`): whole recommenders, such as the baselines.

    A pipeline's ``model`` section replaces the two-tower model (``fuser`` + ``user``) with one of these.

    Args:
        register: call ``register(name, factory, params=Params)``; the factory is called as
            ``factory(**params)`` and returns a ``Model``.
    """
