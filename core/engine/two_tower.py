"""The two-tower model: an item tower (fused content, optionally plus an item-id embedding) and a user tower.

Item vectors are the fuser's output over the modalities' features, plus a learned id embedding when
``train.item_ids`` is on. A frozen encoder's features are its cached vectors; a trainable encoder's are computed
by the encoder itself, trained end to end with the towers, from the items' preprocessed inputs. A pipeline with
no fuser (``sasrec``-style, ids only) uses the id embedding alone. The user tower reads the vectors of the user's
most recent history items, so a user's newest interactions count at prediction time without retraining. Scores
are inner products (cosine when ``train.normalize``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import nn

from fusionrec.core.fusion import Fuser
from fusionrec.core.user_tower import UserTower

if TYPE_CHECKING:
    from fusionrec.core.engine.encoder_inputs import EncoderInputs

Features = Mapping[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]]
"""Modality key → ``(vectors (n_items, dim) float32, present (n_items,) bool)``."""
Modalities = Mapping[str, Union[tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]], "EncoderInputs"]]
"""Modality key → a frozen encoder's ``(vectors, present)``, or a trainable encoder with every item's input."""
CHUNK = 256
"""Items per forward pass of a trainable encoder when the item tower computes every item's vector."""


@dataclass(frozen=True)
class Histories:
    """Every user's interactions in chronological order, as one flat array with per-user offsets.

    Attributes:
        items: ``(n,)`` item ids sorted by user and timestamp; equal timestamps keep the data's order (the frame's
            index labels, positions in :attr:`~fusionrec.core.data.InteractionData.interactions`, which keep the
            data file's order).
        offsets: ``(n_users + 1,)``: user ``u``'s items are ``items[offsets[u]:offsets[u + 1]]``.
        starts: ``(n_baskets + 1,)`` flat positions where each basket begins, then ``n``: a basket is a run of one
            user's interactions with equal timestamps (:meth:`from_frame` sets it). ``None`` (histories built
            without timestamps, such as a session sent to the server): every interaction is a basket of its own.
    """

    items: torch.Tensor
    offsets: torch.Tensor
    starts: torch.Tensor | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int) -> Histories:
        ordered = frame.sort_index(kind="stable").sort_values(["user", "timestamp"], kind="stable")
        users = ordered["user"].to_numpy(np.int64)
        counts = np.bincount(users, minlength=n_users)
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        times = ordered["timestamp"].to_numpy()
        new = np.ones(len(users), dtype=bool)  # a basket begins at a new user or a new timestamp
        new[1:] = (users[1:] != users[:-1]) | (times[1:] != times[:-1])
        starts = np.append(np.flatnonzero(new), len(users)).astype(np.int64)
        items = torch.from_numpy(ordered["item"].to_numpy(np.int64).copy())
        return cls(items, torch.from_numpy(offsets), torch.from_numpy(starts))

    @property
    def n_users(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def window(self, users: torch.Tensor, ends: torch.Tensor, length: int) -> torch.Tensor:
        """``(B, length)`` item ids of the ``length`` items before flat position ``ends`` (exclusive) of each user,
        oldest first, left-padded with -1 where the user has fewer."""
        if length == 0:
            return torch.empty(users.shape[0], 0, dtype=torch.long)
        positions = ends.unsqueeze(1) - length + torch.arange(length).unsqueeze(0)
        valid = positions >= self.offsets[users].unsqueeze(1)
        if self.items.shape[0] == 0:
            return torch.full_like(positions, -1)
        picked = self.items[positions.clamp(min=0, max=int(self.items.shape[0]) - 1)]
        return torch.where(valid, picked, torch.full_like(positions, -1))

    def last(self, users: torch.Tensor, length: int) -> torch.Tensor:
        """The ``length`` most recent items of each user (left-padded with -1)."""
        return self.window(users, self.offsets[users + 1], length)

    @functools.cached_property
    def baskets(self) -> Baskets:
        """The same histories read one basket per step (:class:`Baskets`)."""
        n = int(self.items.shape[0])
        starts = self.starts if self.starts is not None else torch.arange(n + 1)
        return Baskets(self, starts, torch.searchsorted(starts, self.offsets))


@dataclass(frozen=True)
class Baskets:
    """Histories whose steps are baskets (``basket: true`` towers): a basket's items are one step of the history.

    Basket ``b`` holds the flat positions ``starts[b]:starts[b + 1]`` of :attr:`histories`; user ``u``'s baskets are
    ``offsets[u]:offsets[u + 1]``, oldest first. Windows hold item ids ``(B, length, width)``: one row per basket,
    its items in the data's order, right-padded with -1 to the widest basket of the batch.

    Attributes:
        histories: the item-level histories.
        starts: ``(n_baskets + 1,)`` flat item position where each basket begins, then ``n``.
        offsets: ``(n_users + 1,)`` basket offsets of each user.
    """

    histories: Histories
    starts: torch.Tensor
    offsets: torch.Tensor

    @property
    def count(self) -> int:
        """The number of baskets."""
        return int(self.starts.shape[0] - 1)

    @functools.cached_property
    def sizes(self) -> torch.Tensor:
        """``(n_baskets,)`` items per basket."""
        return self.starts[1:] - self.starts[:-1]

    @functools.cached_property
    def numbers(self) -> Histories:
        """The basket numbers as a history (its items are baskets), to cut windows of baskets."""
        return Histories(torch.arange(self.count), self.offsets)

    def of_position(self, positions: torch.Tensor) -> torch.Tensor:
        """The basket number of each flat item position."""
        return torch.searchsorted(self.starts, positions, right=True) - 1

    def user_of(self) -> torch.Tensor:
        """``(n_baskets,)`` the user of each basket."""
        return torch.repeat_interleave(torch.arange(self.offsets.shape[0] - 1), self.offsets[1:] - self.offsets[:-1])

    def window(self, users: torch.Tensor, ends: torch.Tensor, length: int, most: int | None = None) -> torch.Tensor:
        """``(B, length, width)`` item ids of the ``length`` baskets before basket ``ends`` (exclusive) of each
        user, oldest first, left-padded with all-(-1) rows where the user has fewer.

        Args:
            most: keep at most this many items of a basket, its last ones in the data's order (``None``: all), so
                that one huge basket (a bulk import under one timestamp) cannot blow up the batch.
        """
        baskets = self.numbers.window(users, ends, length)  # (B, L) basket numbers, -1 padded
        if self.count == 0:
            return baskets.unsqueeze(-1)
        real = baskets >= 0
        size = torch.where(real, self.sizes[baskets.clamp(min=0)], torch.zeros_like(baskets))
        if most is not None:
            size = size.clamp(max=most)
        first = self.starts[baskets.clamp(min=0) + 1] - size  # the basket's end minus the items kept
        slot = torch.arange(max(int(size.max()) if size.numel() else 0, 1))
        picked = self.histories.items[(first.unsqueeze(-1) + slot).clamp(max=int(self.histories.items.shape[0]) - 1)]
        return torch.where(slot < size.unsqueeze(-1), picked, torch.full_like(picked, -1))

    def last(self, users: torch.Tensor, length: int, most: int | None = None) -> torch.Tensor:
        """The ``length`` most recent baskets of each user, ``(B, length, width)`` (padded with -1; ``most`` as in
        :meth:`window`)."""
        return self.window(users, self.offsets[users + 1], length, most)


class ItemTower(nn.Module):
    """Item vectors from the modalities' features through the fuser, optionally plus an id embedding.

    A frozen modality's vectors are a buffer. A trainable one's encoder module is a submodule (``e<i>``), so the
    optimiser trains it and checkpoints hold its weights; its vectors are computed by the encoder from the
    items' preprocessed inputs, for the items asked for only. Items without the modality get zeros and mask false.
    """

    def __init__(self, features: Modalities, fuser: Fuser | None, n_items: int, dim: int, item_ids: bool) -> None:
        super().__init__()
        self.fuser = fuser
        self.modalities: tuple[str, ...] = tuple(features) if fuser is not None else ()
        self.n_items = n_items
        self.inputs: dict[int, EncoderInputs] = {}
        for i, key in enumerate(self.modalities):
            value = features[key]
            if isinstance(value, tuple):
                vectors, present = value
                # not persistent: features come from the cache; the run directory keeps the final item vectors
                self.register_buffer(f"x{i}", torch.from_numpy(np.array(vectors, dtype=np.float32)), persistent=False)
            else:
                if value.encoder.module is None:
                    raise ValueError(f"modality {key!r}: a trainable encoder needs a torch module")
                self.add_module(f"e{i}", value.encoder.module)
                self.inputs[i], present = value, value.present
            self.register_buffer(f"m{i}", torch.from_numpy(np.array(present, dtype=bool)), persistent=False)
        self.dim = fuser.out_dim if fuser is not None else dim
        self.ids = nn.Embedding(n_items, self.dim) if item_ids or fuser is None else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.1 if fuser is None else 0.01)

    def forward(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item vectors ``(n, dim)`` and modality weights ``(n, n_modalities)`` of the items in ``index`` (all
        items when ``None``). Fusers treat items independently, so a subset costs only its share."""
        if self.fuser is not None:
            feats, masks = {}, {}
            for i, key in enumerate(self.modalities):
                m = getattr(self, f"m{i}")
                masks[key] = m if index is None else m[index]
                if i in self.inputs:
                    feats[key] = self.encode(i, masks[key], index)
                else:
                    x = getattr(self, f"x{i}")
                    feats[key] = x if index is None else x[index]
            out = self.fuser(feats, masks)
            vectors, weights = out.fused, out.weights
        else:
            assert self.ids is not None
            n = self.n_items if index is None else int(index.shape[0])
            vectors = torch.zeros(n, self.dim, device=self.ids.weight.device)
            weights = torch.zeros(n, 0, device=vectors.device)
        if self.ids is not None:
            vectors = vectors + (self.ids.weight if index is None else self.ids(index))
        return vectors, weights

    def encode(self, i: int, mask: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Trainable modality ``i``'s vectors ``(len(mask), dim)`` for the items in ``index`` (all when ``None``),
        run in chunks of :data:`CHUNK` items; rows where ``mask`` is false are zero."""
        inputs = self.inputs[i]
        rows = torch.nonzero(mask).flatten()
        items = (rows if index is None else index[rows]).tolist()
        chunks = [inputs.encoder.embed(inputs.batch(items[s : s + CHUNK])) for s in range(0, len(items), CHUNK)]
        out = torch.zeros(mask.shape[0], inputs.encoder.dim, device=mask.device)
        if not chunks:
            return out
        return out.index_copy(0, rows, torch.cat(chunks).to(device=mask.device, dtype=out.dtype))


class TwoTower(nn.Module):
    """Item tower + user tower; scores are inner products of (optionally normalised) vectors."""

    def __init__(self, item: ItemTower, user: UserTower, normalize: bool) -> None:
        super().__init__()
        self.item = item
        self.user = user
        self.normalize = normalize
        self.max_history = int(getattr(user, "max_history", 50))
        self.basket = bool(getattr(user, "basket", False))

    def item_vectors(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        vectors, weights = self.item(index)
        return (F.normalize(vectors, dim=-1) if self.normalize else vectors), weights

    def user_vectors(self, item_vectors: torch.Tensor, history: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """User vectors from history item ids ``(B, L)``, or baskets ``(B, L, width)`` (-1 = padding), given the
        item vectors."""
        return encode_users(self.user, item_vectors, history, users, self.normalize)

    def user_sequence(self, item_vectors: torch.Tensor, history: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``(B, L, d)`` outputs at every position, for towers with ``encode_sequence`` (causal)."""
        return encode_users(self.user.encode_sequence, item_vectors, history, users, self.normalize)


def encode_users(
    tower: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    item_vectors: torch.Tensor,
    history: torch.Tensor,
    users: torch.Tensor | None,
    normalize: bool,
) -> torch.Tensor:
    """Run a user tower (its forward, or its ``encode_sequence``) on history item ids ``(B, L)`` (-1 = padding)
    over the given item vectors; the output is normalised along its last dimension when ``normalize``.

    A basket history ``(B, L, width)`` (:meth:`Baskets.window`) is one step per basket: the step's vector is the
    mean of its items' vectors, and a step is padding when its basket is.
    """
    if history.dim() == 3:
        vectors, mask = basket_means(item_vectors, history)
    else:
        mask = history >= 0
        vectors = item_vectors[history.clamp(min=0)] * mask.unsqueeze(-1)
    out = tower(vectors, mask, users)
    return F.normalize(out, dim=-1) if normalize else out


def basket_means(item_vectors: torch.Tensor, baskets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L, dim)`` mean item vector of each basket of ``baskets`` ``(B, L, width)`` (-1 = padding; zeros for an
    empty step) and the ``(B, L)`` mask of real steps; only the real items are gathered (no ``width`` × ``dim``
    copy per step)."""
    batch, length, _ = baskets.shape
    real = baskets >= 0
    where = real.nonzero()
    step = where[:, 0] * length + where[:, 1]
    dim = item_vectors.shape[-1]
    sums = torch.zeros(batch * length, dim, dtype=item_vectors.dtype, device=item_vectors.device)
    sums = sums.index_add(0, step.to(item_vectors.device), item_vectors[baskets[real].to(item_vectors.device)])
    count = real.sum(dim=-1).reshape(-1, 1).clamp(min=1).to(device=sums.device, dtype=sums.dtype)
    return (sums / count).reshape(batch, length, dim), real.any(dim=-1)


class TwoTowerScorer:
    """A trained two-tower as a run directory keeps it: the user tower and the final item vectors.

    Scores any user from the history it is given, so the newest interactions count without retraining.
    """

    def __init__(self, tower: UserTower, item_vectors: torch.Tensor, normalize: bool, n_users: int) -> None:
        self.tower = tower.eval()
        self.n_users = n_users
        self.item_vectors = item_vectors
        self.normalize = normalize
        self.max_history = int(getattr(tower, "max_history", 50))
        self.basket = bool(getattr(tower, "basket", False))

    @torch.no_grad()
    def user_vectors(
        self, users: npt.NDArray[np.int64], histories: Histories, batch_size: int = 1024, *, users_known: bool = True
    ) -> torch.Tensor:
        """User vectors from each user's last ``max_history`` items in ``histories`` (baskets with a ``basket``
        tower: one step per basket; histories without timestamps have one item per basket).

        Args:
            users: rows of ``histories`` (internal user ids when ``users_known``).
            users_known: false for histories of users the model does not know (a session sent by a client): the
                tower gets no user ids.
        """
        index = torch.as_tensor(np.asarray(users, dtype=np.int64))
        out = [
            encode_users(
                self.tower,
                self.item_vectors,
                self.recent(histories, index[start : start + batch_size]),
                index[start : start + batch_size] if users_known else None,
                self.normalize,
            )
            for start in range(0, len(index), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.item_vectors.shape[1])

    def recent(self, histories: Histories, users: torch.Tensor) -> torch.Tensor:
        """What the tower reads of each user: the last ``max_history`` items ``(B, L)``, or with a ``basket``
        tower the last ``max_history`` baskets ``(B, L, width)``, each cut to its last ``max_history`` items."""
        if self.basket:
            return histories.baskets.last(users, self.max_history, self.max_history)
        return histories.last(users, self.max_history)

    def score(self, users: npt.NDArray[np.int64], history: pd.DataFrame | Histories) -> torch.Tensor:
        if not isinstance(history, Histories):
            history = Histories.from_frame(history, self.n_users)
        return self.user_vectors(users, history) @ self.item_vectors.T


def describe(model: TwoTower) -> dict[str, Any]:
    """Parameter counts, for the run's manifest."""
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "item_dim": model.item.dim,
        "max_history": model.max_history,
    }
