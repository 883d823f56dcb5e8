"""Poem constraints for sampling: form, acrostic, rhyme and the level/oblique (平仄) pattern.

Every constraint is a mask over the vocabulary at each position, computed from the characters
already written, so a sampler (:func:`rnnflow.text.generate.generate`) obeys it by construction:
no rejection loop. :class:`PoemConstraints` says what is wanted; :class:`ConstraintMask` turns it
into ``allowed(text_so_far) -> bool [V]`` for one vocabulary.

Rhyme (``rhyme=True``): the last characters of the even verses (2, 4, ...) share one rhyme
group. The group is fixed by the first of them (any character that has a group may come there);
the later ones are restricted to that group, and to the characters of it not yet used as a rhyme
(as in classical verse) unless no other one fits. Groups are the 14 of the 中华新韵 table
(China Poetry Society, 2005), read from each character's modern Mandarin final (``pypinyin``,
its most common reading)::

    麻 a ia ua     波 o e uo      皆 ie üe       开 ai uai       微 ei uei       豪 ao iao
    尤 ou iou      寒 an ian uan üan              文 en in uen ün             唐 ang iang uang
    庚 eng ing ong iong ueng      齐 i (not after zh ch sh r z c s), er, ü      支 -i (zhi ... si)
    姑 u

Tone (``tonal=True``, 5- and 7-character verses): modern tones 1-2 count as level (平), 3-4 as
oblique (仄) -- an approximation: Middle Chinese entering-tone (入声) characters read today in
tones 1-2 are counted level. The pattern of regulated verse (律诗/绝句), fixed by the tone of the
first verse's 2nd character (any character with a tone may come there):

* inside a verse, the 2nd, 4th (and 6th) characters alternate (二四六分明; 1st/3rd/5th free);
* verse 2k's pattern is the opposite of verse 2k-1's (对); verse 2k+1's 2nd character has the
  tone of verse 2k's (粘);
* even verses end on a level character (the rhyme), odd verses after the first on an oblique one.

Acrostic (``acrostic="春夏秋冬"``): verse ``i`` starts with character ``i``; one character per
verse. :func:`rhyme_group`, :func:`tone` and :func:`compliance` classify any text, so the same
rules measure the corpus and unconstrained samples.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rnnflow.text.corpus import Vocabulary
from rnnflow.text.poetry import ENDS, MID, FormMask, PoemForm, is_hanzi, is_well_formed

__all__ = [
    "RHYME_GROUPS",
    "ConstraintError",
    "ConstraintMask",
    "PoemConstraints",
    "compliance",
    "poem_checks",
    "rhyme_group",
    "rhymes",
    "tonal_pattern_holds",
    "tone",
    "verses",
]

Tone = Literal["ping", "ze"]

RHYME_GROUPS: dict[str, tuple[str, ...]] = {
    "麻": ("a", "ia", "ua"),
    "波": ("o", "e", "uo", "io"),
    "皆": ("ie", "ve", "ê"),
    "开": ("ai", "uai"),
    "微": ("ei", "uei"),
    "豪": ("ao", "iao"),
    "尤": ("ou", "iou"),
    "寒": ("an", "ian", "uan", "van"),
    "文": ("en", "in", "uen", "vn"),
    "唐": ("ang", "iang", "uang"),
    "庚": ("eng", "ing", "ong", "iong", "ueng"),
    "齐": ("i", "er", "v"),
    "支": (),  # final "i" after zh ch sh r z c s (see rhyme_group)
    "姑": ("u",),
}
_FINAL_TO_GROUP = {final: g for g, finals in RHYME_GROUPS.items() for final in finals}
_APICAL = frozenset(("zh", "ch", "sh", "r", "z", "c", "s"))
_SEPARATORS = frozenset((MID, *ENDS, "\n"))


class ConstraintError(ValueError):
    """The constraints cannot be met (wrong acrostic length, characters the model lacks, ...)."""


@functools.lru_cache(maxsize=65536)
def _reading(ch: str) -> tuple[str, str, int] | None:
    """(initial, final, tone 1-5) of ``ch``'s most common Mandarin reading, or None."""
    if not is_hanzi(ch):
        return None
    try:
        from pypinyin import Style, pinyin
        from pypinyin.contrib.tone_convert import to_finals, to_initials
    except ImportError as exc:
        raise ImportError(
            "rnnflow.text.constraints: rhyme groups and tones need pypinyin: "
            "pip install 'rnnflow[poetry]'"
        ) from exc

    syllable = pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")
    if not syllable or not syllable[0] or not syllable[0][0][-1:].isdigit():
        return None
    text = syllable[0][0]
    plain, number = text[:-1], int(text[-1])
    return to_initials(plain, strict=True), to_finals(plain, strict=True), number


