"""fortunes-zh corpora (fake files in tmp_path, and the real package when installed) and forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnflow.text.corpus import Vocabulary
from rnnflow.text.poetry import (
    FORMS,
    FORTUNES_DIR,
    FormMask,
    PoemForm,
    is_hanzi,
    is_well_formed,
    load_builtin_corpus,
    strip_poem_header,
)

TANG = (
    "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n"
    "%\n\x1b[32m《登鹳雀楼》\x1b[m\n\x1b[33m作者：王之涣\x1b[m\n白日依山尽，黄河入海流。\n  \n"
    "欲穷千里目，更上一层楼。\n%\n"
)
SONG = "题目:《塞上》\n作者:柳开（９４６－９９９）\n鸣骹直上一千尺，天静无风声更干。\n%\n"


def test_strip_poem_header_tang_and_song_styles() -> None:
    assert strip_poem_header("《题》\n作者：某\n甲乙，丙丁。") == "甲乙，丙丁。"
    assert strip_poem_header("题目:《塞上》\n作者:柳开\n甲乙，丙丁。") == "甲乙，丙丁。"
    assert strip_poem_header("甲乙，丙丁。\n作者：不是标题") == "甲乙，丙丁。\n作者：不是标题"


def test_load_builtin_corpus_from_fake_fortune_files(tmp_path: Path) -> None:
    (tmp_path / "tang300").write_text(TANG, encoding="utf-8")
    (tmp_path / "song100").write_text(SONG, encoding="utf-8")
    poems = load_builtin_corpus("tang-song", fortunes_dir=tmp_path)
    assert poems == [
        "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
        "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
        "鸣骹直上一千尺，天静无风声更干。",
    ]
    assert all(is_well_formed(p, FORMS["5x4"]) for p in poems[:2])


def test_missing_package_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tang300 not found: install Debian's fortunes-zh"):
        load_builtin_corpus("tang", fortunes_dir=tmp_path)
    with pytest.raises(ValueError, match=r"name must be one of \['song', 'tang', 'tang-song'\]"):
        load_builtin_corpus("ming", fortunes_dir=tmp_path)


@pytest.mark.skipif(
    not (FORTUNES_DIR / "tang300").is_file(),
    reason="Debian's fortunes-zh is not installed (apt-get install fortunes-zh)",
)
def test_real_tang_corpus() -> None:
    poems = load_builtin_corpus("tang")
    assert len(poems) == 313
    assert not any("\x1b" in p or "作者" in p or p.startswith("《") for p in poems)
    assert sum(is_well_formed(p, FORMS["5x4"]) for p in poems) >= 30
    assert sum(is_well_formed(p, FORMS["7x4"]) for p in poems) >= 50
    assert poems[0].startswith("兰叶春葳蕤，桂华秋皎洁。")


def test_forms_parse_slots_and_well_formedness() -> None:
    form = PoemForm.parse("5x4")
    assert (form.chars_per_verse, form.verses, form.name) == (5, 4, "5x4")
    slots = form.slots()
    assert len(slots) == 4 * 5 + 4 + 1 + 1  # characters, punctuation, one line break, <eos>
    assert slots[5] == "mid" and slots[11] == "end" and slots[12] == "newline"
    assert slots[-2:] == ["end", "eos"]
    assert is_well_formed("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼？", form)
    assert not is_well_formed("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼", form)
    assert not is_well_formed("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", form)
    assert not is_well_formed("白日依山a，黄河入海流。\n欲穷千里目，更上一层楼。", form)
    assert not is_well_formed("白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。\n", form)
    assert is_hanzi("月") and not is_hanzi("，") and not is_hanzi("a")
    with pytest.raises(ValueError, match=r"expected CHARSxVERSES such as '5x4', got '5-4'"):
        PoemForm.parse("5-4")
    with pytest.raises(ValueError, match=r"an even number of verses >= 2, got 5x3"):
        PoemForm(5, 3)


def test_form_mask_needs_punctuation_and_hanzi_and_checks_the_prime() -> None:
    with pytest.raises(ValueError, match=r"the vocabulary lacks '，', '\\n', '。'"):
        FormMask(FORMS["5x4"], Vocabulary.build(["abc"]))
    with pytest.raises(ValueError, match=r"the vocabulary has no CJK ideograph"):
        FormMask(FORMS["5x4"], Vocabulary.build(["ab，。\n"]))
    vocab = Vocabulary.build(["白日依山尽，黄河入海流。\n欲穷千里目？"])
    mask = FormMask(FORMS["5x4"], vocab)
    assert mask.allowed(0)[vocab.index["白"]] and not mask.allowed(0)[vocab.index["，"]]
    assert mask.allowed(11)[vocab.index["？"]] and mask.allowed(len(mask) - 1)[vocab.eos_id]
    assert not mask.allowed(0)[vocab.unk_id]
    mask.check_prefix("白日依山尽，")
    with pytest.raises(ValueError, match=r"character 5 is '黄', expected '，'"):
        mask.check_prefix("白日依山尽黄")
    with pytest.raises(ValueError, match=r"leaves nothing to write in a 5x4 poem"):
        mask.check_prefix("白" * 30)
