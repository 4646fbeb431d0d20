"""Submitting analyses, comparisons and batches; polling, listing, deleting jobs; fetching their files."""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import require_key, settings, store
from api.errors import ApiError
from api.schemas import ErrorResponse, JobCreated, JobList, JobState, JobStatus, Plan, PlannedItem
from api.settings import Settings
from api.store import UPLOADS, JobStore
from api.uploads import (
    check_upload,
    client_file_name,
    extract_archive,
    items_from_entries,
    manifest_entries,
    require_memory,
    save_upload,
    screen_image,
)
from api.workers import item_folder, job_folder
from retouch.errors import InputError
from retouch.io import MAX_PIXELS_VARIABLE, ImageHeader, load_image
from retouch.io.folders import removed_on_failure
from retouch.report.visual import jpeg_bytes, shrink
from retouch.run.checks import detector_selection
from retouch.run.item import ANALYZE, COMPARE, Item, ItemOptions
from retouch.run.manifest import Planned, item_id, pairs_by_name, unique_items

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 408, 413, 415, 422, 431, 503, 507)}
router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)
PREVIEW_SIDE = 2400
_preview_slots = threading.BoundedSemaphore(2)
SQLITE_MAX_INTEGER = 2**63 - 1  # a larger OFFSET makes sqlite3 raise OverflowError: a 500 instead of a 422
INPUT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "WEBP": "image/webp",
               "BMP": "image/bmp"}  # the formats retouch.io records in a report's inputs
# the artifacts' names (report.html, suspect_mask.png, grain.png...); bounded, as a name longer than the file
# system takes makes the lookup on disk raise instead of answering "no such file"
FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.(png|gif|json|html)$")


def _upload_dir(config: Settings) -> Path:
    return config.data_dir / UPLOADS / uuid.uuid4().hex  # the request folder api.store expects


def _options(config: Settings, detectors: str | None = None) -> ItemOptions:
    """The options a job's items run with: the detectors asked for (422 ``unknown_detector`` for a choice naming
    an unknown one, or none) and the service's pixel limit, which the worker decodes with as the upload was
    checked with it."""
    try:
        chosen = detector_selection(detectors, field="detectors")
    except InputError as error:
        raise ApiError(422, "unknown_detector", str(error)) from None
    return ItemOptions(detectors=tuple(chosen) if chosen else None, max_pixels=config.max_pixels,
                       max_pixels_name=MAX_PIXELS_VARIABLE, max_memory=config.max_memory)


def _created(request: Request, job_id: str, count: int, notes: list[str] | None = None) -> JSONResponse:
    body = JobCreated(job_id=job_id, status_url=str(request.url_for("get_job", job_id=job_id)), items=count,
                      notes=notes or [])
    return JSONResponse(body.model_dump(), status_code=status.HTTP_202_ACCEPTED)


@router.post("/analyses", status_code=202, response_model=JobCreated, summary="Analyse one scan")
async def submit_analysis(
    request: Request,
    image: Annotated[UploadFile, File(description="The scan (JPEG, PNG, TIFF, WebP or BMP)")],
    detectors: Annotated[str | None, Form(description="Comma-separated detectors (default: all default)")] = None,
    config: Settings = Depends(settings), jobs: JobStore = Depends(store),
) -> JSONResponse:
    options = _options(config, detectors)
    label = image.filename or "image"
    with removed_on_failure(_upload_dir(config)) as folder:
        path = await save_upload(image, folder / client_file_name(image.filename, "image"), config, label)
        header = await run_in_threadpool(check_upload, path, config, label)
        require_memory(config, ANALYZE, [header], options.detectors, label)
        job_id = jobs.create_job("analysis", [Item("image", ANALYZE, (str(path),))], options, label=path.name)
    return _created(request, job_id, 1)


@router.post("/comparisons", status_code=202, response_model=JobCreated, summary="Compare two scans")
async def submit_comparison(
    request: Request,
    reference: Annotated[UploadFile, File(description="The scan believed closest to the original print")],
    questioned: Annotated[UploadFile, File(description="The scan suspected of being altered")],
    config: Settings = Depends(settings), jobs: JobStore = Depends(store),
) -> JSONResponse:
    paths, headers, labels = [], [], []
    with removed_on_failure(_upload_dir(config)) as folder:
        for role, upload in (("reference", reference), ("questioned", questioned)):
            label = upload.filename or role
            path = await save_upload(upload, folder / role / client_file_name(upload.filename, role), config,
                                     label)
            headers.append(await run_in_threadpool(check_upload, path, config, label))
            paths.append(str(path))
            labels.append(label)
        require_memory(config, COMPARE, headers, None, " and ".join(labels))
        job_id = jobs.create_job("comparison", [Item("pair", COMPARE, tuple(paths))], _options(config),
                                 label=job_label([Path(path).name for path in paths]))
    return _created(request, job_id, 1)


