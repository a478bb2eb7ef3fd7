"""One downloader for every data set: atomic, checksummed when asked, the same offline error."""

from __future__ import annotations

import hashlib
import re

import pytest

from rnnlab.data import names
from rnnlab.data.forecasting import ETTDataModule
from rnnlab.data.multi30k import Multi30kDataModule
from rnnlab.data.names import NamesDataModule
from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.data.storage import download
from rnnlab.errors import ConfigError, MissingFileError
from tests.integration.test_caches import names_zip

BODY = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_a_matching_checksum_caches_the_file(tmp_path):
    source = tmp_path / "input.txt"
    source.write_bytes(BODY)
    target = tmp_path / "cache" / "input.txt"
    digest = hashlib.sha256(BODY).hexdigest()
    assert download(source.as_uri(), target, "x", sha256=digest.upper()) == target
    assert target.read_bytes() == BODY


def test_a_checksum_mismatch_names_url_and_digests_and_caches_nothing(tmp_path):
    source = tmp_path / "input.txt"
    source.write_bytes(BODY)
    target = tmp_path / "cache" / "input.txt"
    expected = hashlib.sha256(b"another text").hexdigest()
    with pytest.raises(ConfigError) as error:
        download(source.as_uri(), target, "tinyshakespeare/input.txt", sha256=expected)
    message = str(error.value)
    assert source.as_uri() in message and expected in message
    assert hashlib.sha256(BODY).hexdigest() in message
    assert [path.name for path in target.parent.iterdir()] == ["input.txt.lock"]


def offline(tmp_path, monkeypatch, data, url):
    """The data module of `data` reading its files from `url`, with no local copy."""
    cache = str(tmp_path / "cache")
    if data == "names":
        monkeypatch.setattr(names, "NAMES_URL", url)
        return NamesDataModule(cache_dir=cache)
    if data == "shakespeare":
        return ShakespeareDataModule(cache_dir=cache, url=url)
    if data == "ett":
        return ETTDataModule(cache_dir=cache, url=url)
    return Multi30kDataModule(cache_dir=cache, url=url)


@pytest.mark.parametrize(
    "data, hint",
    [
        ("names", "names/*.txt"),
        ("shakespeare", "tinyshakespeare/input.txt"),
        ("ett", "ett/ETTh1.csv"),
        ("multi30k", "multi30k/ (train, val and test2016 .de and .en)"),
    ],
)
def test_every_data_set_says_the_same_when_offline(tmp_path, monkeypatch, data, hint):
    url = (tmp_path / "nowhere").as_uri() + "/{file}"
    with pytest.raises(MissingFileError) as error:
        offline(tmp_path, monkeypatch, data, url).prepare_data()
    pattern = (
        rf"could not download {re.escape((tmp_path / 'nowhere').as_uri())}/\S+: .+\. Point "
        r"data\.data_dir \(or the RNNLAB_DATA_DIR environment variable\) at a folder holding "
        rf"{re.escape(hint)}\."
    )
    assert re.fullmatch(pattern, str(error.value)), str(error.value)


def test_names_archive_is_downloaded_once_then_unpacked_from_the_cache(tmp_path, monkeypatch):
    source = tmp_path / "data.zip"
    source.write_bytes(names_zip(broken=False))
    monkeypatch.setattr(names, "NAMES_URL", source.as_uri())
    folder = names.download_names(tmp_path / "cache")
    assert (tmp_path / "cache" / "names-tutorial.zip").read_bytes() == source.read_bytes()
    assert sorted(path.name for path in folder.glob("*.txt")) == [
        "English.txt",
        "French.txt",
        "Polish.txt",
    ]
    source.unlink()  # offline now: the unpacked cache is read, nothing is fetched
    assert names.download_names(tmp_path / "cache") == folder
