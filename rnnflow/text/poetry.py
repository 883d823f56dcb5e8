"""Classical Chinese poems: the fortunes-zh corpora and the regular-verse forms (5x4, 7x4, ...).

Built-in corpora: Debian's ``fortunes-zh`` package installs ``tang300`` (the 300 Tang poems, 313
entries) and ``song100`` (100 Song poems, 94 entries) under ``/usr/share/games/fortunes/``:
UTF-8 fortune files, ``%``-separated, with ANSI colour codes on the title and author lines::

    \\x1b[32m《感遇・其一》\\x1b[m          (song100: "题目:《塞上》")
    \\x1b[33m作者：张九龄\\x1b[m             (song100: "作者:柳开（９４６－９９９）")
    兰叶春葳蕤，桂华秋皎洁。
    欣欣此生意，自尔为佳节。

The title and author lines are DROPPED (not used as conditioning): 313 poems give far too few
examples per author or title word to learn a conditional model, and the form constraint below
already lets a user ask for a shape. A document is the poem's body: one couplet per line.

Forms: ``PoemForm(chars_per_verse, verses)``, e.g. ``5x4`` (五言绝句) is four verses of five
characters, written as two lines ``AAAAA，BBBBB。`` -- the layout of the corpus.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rnnflow.text.corpus import CorpusError, Vocabulary, read_documents

__all__ = [
    "BUILTIN_CORPORA",
    "FORMS",
    "FORTUNES_DIR",
    "FormMask",
    "PoemForm",
    "is_hanzi",
    "is_well_formed",
    "load_builtin_corpus",
    "strip_poem_header",
]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
BUILTIN_CORPORA: dict[str, tuple[str, ...]] = {
    "tang": ("tang300",),
    "song": ("song100",),
    "tang-song": ("tang300", "song100"),
}

_HEADER = re.compile(r"^(题目[:：]|作者[:：]|《)")

MID = "，"  # ends the first verse of a couplet
ENDS = ("。", "？", "！")  # end a couplet


def is_hanzi(ch: str) -> bool:
    """A CJK ideograph (the characters a verse is made of; punctuation is not)."""
    return len(ch) == 1 and unicodedata.name(ch, "").startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")
    )


def strip_poem_header(document: str) -> str:
    """The poem's body: the leading title (``《...》``, ``题目:``) and author (``作者:``) lines
    removed."""
    lines = document.split("\n")
    while lines and _HEADER.match(lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def load_builtin_corpus(
    name: str, *, fortunes_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """The poem bodies of a built-in corpus (``"tang"``, ``"song"``, ``"tang-song"``).

    ``fortunes_dir`` defaults to ``$RNNFLOW_FORTUNES_DIR`` or ``/usr/share/games/fortunes``.
    Raises ``FileNotFoundError`` with the install command when the package is missing.
    """
    if name not in BUILTIN_CORPORA:
        raise ValueError(
            f"load_builtin_corpus: name must be one of {sorted(BUILTIN_CORPORA)}, got {name!r}"
        )
    folder = Path(fortunes_dir or os.environ.get("RNNFLOW_FORTUNES_DIR") or FORTUNES_DIR)
    paths = [folder / f for f in BUILTIN_CORPORA[name]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"load_builtin_corpus: {', '.join(missing)} not found: install Debian's fortunes-zh "
            "package (apt-get install fortunes-zh), or pass --text FILE"
        )
    bodies = [strip_poem_header(d) for d in read_documents(paths, delimiter="%")]
    bodies = [b for b in bodies if b]
    if not bodies:
        raise CorpusError(f"load_builtin_corpus: no poem found in {', '.join(map(str, paths))}")
    return bodies


@dataclass(frozen=True)
class PoemForm:
    """A regular form: ``verses`` verses of ``chars_per_verse`` characters, two per line.

    Odd verses end with ``，``, even ones with ``。``, ``？`` or ``！`` followed by a newline (the
    last one by the end of the poem): ``5x4`` -> ``AAAAA，BBBBB。\\nCCCCC，DDDDD。``.
    """

    chars_per_verse: int
    verses: int

    def __post_init__(self) -> None:
        if self.chars_per_verse < 1 or self.verses < 2 or self.verses % 2:
            raise ValueError(
                "PoemForm: need chars_per_verse >= 1 and an even number of verses >= 2, got "
                f"{self.chars_per_verse}x{self.verses}"
            )

    @property
    def name(self) -> str:
        return f"{self.chars_per_verse}x{self.verses}"

    @classmethod
    def parse(cls, text: str) -> PoemForm:
        """``"5x4"`` -> ``PoemForm(5, 4)``."""
        match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
        if match is None:
            raise ValueError(f"PoemForm.parse: expected CHARSxVERSES such as '5x4', got {text!r}")
        return cls(int(match[1]), int(match[2]))

    def slots(self) -> list[str]:
        """The kind of every position: ``"hanzi"``, ``"mid"``, ``"end"``, ``"newline"``, then
        ``"eos"`` (the end of the poem)."""
        out: list[str] = []
        for verse in range(self.verses):
            out += ["hanzi"] * self.chars_per_verse
            if verse % 2 == 0:
                out.append("mid")
            else:
                out.append("end")
                out.append("newline" if verse < self.verses - 1 else "eos")
        return out


FORMS: dict[str, PoemForm] = {name: PoemForm.parse(name) for name in ("5x4", "7x4", "5x8", "7x8")}


def is_well_formed(text: str, form: PoemForm) -> bool:
    """Whether ``text`` is exactly one poem of ``form`` (hanzi verses, punctuation, lines)."""
    lines = text.split("\n")
    if len(lines) != form.verses // 2:
        return False
    n = form.chars_per_verse
    ends = "".join(ENDS)
    pattern = re.compile(rf"(\S{{{n}}}){MID}(\S{{{n}}})[{ends}]")
    for line in lines:
        match = pattern.fullmatch(line)
        if match is None or not all(is_hanzi(c) for c in match[1] + match[2]):
            return False
    return True


class FormMask:
    """Which vocabulary ids may come at each position of a poem of ``form``.

    ``allowed(position)`` is a bool [V] mask: position 0 is the poem's first character (after
    ``<bos>``). Hanzi positions allow every CJK ideograph of the vocabulary; ``<unk>`` and the
    other specials are never allowed. The last position allows only ``<eos>``.
    """

    def __init__(self, form: PoemForm, vocab: Vocabulary) -> None:
        self.form = form
        self.vocab = vocab
        size = len(vocab)
        needed = [MID, "\n", *ENDS[:1]]
        missing = [repr(s) for s in needed if s not in vocab]
        if missing:
            raise ValueError(
                f"FormMask: the vocabulary lacks {', '.join(missing)}: a model trained on this "
                f"text cannot write the {form.name} form"
            )
        hanzi = torch.zeros(size, dtype=torch.bool)
        for i, s in enumerate(vocab.symbols):
            hanzi[i] = is_hanzi(s)
        if not bool(hanzi.any()):
            raise ValueError(
                "FormMask: the vocabulary has no CJK ideograph: a model trained on this text "
                f"cannot write the {form.name} form"
            )

        def only(symbols: Sequence[str]) -> Tensor:
            mask = torch.zeros(size, dtype=torch.bool)
            for s in symbols:
                if s in vocab:
                    mask[vocab.index[s]] = True
            return mask

        eos = torch.zeros(size, dtype=torch.bool)
        eos[vocab.eos_id] = True
        self._kinds = {
            "hanzi": hanzi,
            "mid": only([MID]),
            "end": only(ENDS),
            "newline": only(["\n"]),
            "eos": eos,
        }
        self.slots = form.slots()

    def __len__(self) -> int:
        return len(self.slots)

    def allowed(self, position: int) -> Tensor:
        """bool [V]: the ids allowed at ``position`` (0-based, counted after ``<bos>``)."""
        if not 0 <= position < len(self.slots):
            raise IndexError(
                f"FormMask.allowed: position must be in [0, {len(self.slots)}), got {position}"
            )
        return self._kinds[self.slots[position]]

    def check_prefix(self, text: str) -> None:
        """Raise ``ValueError`` unless ``text`` can begin a poem of this form."""
        if len(text) >= len(self.slots):
            raise ValueError(
                f"FormMask: a prime of {len(text)} characters leaves nothing to write in a "
                f"{self.form.name} poem ({len(self.slots) - 1} characters)"
            )
        for position, ch in enumerate(text):
            i = self.vocab.index.get(ch)
            if i is None or not bool(self.allowed(position)[i]):
                kind = self.slots[position]
                raise ValueError(
                    f"FormMask: the prime {text!r} does not fit the {self.form.name} form: "
                    f"character {position} is {ch!r}, expected {_DESCRIBE[kind]}"
                )


_DESCRIBE = {
    "hanzi": "a CJK ideograph known to the model",
    "mid": repr(MID),
    "end": " or ".join(repr(e) for e in ENDS),
    "newline": "a line break",
    "eos": "the end",
}