def rhyme_group(ch: str) -> str | None:
    """The 中华新韵 rhyme group of ``ch`` (``"唐"`` for 长 chang), or None when ``ch`` is not a
    CJK ideograph with a known reading."""
    reading = _reading(ch)
    if reading is None:
        return None
    initial, final, _ = reading
    if final == "i" and initial in _APICAL:
        return "支"
    return _FINAL_TO_GROUP.get(final)


def tone(ch: str) -> Tone | None:
    """``"ping"`` (level: modern tones 1, 2) or ``"ze"`` (oblique: 3, 4) of ``ch``; None for
    an unknown character or the neutral tone."""
    reading = _reading(ch)
    if reading is None or reading[2] == 5:
        return None
    return "ping" if reading[2] in (1, 2) else "ze"


@dataclass(frozen=True)
class PoemConstraints:
    """What a poem must obey: a ``form``, and optionally an ``acrostic`` (one character per
    verse), ``rhyme`` on the even verses, and the ``tonal`` pattern of regulated verse."""

    form: PoemForm
    acrostic: str = ""
    rhyme: bool = False
    tonal: bool = False

    def __post_init__(self) -> None:
        if self.acrostic and len(self.acrostic) != self.form.verses:
            raise ConstraintError(
                f"PoemConstraints: the acrostic {self.acrostic!r} has {len(self.acrostic)} "
                f"characters, the {self.form.name} form has {self.form.verses} verses (one "
                "character per verse)"
            )
        bad = [ch for ch in self.acrostic if not is_hanzi(ch)]
        if bad:
            raise ConstraintError(
                f"PoemConstraints: acrostic characters must be CJK ideographs, got {bad}"
            )
        if self.tonal and self.form.chars_per_verse not in (5, 7):
            raise ConstraintError(
                "PoemConstraints: tonal=True needs 5- or 7-character verses (regulated verse), "
                f"got the {self.form.name} form"
            )


def verses(text: str) -> list[str]:
    """The verses of a poem: its text split at ``，。？！`` and line breaks, empty parts dropped."""
    out, current = [], []
    for ch in text:
        if ch in _SEPARATORS:
            if current:
                out.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        out.append("".join(current))
    return out


def rhymes(text: str) -> bool:
    """Whether the last characters of the even verses (2, 4, ...) of ``text`` all have one
    rhyme group (a character without a group never rhymes)."""
    ends = [v[-1] for v in verses(text)[1::2]]
    groups = {rhyme_group(ch) for ch in ends}
    return bool(ends) and None not in groups and len(groups) == 1


def _required_tone(verse: int, column: int, first: Tone) -> Tone | None:
    """The tone the pattern requires at (0-based) ``verse``, ``column`` (1, 3, 5: the 2nd, 4th,
    6th characters), given the tone ``first`` of verse 0's 2nd character."""
    # 2nd-character tone of each verse: 对 flips inside a couplet, 粘 keeps it across couplets
    lead = first if verse % 4 in (0, 3) else ("ze" if first == "ping" else "ping")
    flips = (column - 1) // 2  # column 1 -> 0, 3 -> 1, 5 -> 2
    if flips % 2 == 0:
        return lead
    return "ze" if lead == "ping" else "ping"


