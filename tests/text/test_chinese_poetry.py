"""The chinese-poetry loader on small archives written here, in the npm package's layout."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from rnnflow.text import chinese_poetry as cp
from rnnflow.text.chinese_poetry import (
    PoetryArchiveError,
    PoetryArchiveNotFoundError,
    load_chinese_poetry,
)
from rnnflow.text.config import CharLMConfig
from rnnflow.text.corpus import CorpusError
from rnnflow.text.sources import filter_forms, load_documents

ROOT = "package/dist/quantangshi"


def poem(pid: str, *paragraphs: str, author: str = "李白", title: str = "題") -> dict:
    return {"author": author, "paragraphs": list(paragraphs), "title": title, "id": pid}


TANG = [
    poem("a", "牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。", title="靜夜思"),
    poem("b", "白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。", author="王之渙"),
    poem("c", "今宵冬律盡，來朝麗景新。", "綬吐芽猶嫩，冰□已鏤津。"),  # damaged: □
    poem("d", "春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"),  # flagged below
    poem("e", "牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"),  # duplicate of a
    poem("f", "千山鳥飛絕（一作盡），萬徑人蹤滅。"),  # damaged: an editorial note
    poem("g", "红豆生南国，春来发几枝。", "愿君多采撷，此物最相思。"),  # already simplified
    poem("h"),  # no text
]
FLAGGED = [{**TANG[3], "error_type": ["内容存疑"]}]
SONG = [poem("s1", "明月幾時有，把酒問青天。")]


def make_archive(folder: Path, members: dict[str, object] | None = None) -> Path:
    """A gzip tarball laid out like ``npm pack chinese-poetry``."""
    if members is None:
        members = {
            f"{ROOT}/poet.tang.0.json": TANG[:4],
            f"{ROOT}/poet.tang.1000.json": TANG[4:],
            f"{ROOT}/error/poet.tang.0.json": FLAGGED,
            f"{ROOT}/poet.song.0.json": SONG,
            "package/package.json": {"name": "chinese-poetry"},
        }
    path = folder / cp.ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cleaning_drops_flagged_damaged_duplicates_and_converts_to_simplified(
    tmp_path: Path,
) -> None:
    archive = make_archive(tmp_path)
    corpus = load_chinese_poetry(archive=archive, sha256=sha(archive))
    assert corpus.documents == [
        "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
        "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
        "红豆生南国，春来发几枝。\n愿君多采撷，此物最相思。",
    ]
    assert corpus.dropped == {"flagged": 1, "damaged": 3, "duplicate": 1}
    assert [p.id for p in corpus.poems] == ["a", "b", "g"]
    assert corpus.poems[0].title == "静夜思" and corpus.poems[1].author == "王之涣"


def test_traditional_script_keeps_the_archive_characters(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    corpus = load_chinese_poetry(archive=archive, sha256=sha(archive), script="traditional")
    assert corpus.documents[0] == "牀前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"
    assert corpus.script == "traditional"


def test_song_follows_tang_when_asked(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    corpus = load_chinese_poetry(("tang", "song"), archive=archive, sha256=sha(archive))
    assert corpus.documents[-1] == "明月几时有，把酒问青天。"
    assert [p.dynasty for p in corpus.poems] == ["tang"] * 3 + ["song"]


def test_a_wrong_archive_is_refused_naming_both_hashes(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    with pytest.raises(
        PoetryArchiveError, match=rf"sha256 {sha(archive)}, expected {cp.ARCHIVE_SHA256}"
    ):
        load_chinese_poetry(archive=archive)


def test_offline_without_an_archive_names_npm_pack_and_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNFLOW_DATA_DIR", raising=False)
    monkeypatch.setattr(cp, "NPM_COMMAND", "no-such-npm-client")
    with pytest.raises(
        PoetryArchiveNotFoundError, match=r"npm pack chinese-poetry@2\.0\.1.*--data-dir"
    ):
        load_chinese_poetry(data_dir=tmp_path / "none")
    with pytest.raises(PoetryArchiveNotFoundError, match=r"downloading is off.*npm pack"):
        load_chinese_poetry(data_dir=tmp_path / "none", download=False)


def test_a_failing_npm_pack_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """npm present but the registry unreachable: the error names npm pack's failure."""
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'npm error code ENOTFOUND' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cp, "NPM_COMMAND", str(fake))
    dest = tmp_path / "data"
    with pytest.raises(
        PoetryArchiveNotFoundError, match=r"exit 1: npm error code ENOTFOUND.*--data-dir"
    ):
        cp.fetch_archive(dest)
    assert list(dest.iterdir()) == []


