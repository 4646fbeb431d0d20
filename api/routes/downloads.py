"""A job's results in one download: ``summary.csv`` and a zip of every item's reports, streamed as it is made.

The zip is laid out as ``retouch batch`` lays out its output folder: ``summary.csv``, ``notes.txt`` when the job
has notes, and ``items/<id>/`` holding each finished item's reports (``report.json`` as clients see it, without
server paths; ``report.html``, masks, heatmaps). It is written while it is sent (:mod:`retouch.io.zipstream`):
the server holds about one chunk of it at a time, whatever the job's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from api.deps import require_key, require_key_or_signed_link, settings, signed_link, store
from api.errors import ApiError
from api.routes.jobs import FILE_NAME, client_report
from api.schemas import DownloadLinks, ErrorResponse
from api.settings import Settings
from api.store import JobStore
from api.workers import item_folder
from retouch.io.zipstream import stream_zip
from retouch.run.batch import ITEMS, SUMMARY, summary_table

router = APIRouter(prefix="/v1", responses={code: {"model": ErrorResponse} for code in (401, 404)})
STATUS = {"done": "ok", "failed": "error"}  # an item's state as retouch batch's summary.csv words it


def _job(jobs: JobStore, job_id: str) -> dict[str, Any]:
    job = jobs.job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return job


def job_summary(job: Mapping[str, Any]) -> str:
    """The job's ``summary.csv``: a row per item, in the order submitted, with the columns of ``retouch
    batch``'s (:func:`retouch.run.batch.summary_table`); an item not finished yet has its state as status."""
    records = []
    for item in job["items"]:
        result = item["result"] or {}
        records.append({"id": item["id"], "command": item["command"], "paths": item["inputs"],
                        "sha256": result.get("sha256") or [None] * len(item["inputs"]),
                        "score": result.get("score"), "regions": result.get("regions"),
                        "status": STATUS.get(item["state"], item["state"]), "error": item["error"],
                        "note": result.get("note")})
    return summary_table(records)


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"}


@router.get("/jobs/{job_id}/summary.csv", summary="A job's summary.csv: a row per item",
            dependencies=[Depends(require_key_or_signed_link)], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def get_summary(job_id: str, jobs: JobStore = Depends(store)) -> Response:
    """One row per item, as ``retouch batch`` writes its ``summary.csv``: id, command, the client's file names,
    their SHA-256, score, regions, status (``ok``, ``error``, or ``queued``/``running`` while the job runs),
    error and note. Cells a spreadsheet would run as formulas start with an apostrophe."""
    text = job_summary(_job(jobs, job_id))
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers=_attachment(f"retouch-{job_id}-summary.csv"))


def _archive_entries(config: Settings, job: Mapping[str, Any]) -> Iterator[tuple[str, Path | bytes]]:
    """The zip's members, each made only when its turn comes (a report.json is read when it is written)."""
    yield SUMMARY, job_summary(job).encode("utf-8")
    if job["notes"]:
        yield "notes.txt", ("\n".join(job["notes"]) + "\n").encode("utf-8")
    for item in job["items"]:
        if item["state"] != "done":
            continue
        folder = item_folder(config.data_dir, job["id"], item["id"])
        try:
            names = sorted(path.name for path in folder.iterdir() if FILE_NAME.match(path.name))
        except OSError:  # deleted meanwhile: summary.csv already says what there was
            continue
        for name in names:
            target = f"{ITEMS}/{item['id']}/{name}"
            if name == "report.json":  # the file on disk records server paths; the archive gets the client's view
                try:
                    yield target, json.dumps(client_report(folder), indent=1).encode("utf-8")
                except ApiError:
                    continue
            else:
                yield target, folder / name


@router.get("/jobs/{job_id}/archive", summary="Every item's reports and summary.csv in one zip, streamed",
            dependencies=[Depends(require_key_or_signed_link)], response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}}})
def get_archive(job_id: str, config: Settings = Depends(settings),
                jobs: JobStore = Depends(store)) -> StreamingResponse:
    """A zip laid out as ``retouch batch``'s output folder: ``summary.csv``, ``notes.txt`` when the job has
    notes, and ``items/<id>/`` with each finished item's reports. Asked for while the job runs, it holds the items
    finished so far, and ``summary.csv`` says which are still queued or running. The zip is written as it is
    sent, so it has no ``Content-Length``."""
    job = _job(jobs, job_id)
    return StreamingResponse(stream_zip(_archive_entries(config, job)), media_type="application/zip",
                             headers=_attachment(f"retouch-{job_id}.zip"))


@router.get("/jobs/{job_id}/links", response_model=DownloadLinks, dependencies=[Depends(require_key)],
            summary="Links to the job's archive and summary.csv that a browser can follow without the key")
def get_links(request: Request, job_id: str, config: Settings = Depends(settings),
              jobs: JobStore = Depends(store)) -> DownloadLinks:
    """With ``--api-key``, each link carries a signature that opens that one download for ten minutes (a
    download by a link sends no ``Authorization`` header); without a key, the plain paths."""
    _job(jobs, job_id)
    archive, expires = signed_link(config.api_key, request.app.url_path_for("get_archive", job_id=job_id))
    summary, _ = signed_link(config.api_key, request.app.url_path_for("get_summary", job_id=job_id))
    return DownloadLinks(archive=archive, summary_csv=summary, expires=expires)
