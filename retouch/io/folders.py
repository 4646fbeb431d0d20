"""An output folder's life: checked and created, prepared for a run, rolled back when the run fails, published.

Two kinds of folder, two policies:

- A folder the user names (``retouch analyze -o OUT``) may hold their own files and the inputs: a run prepares it
  (:func:`prepared_folder`), writes its files into it, and on failure removes exactly what it wrote. The file
  written last (``report.json``) vouches for the others: it goes first when a run starts, so a folder never
  mixes two runs under one report.
- A folder retouch owns whole (an item of a batch or of a web-service job) is written under a hidden staging
  name beside its place (:func:`staging_folder`) and renamed into place once complete (:func:`publish`), or thrown
  away (:func:`discard`): readers see the previous complete folder or the new one, never a half-written one.

Every refusal is an :class:`retouch.errors.InputError` naming the folder and the option to change.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from retouch.errors import InputError

FULL_DISK = {errno.ENOSPC, errno.EDQUOT}


def require_output_folder(out_dir: str | os.PathLike[str], file_names: Iterable[str] = (), *,
                          option: str = "-o/--out", create: bool = True) -> Path:
    """Create (if needed) and return the output folder ``out_dir``, refusing one retouch cannot write into.

    Refused: a path that exists and is not a folder, a folder that cannot be created or written to, and a folder
    where one of ``file_names`` (the files the command writes) exists as something other than a file, which no
    atomic write can replace. ``option`` is what the messages tell the user to change. With ``create=False``
    nothing is created: the checks an existing path allows are made, so that a command can refuse a bad output
    folder before slow preparations (connecting to a cluster) and create it only once they have succeeded.
    """
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: the output path exists and is not a folder; choose another {option}",
                         path=str(folder), code="bad_output")
    if folder.is_symlink() and not folder.exists():  # mkdir would say only "File exists", which it does not
        raise InputError(f"{folder}: the output path is a symbolic link to {os.readlink(folder)}, which does not "
                         f"exist; create that folder, or choose another {option}", path=str(folder),
                         code="bad_output")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{folder}: cannot create the output folder ({error.strerror}); choose another "
                             f"{option}", path=str(folder), code="bad_output") from None
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: the output folder is not writable; choose another {option}",
                         path=str(folder), code="bad_output")
    for name in file_names:
        target = folder / name
        if target.exists() and not target.is_file():
            raise InputError(f"{target}: retouch writes a file here but a folder (or other non-file) is in the "
                             f"way; remove it or choose another {option}", path=str(target), code="bad_output")
    return folder


@contextmanager
def prepared_folder(out_dir: str | os.PathLike[str], names: Collection[str], *, last: str,
                    owned: Collection[str] = (), inputs: Collection[str] = (),
                    option: str = "-o/--out") -> Iterator[Path]:
    """The folder ``out_dir``, prepared for a run that writes the files ``names`` (``last`` among them, written
    last); if the ``with`` block fails, what the run wrote goes, and so do the folders it created.

    Preparing refuses a folder where a file of ``names`` would overwrite one of ``inputs`` (paths), removes an
    old ``last`` (it must not vouch for a half-rewritten folder), then the files of ``owned`` (every name such a
    run can write) that this run will not rewrite: they would sit beside the new ``last`` as if they belonged to
    it. A file that is one of ``inputs`` is never removed. Without ``last`` a folder's files belong to no run,
    so a failure (a full disk, an interrupt) leaves none of them. A full disk is the user's to fix, so it is an
    :class:`InputError` naming the folder (exit 2 on the command line), not an internal error.
    """
    created = list(_missing(Path(out_dir)))  # deepest first
    input_paths = {os.path.realpath(path) for path in inputs}
    folder, prepared = Path(out_dir), False
    try:
        folder = _prepare(out_dir, names, last=last, owned=owned, input_paths=input_paths, option=option)
        prepared = True
        yield folder
    except BaseException as error:
        # a refusal comes before anything changed (nothing to undo); an interrupt while the old run's files were
        # being cleared away, once its ``last`` had gone, would leave them belonging to no run
        if not prepared and not (isinstance(error, KeyboardInterrupt) and not (folder / last).exists()):
            raise
        for name in names if prepared else owned:
            written = folder / name
            if written.is_file() and os.path.realpath(written) not in input_paths:
                written.unlink()
        for new in created:
            try:
                new.rmdir()
            except OSError:  # not empty: someone else's files arrived meanwhile
                break
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            raise InputError(f"{folder}: no space left on device writing the report (nothing was kept); free some "
                             f"space or choose another {option}", path=str(folder), code="no_space") from None
        raise


def _missing(folder: Path) -> Iterator[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return
        yield candidate


def _prepare(out_dir: str | os.PathLike[str], names: Collection[str], *, last: str, owned: Collection[str],
             input_paths: set[str], option: str) -> Path:
    folder = require_output_folder(out_dir, names, option=option)
    for name in names:
        if os.path.realpath(folder / name) in input_paths:
            raise InputError(f"{folder / name}: writing the report here would overwrite an input; "
                             "choose another output folder")
    stale = folder / last
    if stale.exists():
        stale.unlink()
    for name in sorted(set(owned) - set(names)):
        old = folder / name
        if old.is_file() and os.path.realpath(old) not in input_paths:
            old.unlink()
    return folder


STAGING_SUFFIX = ".partial"


def staging_folder(final: str | os.PathLike[str], attempt: str) -> Path:
    """Where a folder retouch owns is written by one attempt before :func:`publish` puts it at ``final``: beside
    it, hidden, named for the attempt.

    The leading dot keeps the name apart from every item id, which never starts with one
    (:func:`retouch.run.manifest.item_id`): as ``x.partial``, item ``x`` would be written in item
    ``x.partial``'s folder, clearing away that item's finished reports. The attempt's name keeps two attempts at
    one item apart (a worker orphaned by a killed server, and the restarted server's): in one shared folder each
    cleared away and published the other's half-written files.
    """
    final = Path(final)
    return final.with_name(f".{final.name}.{attempt}{STAGING_SUFFIX}")


def begin_staging(final: str | os.PathLike[str], *, option: str = "-o/--out") -> Path:
    """A new, empty staging folder for ``final`` (made, with its parents); refused when ``final`` is something
    other than a folder, which publishing could not replace. Staging folders that interrupted attempts left are
    not touched here (another attempt may still be writing one): :func:`stale_staging_folders` finds them for
    the sweep a coordinator makes when no attempt can be running."""
    final = Path(final)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise InputError(f"{final}: retouch writes a folder here but a file (or link) is in the way; remove it "
                         f"or choose another {option}", path=str(final), code="bad_output")
    staged = staging_folder(final, secrets.token_hex(8))
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.mkdir()
    return staged


def stale_staging_folders(parent: str | os.PathLike[str]) -> list[Path]:
    """The staging folders (:func:`staging_folder`) directly under ``parent``: after a crash, what no running
    attempt will publish."""
    folder = Path(parent)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if path.name.startswith(".") and path.name.endswith(STAGING_SUFFIX) and path.is_dir()
                  and not path.is_symlink())


def publish(staged: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Put the complete folder ``staged`` at ``final``, in place of the folder there (an earlier run's)."""
    final = Path(final)
    shutil.rmtree(final, ignore_errors=True)
    Path(staged).rename(final)
    return final


def discard(staged: str | os.PathLike[str], *, emptied: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Throw away the staging folder ``staged``, then each folder of ``emptied`` (in order) that is left empty."""
    shutil.rmtree(staged, ignore_errors=True)
    for folder in emptied:
        try:
            Path(folder).rmdir()
        except OSError:  # not empty (or gone): the ones above it are not empty either
            break


@contextmanager
def removed_on_failure(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """``folder``, removed whole if the ``with`` block fails: a refused request leaves nothing on disk."""
    try:
        yield Path(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