def _tonal_hits(text: str, chars_per_verse: int) -> tuple[int, int]:
    """(governed positions whose tone fits the pattern, governed positions) of ``text``; (0, 1)
    when the verses are not all ``chars_per_verse`` long or the key character has no tone."""
    vs = verses(text)
    if not vs or any(len(v) != chars_per_verse for v in vs):
        return 0, 1
    first = tone(vs[0][1])
    if first is None:
        return 0, 1
    hits, total = 1, 1  # the key position fits by definition
    for i, v in enumerate(vs):
        wanted = [(c, _required_tone(i, c, first)) for c in range(1, chars_per_verse - 1, 2)]
        if i % 2 == 1:
            wanted.append((chars_per_verse - 1, "ping"))
        elif i > 0:
            wanted.append((chars_per_verse - 1, "ze"))
        for column, t in wanted:
            if (i, column) != (0, 1):
                hits += tone(v[column]) == t
                total += 1
    return hits, total


def tonal_pattern_holds(text: str, chars_per_verse: int) -> bool:
    """Whether the verses of ``text`` follow the regulated pattern (module docstring) for
    ``chars_per_verse`` 5 or 7, with the tones of :func:`tone`."""
    hits, total = _tonal_hits(text, chars_per_verse)
    return hits == total


def poem_checks(text: str, form: PoemForm) -> dict[str, bool]:
    """``{"well_formed", "rhymes", "tonal"}`` of one poem of ``form`` (``tonal`` is False for
    forms other than 5 or 7 characters per verse)."""
    return {
        "well_formed": is_well_formed(text, form),
        "rhymes": rhymes(text),
        "tonal": form.chars_per_verse in (5, 7) and tonal_pattern_holds(text, form.chars_per_verse),
    }


def compliance(poems: Sequence[str]) -> dict[str, float | int]:
    """Rhyme and tonal-pattern rates of ``poems`` (5/7-character regular poems only count).

    Returns ``{"poems": n, "rhyme": fraction of n whose even verses rhyme, "tonal": fraction
    whose tones follow the regulated pattern throughout, "tonal_positions": fraction of all the
    positions the pattern governs (2nd/4th/6th characters, verse ends) that fit it}``; n counts
    the poems that are well formed in one of the forms 5x4, 7x4, 5x8, 7x8. Raises
    ``ValueError`` when there is none.
    """
    from rnnflow.text.poetry import FORMS

    forms = list(FORMS.values())
    kept = [(p, f) for p in poems for f in forms if is_well_formed(p, f)]
    if not kept:
        raise ValueError("compliance: no poem of the forms 5x4, 7x4, 5x8, 7x8 given")
    hits = [_tonal_hits(p, f.chars_per_verse) for p, f in kept]
    return {
        "poems": len(kept),
        "rhyme": sum(rhymes(p) for p, _ in kept) / len(kept),
        "tonal": sum(h == t for h, t in hits) / len(kept),
        "tonal_positions": sum(h for h, _ in hits) / sum(t for _, t in hits),
    }


