"""Caches and downloads under concurrent runs, kills and damage: never half-read, built once."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import logging
import subprocess
import sys
import threading
import time
import zipfile

import pyarrow as pa
import pytest

from rnnlab.data import names
from rnnlab.data.forecasting import ETTDataModule
from rnnlab.data.multi30k import Multi30kDataModule
from rnnlab.data.names import NamesDataModule
from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.data.tokenizers import Vocabulary
from tests.conftest import ROOT
from tests.integration.test_text_data import imdb_module, write_imdb

# A child process that builds (or reads) the IMDb cache once the file `go` exists. Building
# the vocabulary is slowed down by argv[3] seconds, so two builds would overlap if nothing kept
# them apart; every build appends a line to builds.log.
CONCURRENT_SETUP = """
import json, sys, time
from pathlib import Path
from rnnlab.data.tokenizers import Vocabulary
from tests.integration.test_caches import digest
from tests.integration.test_text_data import imdb_module

tmp, me, pause = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
real_build = Vocabulary.build.__func__

def slow_build(cls, *args, **kwargs):
    with open(tmp / "builds.log", "a") as log:
        log.write(me + "\\n")
    time.sleep(pause)
    return real_build(cls, *args, **kwargs)

Vocabulary.build = classmethod(slow_build)
dm = imdb_module(tmp)
(tmp / f"ready-{me}").touch()
while not (tmp / "go").exists():
    time.sleep(0.01)
dm.prepare_data()
dm.setup()
print(json.dumps(digest(dm)))
"""


def digest(dm) -> dict:
    """A datamodule's vocabulary, split sizes and a hash of each split's ids and labels."""
    parts = (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set))
    return {
        "vocab": dm.vocab.tokens,
        **{
            name: [
                len(part),
                hashlib.sha256(
                    b"".join(s.numpy().tobytes() for s in part.sequences)
                    + part.labels.numpy().tobytes()
                ).hexdigest(),
            ]
            for name, part in parts
        },
    }


def test_two_processes_build_one_imdb_cache_once_and_read_the_same_data(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SETUP, str(tmp_path), str(i), "2"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for _ in range(6000):  # both children imported everything: start them together
        if all((tmp_path / f"ready-{i}").exists() for i in range(2)):
            break
        if any(child.poll() is not None for child in children):
            break
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
    results = [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]
    assert (tmp_path / "builds.log").read_text().count("\n") == 1  # built once
    assert results[0] == results[1]
    # the oracle: one process alone, in a cache of its own
    alone = imdb_module(tmp_path, cache_dir=str(tmp_path / "alone"))
    alone.setup()
    assert results[0] == digest(alone)
    assert [results[0][name][0] for name in ("train", "val", "test")] == [24, 8, 32]


def test_a_build_killed_half_way_leaves_nothing_that_is_read(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    (tmp_path / "go").touch()
    child = subprocess.Popen(
        [sys.executable, "-c", CONCURRENT_SETUP, str(tmp_path), "0", "600"], cwd=ROOT
    )
    try:
        for _ in range(6000):  # until it is building, holding the lock
            if (tmp_path / "builds.log").exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the child ended before it was killed"
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -9 and not imdb_module(tmp_path).cache_path.exists()
    dm = imdb_module(tmp_path)
    dm.setup()  # the lock died with its holder
    alone = imdb_module(tmp_path, cache_dir=str(tmp_path / "alone"))
    alone.setup()
    assert digest(dm) == digest(alone)
    left = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("."))
    assert left == []  # the killed build's temporary folder is gone


def built_cache(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    dm = imdb_module(tmp_path)
    dm.setup()
    return dm


def test_imdb_cache_cut_at_a_record_batch_is_detected_and_rebuilt(tmp_path, caplog):
    first = built_cache(tmp_path)
    (arrow,) = (first.cache_path / "test").glob("*.arrow")
    table = pa.ipc.open_stream(arrow.read_bytes()).read_all()
    with pa.ipc.new_stream(str(arrow), table.schema) as writer:  # what a kill left: 12 rows
        writer.write_table(table.slice(0, 12))
    again = imdb_module(tmp_path)
    with caplog.at_level(logging.WARNING):
        again.setup()
    assert len(again.test_set) == 32
    assert digest(again) == digest(first)
    assert str(first.cache_path) in caplog.text and "rebuilding" in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: __import__("shutil").rmtree(path / "test"),
        lambda path: (path / "vocab.json").write_text('["<pad>", "<unk>", "fi'),
        lambda path: (path / "manifest.json").unlink(missing_ok=True),
    ],
    ids=["missing-split", "half-written-vocab", "no-manifest"],
)
def test_imdb_cache_with_a_stale_marker_is_rebuilt(tmp_path, damage):
    first = built_cache(tmp_path)
    damage(first.cache_path)
    again = imdb_module(tmp_path)
    again.setup()
    assert digest(again) == digest(first)


def test_half_written_vocabulary_is_a_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('["<pad>", "<unk>", "fi')
    with pytest.raises(ValueError, match=r"vocab.json is not a complete vocabulary") as error:
        Vocabulary.load(path)
    assert str(path) in str(error.value) and "delete" in str(error.value)


# Writes a vocabulary with the file size limited, as a full disk or a kill mid-write would.
CUT_SHORT_SAVE = """
import resource, sys
from rnnlab.data.tokenizers import Vocabulary
Vocabulary(["<pad>", "<unk>", "old"]).save(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    Vocabulary(["<pad>", "<unk>", *(f"token{i}" for i in range(10000))]).save(sys.argv[1])
except OSError as error:
    print("failed:", error.strerror)
"""


def test_a_vocabulary_write_cut_short_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "vocab.json"
    result = subprocess.run(
        [sys.executable, "-c", CUT_SHORT_SAVE, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert result.stdout.startswith("failed:")
    assert Vocabulary.load(path).tokens == ["<pad>", "<unk>", "old"]
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left


def test_unwritable_cache_dir_names_the_key(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    dm = imdb_module(tmp_path, cache_dir=str(blocker / "cache"))
    with pytest.raises(ValueError, match="paths.cache_dir") as error:
        dm.setup()
    assert str(blocker / "cache") in str(error.value)


def names_zip(broken: bool) -> bytes:
    """The tutorial's data.zip layout; `broken` corrupts the last member (a cut download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for language, people in [
            ("English", "Smith\nJones\nTaylor\nBrown\nWilson\n"),
            ("French", "Dubois\nMoreau\nLaurent\nSimon\nMichel\n"),
            ("Polish", "Nowak\nKowalski\nWojcik\nKaminski\nWozniak\n"),
        ]:
            archive.writestr(f"data/names/{language}.txt", people)
    data = buffer.getvalue()
    if broken:  # flip bytes of the last member's content: its CRC check fails on extraction
        at = data.index(b"Nowak")
        data = data[:at] + b"XXXXX" + data[at + 5 :]
    return data