def test_npm_pack_fetch_is_verified_and_moved_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_archive(tmp_path)
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    # npm pack SPEC --pack-destination DIR
    fake.write_text(f'#!/bin/sh\ncp "{source}" "$4/"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(cp, "NPM_COMMAND", str(fake))
    dest = tmp_path / "data"
    with pytest.raises(PoetryArchiveError, match="expected " + cp.ARCHIVE_SHA256):
        cp.fetch_archive(dest)
    assert list(dest.iterdir()) == []  # the wrong bytes were not kept
    assert cp.fetch_archive(dest, sha256=sha(source)) == dest / cp.ARCHIVE_NAME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNFLOW_DATA_DIR", raising=False)
    assert cp.find_archive(dest) == dest / cp.ARCHIVE_NAME
    assert cp.find_archive(tmp_path / "elsewhere") is None


def test_an_archive_with_another_layout_is_refused(tmp_path: Path) -> None:
    archive = make_archive(tmp_path, {"package/dist/poems.json": TANG})
    with pytest.raises(PoetryArchiveError, match=r"no package/dist/quantangshi/poet.*\['tang'\]"):
        load_chinese_poetry(archive=archive, sha256=sha(archive))
    bad = make_archive(tmp_path, {f"{ROOT}/poet.tang.0.json": [{"paragraphs": "一二三"}]})
    with pytest.raises(PoetryArchiveError, match="entry 0: paragraphs must be a list of strings"):
        load_chinese_poetry(archive=bad, sha256=sha(bad))
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(PoetryArchiveError, match="not a gzip tarball"):
        load_chinese_poetry(archive=junk, sha256=sha(junk))


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dynasties must be a non-empty list.*\['ming'\]"):
        load_chinese_poetry(("ming",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"script must be one of \['simplified', 'traditional'\]"):
        load_chinese_poetry(script="pinyin")  # type: ignore[arg-type]
    only_damaged = make_archive(tmp_path, {f"{ROOT}/poet.tang.0.json": [TANG[2]]})
    with pytest.raises(CorpusError, match="survived the cleaning"):
        load_chinese_poetry(archive=only_damaged, sha256=sha(only_damaged))


def test_config_corpus_and_form_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_archive(tmp_path)
    monkeypatch.setattr(cp, "ARCHIVE_SHA256", sha(archive))
    config = CharLMConfig(corpus="tang-full", data_dir=str(tmp_path), forms=("5x4",))
    assert len(load_documents(config)) == 3
    assert filter_forms(["春眠不觉晓，处处闻啼鸟。", "一二"], ("5x2",)) == [
        "春眠不觉晓，处处闻啼鸟。"
    ]
    with pytest.raises(
        CorpusError, match=r"none of the 1 documents is a poem of the forms \['7x4'\]"
    ):
        filter_forms(["一二"], ("7x4",))
    with pytest.raises(
        ValueError, match=r"forms are CHARSxVERSES names such as '5x8', got \['five'\]"
    ):
        CharLMConfig(forms=("five",))


@pytest.mark.skipif(
    cp.find_archive() is None, reason="chinese-poetry-2.0.1.tgz not in the user cache"
)
def test_real_archive_counts() -> None:
    corpus = load_chinese_poetry(download=False)
    assert len(corpus.poems) == 50024
    assert corpus.dropped == {"flagged": 6680, "damaged": 83, "duplicate": 820}
    assert all("□" not in d for d in corpus.documents)
    assert os.path.basename(str(cp.find_archive())) == cp.ARCHIVE_NAME