class ConstraintMask:
    """The ids allowed after a given prefix under ``constraints``, for one vocabulary.

    ``allowed(text)`` is a bool [V] mask for the character that follows ``text`` (the poem so
    far, without ``<bos>``). Raises :class:`ConstraintError` when the vocabulary cannot meet the
    constraints (an acrostic character the model does not know; no character of a needed tone or
    rhyme), naming what is missing.
    """

    def __init__(self, constraints: PoemConstraints, vocab: Vocabulary) -> None:
        self.constraints = constraints
        self.form_mask = FormMask(constraints.form, vocab)
        self.vocab = vocab
        form = constraints.form
        missing = list(dict.fromkeys(c for c in constraints.acrostic if c not in vocab))  # typed
        if missing:
            raise ConstraintError(
                f"ConstraintMask: the acrostic characters {missing} are not in the model's "
                "vocabulary"
            )
        size = len(vocab)
        hanzi = self.form_mask.allowed(0)
        self._group_of: dict[str, Tensor] = {}
        self._tone_of: dict[str, Tensor] = {
            "ping": torch.zeros(size, dtype=torch.bool),
            "ze": torch.zeros(size, dtype=torch.bool),
        }
        for i, s in enumerate(vocab.symbols):
            if not bool(hanzi[i]):
                continue
            if constraints.rhyme:
                g = rhyme_group(s)
                if g is not None:
                    self._group_of.setdefault(g, torch.zeros(size, dtype=torch.bool))[i] = True
            if constraints.tonal:
                t = tone(s)
                if t is not None:
                    self._tone_of[t][i] = True
        if constraints.rhyme and not self._group_of:
            raise ConstraintError(
                "ConstraintMask: no character of the vocabulary has a rhyme group: rhyme=True "
                "cannot be met"
            )
        if constraints.tonal and not (self._tone_of["ping"].any() and self._tone_of["ze"].any()):
            raise ConstraintError(
                "ConstraintMask: the vocabulary lacks level (平) or oblique (仄) characters: "
                "tonal=True cannot be met"
            )
        # position -> (verse, column) for hanzi slots
        self._where: list[tuple[int, int] | None] = []
        verse, column = 0, 0
        for kind in form.slots():
            if kind == "hanzi":
                self._where.append((verse, column))
                column += 1
            else:
                self._where.append(None)
                if kind in ("mid", "end"):
                    verse, column = verse + 1, 0
        self._acrostic = [vocab.index[ch] for ch in constraints.acrostic]

    def __len__(self) -> int:
        return len(self.form_mask)

    def _rhyme_mask(self, text: str) -> tuple[Tensor | None, list[int]]:
        """The ids of the poem's rhyme group (None: the first rhyme has no group), and the ids
        already used as rhymes."""
        done = verses(text) if text[-1:] in _SEPARATORS else verses(text)[:-1]
        used = [v[-1] for v in done[1::2]]
        if not used:  # the first rhyme: any character that has a group
            return torch.stack(list(self._group_of.values())).any(0), []
        group = rhyme_group(used[0])
        ids = [self.vocab.index[ch] for ch in used if ch in self.vocab]
        return (self._group_of.get(group) if group is not None else None), ids

    def allowed(self, text: str) -> Tensor:
        """bool [V]: the ids that may follow ``text`` (raises :class:`ConstraintError` when no
        id may, naming the position)."""
        position = len(text)
        mask = self.form_mask.allowed(position)
        where = self._where[position] if position < len(self._where) else None
        if where is None:
            return mask
        verse, column = where
        c, n = self.constraints, self.constraints.form.chars_per_verse
        mask = mask.clone()
        if c.acrostic and column == 0:
            only = torch.zeros_like(mask)
            only[self._acrostic[verse]] = True
            mask &= only
        used: list[int] = []
        if c.rhyme and verse % 2 == 1 and column == n - 1:
            rhyme, used = self._rhyme_mask(text)
            mask &= rhyme if rhyme is not None else torch.zeros_like(mask)
        if c.tonal:
            wanted = self._wanted_tone(text, verse, column)
            if wanted is not None:
                mask &= self._tone_of[wanted]
            elif verse == 0 and column == 1:  # the pattern's key: any character with a tone
                mask &= self._tone_of["ping"] | self._tone_of["ze"]
        if used:  # a rhyme character once, while the group has another that fits
            fresh = mask.clone()
            fresh[used] = False
            if bool(fresh.any()):
                mask = fresh
        if not bool(mask.any()):
            raise ConstraintError(
                f"ConstraintMask: no character of the vocabulary fits position {position} "
                f"(verse {verse + 1}, character {column + 1}) of {text!r} under {c}"
            )
        return mask

    def _wanted_tone(self, text: str, verse: int, column: int) -> Tone | None:
        n = self.constraints.form.chars_per_verse
        if column == n - 1:
            if verse % 2 == 1:
                return "ping"
            return "ze" if verse > 0 else None
        if column % 2 == 0 or (verse == 0 and column == 1):
            return None
        first = tone(verses(text)[0][1])
        return _required_tone(verse, column, first) if first is not None else None

    def check_prefix(self, text: str) -> None:
        """Raise :class:`ConstraintError` unless ``text`` can begin a poem under the
        constraints (the form's own checks first)."""
        self.form_mask.check_prefix(text)
        for position, ch in enumerate(text):
            i = self.vocab.index[ch]
            if not bool(self.allowed(text[:position])[i]):
                raise ConstraintError(
                    f"ConstraintMask: the prime {text!r} breaks the constraints at character "
                    f"{position} ({ch!r}): {self.constraints}"
                )