def test_an_interrupted_names_extraction_is_not_taken_for_the_data(tmp_path, monkeypatch):
    archive = tmp_path / "data.zip"
    archive.write_bytes(names_zip(broken=True))
    monkeypatch.setattr(names, "NAMES_URL", archive.as_uri())
    dm = NamesDataModule(cache_dir=str(tmp_path / "cache"), batch_size=4)
    with pytest.raises(Exception, match="CRC"):
        dm.setup()
    archive.write_bytes(names_zip(broken=False))
    dm = NamesDataModule(cache_dir=str(tmp_path / "cache"), batch_size=4)
    dm.setup()
    assert dm.languages == ["English", "French", "Polish"]


class CutShortServer(http.server.ThreadingHTTPServer):
    """Serves `files` by name; the first request of all is cut off half-way."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut = True
        super().__init__(("127.0.0.1", 0), CutShortHandler)


class CutShortHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        name = self.path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut, self.server.cut = self.server.cut, False
        self.wfile.write(body[: len(body) // 2] if cut else body)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def cut_short_server():
    """start(files) -> the base URL of a server that cuts its first download short."""
    servers = []

    def start(files: dict[str, bytes]) -> str:
        server = CutShortServer(files)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ett_file() -> bytes:
    rows = [
        f"2016-07-{1 + hour // 24:02d} {hour % 24:02d}:00,{hour},1,2,3,4,5,6" for hour in range(720)
    ]
    return ("date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT\n" + "\n".join(rows) + "\n").encode()


def shakespeare_file() -> bytes:
    return ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40).encode()


def multi30k_files() -> dict[str, bytes]:
    lines = {"de": "Ein Hund läuft.\nZwei Männer.\n", "en": "A dog runs.\nTwo men.\n"}
    return {
        f"{stem}.{language}.gz": gzip.compress(text.encode())
        for stem in ("train", "val", "test_2016_flickr")
        for language, text in lines.items()
    }


@pytest.mark.parametrize("data", ["ett", "shakespeare", "multi30k"])
def test_a_download_cut_short_is_an_error_and_never_cached(tmp_path, cut_short_server, data):
    cache = str(tmp_path / "cache")
    if data == "ett":
        url = cut_short_server({"ETTh1.csv": ett_file()}) + "/{file}"

        def make():
            return ETTDataModule(cache_dir=cache, url=url)

        def loaded(dm):
            return len(dm.path().read_bytes()) == len(ett_file())
    elif data == "shakespeare":
        url = cut_short_server({"input.txt": shakespeare_file()}) + "/input.txt"

        def make():
            return ShakespeareDataModule(cache_dir=cache, url=url, batch_size=2, bptt=8)

        def loaded(dm):
            dm.setup()
            return len(dm.train_ids) + len(dm.val_ids) == len(shakespeare_file())
    else:
        url = cut_short_server(multi30k_files()) + "/{file}"

        def make():
            return Multi30kDataModule(cache_dir=cache, url=url, min_freq=1, batch_size=2)

        def loaded(dm):
            dm.setup()
            return [len(dm.datasets[split]) for split in ("train", "val", "test")] == [2, 2, 2]

    with pytest.raises(FileNotFoundError, match="data.data_dir"):
        make().prepare_data()
    dm = make()
    dm.prepare_data()  # the second request is served whole
    assert loaded(dm)
