"""Real pairs of a photograph and its doctored version: a folder with a ``manifest.json``, and the Commons originals.

The manifest lists cases as ``{"id", "original", "altered", "what"}`` (``what`` is what historians record), beside
``name``, ``source`` and ``license`` for the set. :func:`fetch_commons_pair` downloads the public-domain Yezhov
pair from Wikimedia Commons once into a cache folder and writes such a manifest beside it, so that one reader
serves both.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retouch.errors import InputError
from retouch.io.write import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"
COMMONS_URL = "https://commons.wikimedia.org/wiki/Special:FilePath/"
COMMONS_URL_VARIABLE = "RETOUCH_COMMONS_URL"  # another mirror (or a test server) of Special:FilePath
CACHE_VARIABLE = "RETOUCH_CACHE"
COMMONS_FILES = {
    "original": "Voroshilov,_Molotov,_Stalin,_with_Nikolai_Yezhov.jpg",
    "altered": "The_Commissar_Vanishes_2.jpg",
}
COMMONS_CASE = {
    "id": "yezhov_commons",
    "what": "Voroshilov, Molotov, Stalin and Nikolai Yezhov at the Moscow-Volga canal, April 1937; after Yezhov's "
            "arrest and execution (1940) he was painted out of the photograph and replaced by water.",
}
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class HistoricalCase:
    id: str
    original: Path
    altered: Path
    what: str


def read_pairs(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], list[HistoricalCase]]:
    """The set's description and its cases, from ``folder/manifest.json``; a missing or malformed manifest, or a
    case whose files are missing, is refused naming the folder and what to fix."""
    root = Path(folder)
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{root}: no {MANIFEST} here; a historical folder lists its pairs in {MANIFEST} as "
                         '{"cases": [{"id", "original", "altered", "what"}]}') from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable JSON manifest ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cases"), list) or not manifest["cases"]:
        raise InputError(f"{path}: expected an object with a non-empty list 'cases'")
    cases = []
    for index, entry in enumerate(manifest["cases"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("original", "altered")):
            raise InputError(f"{path}: case {index + 1} needs 'original' and 'altered' file names")
        case = HistoricalCase(id=str(entry.get("id") or f"case-{index + 1}"), original=root / entry["original"],
                              altered=root / entry["altered"], what=str(entry.get("what") or ""))
        for file in (case.original, case.altered):
            if not file.is_file():
                raise InputError(f"{path}: case {case.id!r} names {file.name}, which is not in {root}")
        cases.append(case)
    return manifest, cases


def cache_folder() -> Path:
    """Where downloaded originals are kept: ``$RETOUCH_CACHE``, else ``$XDG_CACHE_HOME/retouch`` or
    ``~/.cache/retouch``."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "retouch"


class OfflineError(InputError):
    """A download could not be made (no network, the server refused): the message says what to do instead."""


def _download(url: str, *, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "retouch (teaching gallery; one-time download)"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an https or test URL
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise OSError(f"more than {MAX_DOWNLOAD_BYTES // 2**20} MB")
    return data


def fetch_commons_pair(*, cache: str | os.PathLike[str] | None = None, base_url: str | None = None,
                       timeout: float = 20.0) -> Path:
    """The folder holding the Commons Yezhov pair and its manifest, downloading what the cache lacks.

    Files already in the cache are used as they are (no network); a file is written only once complete. When a
    download fails, :class:`OfflineError` names the file, the reason, and how to proceed without the network.
    """
    folder = Path(cache) if cache is not None else cache_folder() / "commons"
    base = base_url or os.environ.get(COMMONS_URL_VARIABLE) or COMMONS_URL
    folder.mkdir(parents=True, exist_ok=True)
    for name in COMMONS_FILES.values():
        target = folder / name
        if target.is_file() and target.stat().st_size > 0:
            continue
        url = base + urllib.parse.quote(name)
        try:
            data = _download(url, timeout=timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", None) or error
            raise OfflineError(
                f"could not download {name} from {base} ({reason}); the gallery's historical section needs it once. "
                f"Without a network, put the file in {folder} by hand, or give a folder of pairs with "
                "--historical DIR; the rest of the gallery is built without it") from None
        atomic_write_bytes(target, data)
    atomic_write_json(folder / MANIFEST, {
        "name": "The Commissar Vanishes: Yezhov at the Moscow-Volga canal (Wikimedia Commons)",
        "source": base, "license": "public domain (PD-Russia-1996, per Wikimedia Commons)",
        "cases": [{**COMMONS_CASE, **COMMONS_FILES}],
    })
    return folder