MANIFEST_BYTES = 10 * 1024 * 1024  # a manifest sent beside the files: a list of names, not a scan
MANIFEST_KINDS = {".csv": "manifest.csv", ".json": "manifest.json"}
SendsManifest = Annotated[UploadFile | None, File(
    description="manifest.json or manifest.csv listing items or pairs of `files` by the names they are sent "
                "under, as a zip's manifest lists its members")]
PairsByName = Annotated[bool, Form(description="Pair `files` by name: box1/lenin_a.tif (reference) with "
                                               "box1/lenin_b.jpg (questioned); see POST /v1/batches/plan")]


LABEL_CHARACTERS = 200


def job_label(names: Sequence[str]) -> str:
    """What a person knows a job by in a listing: its first two file names and how many more."""
    more = f" and {len(names) - 2} more" if len(names) > 2 else ""
    shown = ", ".join(names[:2])
    if len(shown) + len(more) > LABEL_CHARACTERS:  # two names of a few hundred characters: the count must stay
        shown = shown[: LABEL_CHARACTERS - len(more) - 1] + "…"
    return shown + more


def sent_name(name: str | None, fallback: str) -> str:
    """A file's name as its client sent it, which a manifest names it by: with its folders (a page sends
    ``box1/scan.jpg``), '/' between them, no leading '/'."""
    return (name or "").replace("\\", "/").lstrip("/") or fallback


async def _manifest(upload: UploadFile | None) -> tuple[str, str, bytes] | None:
    """(kind, the client's name for it, content) of a manifest sent beside the files."""
    if upload is None:
        return None
    label = upload.filename or "manifest"
    kind = MANIFEST_KINDS.get(Path(label).suffix.lower())
    if kind is None:
        raise ApiError(400, "bad_manifest", f"{label}: a manifest is a .csv or .json file (see the API's manifest "
                       "format)")
    data = await upload.read(MANIFEST_BYTES + 1)
    if len(data) > MANIFEST_BYTES:
        raise ApiError(413, "upload_too_large", f"{label}: a manifest is at most {MANIFEST_BYTES // 1048576} MB")
    return kind, label, data


def plan_files(sent: Sequence[tuple[str, str]], manifest: tuple[str, str, bytes] | None,
               pair_by_name: bool) -> tuple[list[Planned], list[str]]:
    """The items of files sent by name (``sent``: (name sent, where it is) in order), and notes: one item per
    file, in order (ids ``00000-scan.jpg``); or the items ``manifest`` lists, or pairs told by their names
    (:func:`retouch.run.manifest.pairs_by_name`), with the ids of a zip's manifest. A file a manifest leaves out
    is not analysed, and a note says so."""
    if manifest is None and not pair_by_name:
        return [Planned(f"{index:05d}-{item_id(client_file_name(name, 'file'), 'file')}", ANALYZE, (path,))
                for index, (name, path) in enumerate(sent)], []
    _check_sent_names([name for name, _ in sent])
    if manifest is not None:
        kind, label, data = manifest
        entries, notes = manifest_entries(kind, data, label), []
    else:
        entries, notes = pairs_by_name([name for name, _ in sent])
    planned = items_from_entries(entries, dict(sent), set(), source="the files sent")
    if not planned:
        raise ApiError(400, "bad_manifest", f"{manifest[1] if manifest else 'files'}: lists no items")
    if manifest is not None:
        used = {path for item in planned for path in item.inputs}
        notes += [f"{name}: not listed in {manifest[1]}; not analysed" for name, path in sent if path not in used]
    return planned, notes


def _check_sent_names(names: Sequence[str]) -> None:
    """Files listed by a manifest or paired by name are told apart by their names: two sent under one are a 400."""
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ApiError(400, "bad_manifest", f"two files were sent as {repeated[0]!r}; send each under its own "
                       "name (with its folder: box1/scan.jpg)")


