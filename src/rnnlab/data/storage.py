"""Caches, downloads and state files that are never read half-written.

A cache directory is built in a temporary directory beside its final place and renamed into
place under a file lock, so concurrent runs (SLURM tasks, joblib workers, DDP processes that
each call `prepare_data`) build it once: the others wait for the lock, then read the finished
cache. The build's `manifest.json` records what the cache holds (row counts); a cache whose
content does not match its manifest, or that has none, is rebuilt. Single files (downloads,
vocabularies) are written to a temporary name and renamed with `os.replace`. Every data set
downloads through `download`, so a failed transfer reads the same everywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
T = TypeVar("T")


class StaleCacheError(ValueError):
    """A cache's content does not match its manifest (cut short, or changed since)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `path` so that a reader sees the old file or the whole new one, never a part."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the rename must not reach the disk before the data
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def make_cache_folder(folder: Path) -> None:
    """Create `folder`; an error naming the config key if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(folder, os.W_OK | os.X_OK) else "not writable"
    except OSError as error:
        problem = error.strerror or str(error)
    if problem:
        raise ConfigError(
            f"cannot write the cache folder {folder} ({problem}): point paths.cache_dir "
            "(or data.cache_dir) at a writable folder"
        )


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold the lock of `path` (a cache file or folder), saying so if another process has it."""
    make_cache_folder(path.parent)
    lock = FileLock(f"{path}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process to finish %s", path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_orphans(path: Path) -> None:
    """Remove what killed builds of `path` left; only call with `path`'s lock held (no live
    build can be writing them then)."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)


def fetch(url: str) -> bytes:
    """The whole body at `url`; OSError if the transfer fails or ends early."""
    try:
        with urllib.request.urlopen(url) as response:
            return response.read()
    except http.client.HTTPException as error:  # IncompleteRead: the connection ended early
        raise OSError(f"{type(error).__name__}: {error}") from error


def download(
    url: str,
    path: Path,
    local_hint: str,
    decode: Callable[[bytes], bytes] | None = None,
    sha256: str | None = None,
) -> Path:
    """`path`, fetched from `url` once, whole, even when several processes ask at the same time.

    `decode` turns the body into the file's bytes (e.g. `gzip.decompress`); `sha256` is the
    digest of the body, for a source that publishes one: a mismatch is an error and nothing is
    cached. A failed transfer is the one offline error of every data set, pointing at a local
    copy: `local_hint` says what `data.data_dir` should hold.
    """
    if path.is_file():
        return path
    with cache_lock(path):
        if path.is_file():  # another process fetched it while this one waited
            return path
        remove_orphans(path)
        try:
            body = fetch(url)
            data = decode(body) if decode else body
        except (OSError, EOFError, zlib.error) as error:  # EOFError, zlib.error: a cut stream
            raise MissingFileError(
                f"could not download {url}: {error}. Point data.data_dir (or the RNNLAB_DATA_DIR "
                f"environment variable) at a folder holding {local_hint}."
            ) from error
        actual = hashlib.sha256(body).hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise ConfigError(
                f"{url} gave data with sha256 {actual}, not the expected {sha256}: nothing was "
                "cached (the source changed, or the transfer was corrupted); point "
                f"data.data_dir at a folder holding {local_hint}"
            )
        atomic_write_bytes(path, data)
    return path


def _read(final: Path, load: Callable[[Path, dict], T]) -> tuple[T | None, str]:
    """(what `load` read, "") from a complete cache, else (None, why it is not complete)."""
    if not final.is_dir():
        return None, "missing"
    try:
        manifest = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
        return load(final, manifest), ""
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{type(error).__name__}: {error}"


def load_or_build(final: Path, build: Callable[[Path], dict], load: Callable[[Path, dict], T]) -> T:
    """`load(final, manifest)` of the cache folder `final`, built first if absent or damaged.

    `build(folder)` fills an empty temporary folder and returns the manifest; `load` reads the
    cache and raises OSError, ValueError, KeyError or TypeError when it does not match the
    manifest (then the cache is rebuilt, under the lock).
    """
    loaded, _ = _read(final, load)
    if loaded is not None:
        return loaded
    with cache_lock(final):
        loaded, problem = _read(final, load)  # another process may have built it meanwhile
        if loaded is not None:
            return loaded
        if final.exists():
            log.warning("cache %s is incomplete or damaged (%s); rebuilding it", final, problem)
            aside = Path(
                tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
            )
            os.replace(final, aside / final.name)  # readers holding its files keep them
            shutil.rmtree(aside, ignore_errors=True)
        remove_orphans(final)
        temporary = Path(
            tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        )
        try:
            manifest = build(temporary)
            atomic_write_text(temporary / MANIFEST, json.dumps(manifest, sort_keys=True))
            os.rename(temporary, final)  # readers see no cache or the whole cache
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return load(final, manifest)
