"""Response models: the API's contract, published in its OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

JobState = Literal["queued", "running", "done", "done_with_errors", "failed"]  # see api.store.job_state


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class JobCreated(BaseModel):
    job_id: str
    status_url: str
    items: int
    notes: list[str] = []  # e.g. archive members skipped because they are not images


class Progress(BaseModel):
    total: int
    finished: int
    failed: int


class ItemStatus(BaseModel):
    id: str
    command: str
    state: str
    attempts: int
    completions: int
    error: str | None
    result: dict[str, Any] | None
    inputs: list[str]


class JobStatus(BaseModel):
    id: str
    kind: str  # analysis, comparison or batch
    label: str = ""  # the client's file names, shortened: what a person knows the job by
    state: JobState
    created: float  # seconds since the epoch
    progress: Progress
    notes: list[str] = []
    items: list[ItemStatus] | None  # None in a listing asked for without items


class PlannedItem(BaseModel):
    id: str
    command: str  # analyze or compare
    files: list[str]  # as the client named them: (image,) or (reference, questioned)


class Plan(BaseModel):
    items: list[PlannedItem]
    notes: list[str] = []


class DownloadLinks(BaseModel):
    archive: str
    summary_csv: str
    expires: float | None  # seconds since the epoch; None where the service needs no key


class JobList(BaseModel):
    jobs: list[JobStatus]
    total: int
    limit: int
    offset: int


class Problem(BaseModel):
    component: str  # "store", "disk", "dispatcher"
    reason: str
    since: float  # seconds since the epoch, as a job's ``created``


class Health(BaseModel):
    status: str  # "ok", "degraded" (a fault holds work up; see problems) or "unavailable" (503)
    version: str
    queue: dict[str, int]
    problems: list[Problem] = []