@router.post("/batches", status_code=202, response_model=JobCreated, summary="Submit many scans or pairs")
async def submit_batch(
    request: Request,
    files: Annotated[list[UploadFile] | None, File(description="Scans to analyse, one item each")] = None,
    archive: Annotated[UploadFile | None, File(description="A zip of scans, optionally with manifest.json "
                                                           "or manifest.csv listing items or pairs")] = None,
    manifest: SendsManifest = None,
    pair_by_name: PairsByName = False,
    detectors: Annotated[str | None, Form()] = None,
    config: Settings = Depends(settings), jobs: JobStore = Depends(store),
) -> JSONResponse:
    """Queue one item per scan in ``files`` and per image (or manifest entry) in ``archive``.

    Checked at submission, the same way for ``files`` and for the archive's members, with an error naming the
    file: at most ``RETOUCH_MAX_ZIP_MEMBERS`` files in all (400 ``too_many_files``), each a supported image by
    its first bytes, sniffed as the CLI does (a file in ``files`` that is not: 415 ``not_an_image``), and within
    the pixel limit by its header (413 ``too_many_pixels``, the decompression-bomb guard), and large enough to
    analyse by the same header (422 ``image_too_small``, the CLI's rule). A scan whose header is damaged is
    accepted and becomes an item that fails alone, so one bad scan does not hold up the others.

    Archive members that are not images (a readme, a nested zip, ``.DS_Store``) are skipped, not rejected:
    archives of scans often carry such files, and a batch should not fail over them. The skipped members are
    named in ``notes`` (in this answer and in the job), so nothing is dropped silently. With a manifest, only
    the members it names matter, and an entry naming a non-image is a 400 ``bad_manifest``.

    ``files`` may instead be listed by a ``manifest`` sent beside them, or paired by name (``pair_by_name``),
    as ``POST /v1/batches/plan`` shows beforehand: each file is then named by the name it was sent under, folders
    included (``box1/lenin_a.tif``), and two files sent under one name are a 400 ``bad_manifest``.

    Item ids are the manifest's (a repeated one is a 400 ``bad_manifest``), else made from the file names and
    made unique (:func:`retouch.run.manifest.unique_items`); every input keeps the client's file name.
    """
    options = _options(config, detectors)
    files = files or []
    if len(files) > config.max_zip_members:  # before anything is written
        raise ApiError(400, "too_many_files", f"{len(files)} files: a batch takes at most {config.max_zip_members}"
                       " (RETOUCH_MAX_ZIP_MEMBERS); split it")
    listed = await _manifest(manifest)
    if (listed is not None or pair_by_name) and not files:
        raise ApiError(422, "invalid_request", "manifest and pair_by_name list the files sent with them: send "
                       "those as files (a zip's own manifest lists its members)")
    names = [sent_name(upload.filename, f"file {index + 1}") for index, upload in enumerate(files)]
    if listed is not None or pair_by_name:  # before anything is written
        _check_sent_names(names)
    items: list[Planned] = []
    notes: list[str] = []
    headers: dict[str, ImageHeader | None] = {}
    labels: dict[str, str] = {}
    stored = 0  # bytes the job stores: the files, then the archive's members (RETOUCH_MAX_JOB_BYTES)
    # every path below the request's folder is chosen by the server (client names only ever end a path), so
    # no upload name can collide with another upload or with the folder layout
    with removed_on_failure(_upload_dir(config)) as folder:
        sent: list[tuple[str, str]] = []
        for index, upload in enumerate(files):
            label = upload.filename or f"file {index + 1}"
            name = client_file_name(upload.filename, "file")
            path = await save_upload(upload, folder / "files" / f"{index:05d}" / name, config, label)
            stored += path.stat().st_size
            headers[str(path)] = await run_in_threadpool(screen_image, path, config, label)
            labels[str(path)] = label
            sent.append((names[index], str(path)))
        items, notes = plan_files(sent, listed, pair_by_name)
        job_names = names
        if archive is not None:
            label = archive.filename or "archive"
            saved = await save_upload(archive, folder / "archive.zip", config, label)
            members, archive_notes, found = await run_in_threadpool(
                extract_archive, saved, folder / "members", config, label, room=config.max_job_bytes - stored)
            headers.update(found)
            labels.update({path: f"{label}: {PurePosixPath(path).name}" for path in found})
            items, notes, job_names = items + members, notes + archive_notes, [label, *job_names]
            saved.unlink(missing_ok=True)
        for item in items:
            require_memory(config, item.command, [headers.get(path) for path in item.inputs], options.detectors,
                           " and ".join(labels.get(path, Path(path).name) for path in item.inputs))
        if not items:
            raise ApiError(422, "empty_batch", "send image files or a zip archive holding images" +
                           (f" ({'; '.join(notes[:5])})" if notes else ""))
        if len(items) > config.max_zip_members:
            raise ApiError(400, "too_many_files", f"{len(items)} items from files and archive: a batch takes at "
                           f"most {config.max_zip_members} (RETOUCH_MAX_ZIP_MEMBERS); split it")
        # ids made from names may clash, in the archive or with the files'
        job_id = jobs.create_job("batch", unique_items(items), options, notes=notes, label=job_label(job_names))
    return _created(request, job_id, len(items), notes)


@router.post("/batches/plan", response_model=Plan, summary="The items a batch of files would make, before "
                                                              "sending them")
async def plan_batch(
    names: Annotated[str, Form(description='The files\' names as they will be sent, a JSON list: '
                                           '["box1/lenin_a.tif", "box1/lenin_b.jpg"]')],
    manifest: SendsManifest = None,
    pair_by_name: PairsByName = True,
    config: Settings = Depends(settings),
) -> Plan:
    """What ``POST /v1/batches`` would make of ``files`` sent under these names with the same ``manifest`` or
    ``pair_by_name``: the items (ids, analyse or compare, the files of each) and notes, or the error it would
    answer (400 ``bad_manifest`` naming the entry). Only names are sent, so a client can show the plan for
    confirmation before uploading anything; the files' contents are checked when they are sent."""
    try:
        sent = json.loads(names)
    except ValueError:
        sent = None
    if not isinstance(sent, list) or not all(isinstance(name, str) for name in sent):
        raise ApiError(422, "invalid_request", 'names: a JSON list of file names, ["a.jpg", "b.jpg"]')
    sent = [sent_name(name, f"file {index + 1}") for index, name in enumerate(sent)]
    if len(sent) > config.max_zip_members:
        raise ApiError(400, "too_many_files", f"{len(sent)} files: a batch takes at most {config.max_zip_members}"
                       " (RETOUCH_MAX_ZIP_MEMBERS); split it")
    listed = await _manifest(manifest)
    planned, notes = plan_files([(name, name) for name in sent], listed, pair_by_name)
    return Plan(items=[PlannedItem(id=item.id, command=item.command, files=list(item.inputs))
                       for item in unique_items(planned)], notes=notes)


@router.get("/jobs", response_model=JobList, summary="List jobs, newest first, a page at a time")
def list_jobs(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=SQLITE_MAX_INTEGER),
              state: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
              since: Annotated[float | None, Query(ge=0, description="Only jobs created at or after this time, "
                                                                     "in seconds since the epoch")] = None,
              items: Annotated[bool, Query(description="false: each job's items are left out (null), for a "
                                                       "listing light enough to poll")] = True,
              jobs: JobStore = Depends(store)) -> JobList:
    """``total`` counts the jobs that match, so a client pages with ``offset`` += ``limit`` until it is reached.
    A job's state follows its items: queued, running, done, done_with_errors (some items failed) or failed (all
    did)."""
    found, total = jobs.jobs(limit=limit, offset=offset, state=state, since=since, with_items=items)
    return JobList(jobs=found, total=total, limit=limit, offset=offset)


@router.get("/jobs/{job_id}", response_model=JobStatus, summary="A job's state, progress and items")
def get_job(job_id: str, jobs: JobStore = Depends(store)) -> dict:
    job = jobs.job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete a job, its uploads and its results")
def delete_job(job_id: str, config: Settings = Depends(settings), jobs: JobStore = Depends(store)) -> None:
    """Delete the job's records, results and uploaded files. An item still running is cancelled: its worker
    finishes its computation but throws the output away instead of writing results (see api.workers)."""
    if jobs.job(job_id) is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    uploads = config.data_dir / UPLOADS
    # only ever the request folders under uploads/: the store resolves no input outside them
    upload_folders = {uploads / path.relative_to(uploads).parts[0] for path in jobs.input_paths(job_id)}
    jobs.delete(job_id)  # first, so no queued item of the job is claimed any more
    shutil.rmtree(job_folder(config.data_dir, job_id), ignore_errors=True)  # its live marker goes with it
    for folder in upload_folders:
        shutil.rmtree(folder, ignore_errors=True)


def _item_folder(config: Settings, jobs: JobStore, job_id: str, item_id: str) -> Path:
    job = jobs.job(job_id)
    if job is None or item_id not in {item["id"] for item in job["items"]}:
        raise ApiError(404, "not_found", f"no item {item_id} in job {job_id}")
    item = next(i for i in job["items"] if i["id"] == item_id)
    if item["state"] != "done":
        raise ApiError(404, "not_ready", f"item {item_id} is {item['state']}: no files yet")
    return item_folder(config.data_dir, job_id, item_id)


def _stored_report(folder: Path) -> dict:
    """A finished item's report.json as stored; a 404 when it has left the data folder or was cut short there (a
    cleanup, a copy to a full disk), which only the server's files can explain, not a 500 without a word."""
    try:
        return json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ApiError(404, "not_found", f"item {folder.name}: its report is no longer stored in the service's "
                       "data folder (deleted or damaged there); submit the item again") from None


def client_report(folder: Path) -> dict:
    """An item's report.json as clients see it: inputs named by their file names, without server paths."""
    report = _stored_report(folder)
    for entry in report.get("inputs", []):
        entry["path"] = None  # server paths are not the client's business
    return report


@router.get("/jobs/{job_id}/items/{item_id}/report", summary="An item's report.json")
def get_report(job_id: str, item_id: str, config: Settings = Depends(settings),
               jobs: JobStore = Depends(store)) -> JSONResponse:
    return JSONResponse(client_report(_item_folder(config, jobs, job_id, item_id)))


@router.get("/jobs/{job_id}/items/{item_id}/files/{name}", summary="An artifact: report.html, masks, heatmaps")
def get_file(job_id: str, item_id: str, name: str, config: Settings = Depends(settings),
             jobs: JobStore = Depends(store)) -> Response:
    if not FILE_NAME.match(name):
        raise ApiError(404, "not_found", f"no file {name!r}")
    folder = _item_folder(config, jobs, job_id, item_id)
    if name == "report.json":  # the file on disk records server paths; clients get the same view as /report
        return JSONResponse(client_report(folder))
    path = folder / name
    if not path.is_file():
        raise ApiError(404, "not_found", f"no file {name!r} for item {item_id}")
    return FileResponse(path)


def _input_entry(config: Settings, jobs: JobStore, job_id: str, item_id: str, index: int) -> dict:
    inputs = _stored_report(_item_folder(config, jobs, job_id, item_id)).get("inputs", [])
    if not 0 <= index < len(inputs):
        raise ApiError(404, "not_found", f"no input {index}")
    return inputs[index]


def _input_path(jobs: JobStore, job_id: str, item_id: str, index: int) -> Path:
    """Where an item's input is stored now: the store's record, resolved under the running service's data
    folder. The path in report.json is never followed: it is where the input was when the item ran, which a
    data folder moved since would no longer hold."""
    recorded = jobs.item_inputs(job_id, item_id) or []
    path = recorded[index] if index < len(recorded) else None
    if path is None or not path.is_file():  # deleted meanwhile, or recorded outside the data folder
        raise ApiError(404, "not_found", f"input {index} is no longer stored")
    return path


def _content_disposition(name: str) -> str:
    """``inline`` under the client's file name (RFC 6266): exact in ``filename*``, UTF-8 percent-encoded (RFC
    5987), and in ``filename`` for clients that read only that, in ASCII with '_' for what a quoted string cannot
    hold safely (quotes, backslashes, '%', which some browsers decode, and anything beyond ASCII)."""
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%' else "_" for char in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get("/jobs/{job_id}/items/{item_id}/inputs/{index}", summary="An item's uploaded input image")
def get_input(job_id: str, item_id: str, index: int, config: Settings = Depends(settings),
              jobs: JobStore = Depends(store)) -> FileResponse:
    # the type is the one the loader read from the content, never guessed from the client's file name: a JPEG
    # named 'x.html' (HTML in a comment segment) would otherwise run as a page of this origin
    entry = _input_entry(config, jobs, job_id, item_id, index)
    path = _input_path(jobs, job_id, item_id, index)  # checked to exist: FileResponse would answer a 500
    media_type = INPUT_TYPES.get(str(entry.get("format", "")).upper(), "application/octet-stream")
    # saved from a browser, the input keeps the name the client sent (the stored name, see api.uploads)
    headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": _content_disposition(path.name)}
    return FileResponse(path, media_type=media_type, headers=headers)


@router.get("/jobs/{job_id}/items/{item_id}/inputs/{index}/preview",
            summary="An item's input as a JPEG any browser shows (display orientation, first page, at most "
                    f"{PREVIEW_SIDE} px on the longest side)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def get_input_preview(job_id: str, item_id: str, index: int, config: Settings = Depends(settings),
                      jobs: JobStore = Depends(store)) -> Response:
    # browsers show neither TIFF, the archives' usual format, nor the first page of a multi-page file alone
    _input_entry(config, jobs, job_id, item_id, index)  # the item is done and has this input
    path = _input_path(jobs, job_id, item_id, index)
    with _preview_slots:  # a large scan decodes to gigabytes: a burst of requests must not hold many at once
        try:
            loaded = load_image(path, max_pixels=config.max_pixels)
        except InputError:  # the job was deleted meanwhile
            raise ApiError(404, "not_found", f"input {index} is no longer stored") from None
        return Response(jpeg_bytes(shrink(loaded.rgb8, PREVIEW_SIDE)), media_type="image/jpeg")
