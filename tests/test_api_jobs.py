"""The web service's routes for people working through many jobs, run in this process: the job list (pages,
filters, labels), batches planned by name or by a manifest sent beside the files, a job's summary.csv and its zip
archive, download links with the key, offline API documentation, and the log of each job's start and end."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.deps import signed_link
from api.logs import JsonFormatter
from retouch.io import DEFAULT_MAX_PIXELS
from retouch.run.batch import SUMMARY_COLUMNS
from retouch.samples import make_authentic, make_pair
from tests.helpers import InProcessService, image_bytes, in_process_service

BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 400  # announces a PNG, its header is damaged: an item that fails alone


def _scan(seed: int) -> bytes:
    return make_authentic(seed, size=128).file_bytes


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    folder = tmp_path_factory.mktemp("service")
    with in_process_service(folder / "data", workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def three_jobs(service: InProcessService) -> dict[str, dict]:
    """A done analysis, a failed batch and a batch done with errors, submitted in that order and finished."""
    with service.client() as client:
        submitted = {
            "done": client.post("/v1/analyses", files={"image": ("scan.jpg", _scan(1))},
                                data={"detectors": "grain"}),
            "failed": client.post("/v1/batches", files=[("files", ("broken.png", BROKEN_PNG))],
                                  data={"detectors": "grain"}),
            "done_with_errors": client.post(
                "/v1/batches", data={"detectors": "grain"},
                files=[("files", ("=HYPERLINK(1).jpg", _scan(2))), ("files", ("broken.png", BROKEN_PNG))]),
        }
        return {state: service.wait_job(client, answer.json()["job_id"]) for state, answer in submitted.items()}


def test_jobs_are_listed_a_page_at_a_time_newest_first(service: InProcessService, three_jobs: dict) -> None:
    assert {state: job["state"] for state, job in three_jobs.items()} == {
        "done": "done", "failed": "failed", "done_with_errors": "done_with_errors"}
    with service.client() as client:
        everything = client.get("/v1/jobs", params={"limit": 500}).json()
        newest_first = [job["id"] for job in everything["jobs"]]
        first = client.get("/v1/jobs", params={"limit": 2}).json()
        second = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert first["total"] == second["total"] == everything["total"] >= 3
    assert [job["id"] for job in first["jobs"] + second["jobs"]] == newest_first[:4]
    created = [job["created"] for job in everything["jobs"]]
    assert created == sorted(created, reverse=True)


def test_the_list_is_filtered_by_state_and_creation_time_with_the_jobs_own_states(
        service: InProcessService, three_jobs: dict) -> None:
    with service.client() as client:
        for state, job in three_jobs.items():
            listed = client.get("/v1/jobs", params={"state": state, "limit": 500}).json()
            assert job["id"] in [entry["id"] for entry in listed["jobs"]]
            assert {entry["state"] for entry in listed["jobs"]} == {state}
            assert listed["total"] == len(listed["jobs"])
        since = client.get("/v1/jobs", params={"since": three_jobs["failed"]["created"], "limit": 500}).json()
        recent = {job["id"] for job in since["jobs"]}
        assert {three_jobs["failed"]["id"], three_jobs["done_with_errors"]["id"]} <= recent
        assert three_jobs["done"]["id"] not in {j["id"] for j in since["jobs"]}
        assert all(j["created"] >= three_jobs["failed"]["created"] for j in since["jobs"])
        bad = client.get("/v1/jobs", params={"state": "finished"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_a_light_listing_leaves_items_out_and_names_each_job_by_its_files(
        service: InProcessService, three_jobs: dict) -> None:
    with service.client() as client:
        listed = client.get("/v1/jobs", params={"items": "false", "limit": 500}).json()["jobs"]
        light = {job["id"]: job for job in listed}
        full = {job["id"]: job for job in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]}
    mixed = three_jobs["done_with_errors"]["id"]
    assert light[mixed]["items"] is None and len(full[mixed]["items"]) == 2
    assert light[mixed]["progress"] == full[mixed]["progress"] == {"total": 2, "finished": 2, "failed": 1}
    assert light[mixed]["label"] == "=HYPERLINK(1).jpg, broken.png"
    assert light[three_jobs["done"]["id"]]["label"] == "scan.jpg"


def test_summary_csv_has_a_row_per_item_as_retouch_batch_writes_it(service: InProcessService,
                                                                    three_jobs: dict) -> None:
    job = three_jobs["done_with_errors"]
    with service.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/summary.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    good, bad = rows
    assert good["paths"] == "'=HYPERLINK(1).jpg"  # a spreadsheet shows it; it does not run it
    assert good["status"] == "ok" and good["sha256"] == hashlib.sha256(_scan(2)).hexdigest()
    assert float(good["score"]) == job["items"][0]["result"]["score"]
    assert bad["status"] == "error" and "broken.png" in bad["error"] and not bad["score"]


def test_the_archive_holds_the_summary_and_every_finished_items_reports(
        service: InProcessService, three_jobs: dict) -> None:
    job = three_jobs["done_with_errors"]
    good, bad = job["items"]
    with service.client() as client:
        response = client.get(f"/v1/jobs/{job['id']}/archive")
        summary = client.get(f"/v1/jobs/{job['id']}/summary.csv").content
        page = client.get(f"/v1/jobs/{job['id']}/items/{good['id']}/files/report.html").content
        served_report = client.get(f"/v1/jobs/{job['id']}/items/{good['id']}/report").json()
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "content-length" not in response.headers  # written as it is sent
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    assert bundle.testzip() is None
    names = bundle.namelist()
    assert names[0] == "summary.csv" and bundle.read("summary.csv") == summary
    stored = sorted(path.name for path in (service.data_dir / "jobs" / job["id"] / "items" / good["id"]).iterdir())
    assert sorted(name.split("/")[-1] for name in names if name.startswith(f"items/{good['id']}/")) == stored
    assert not any(name.startswith(f"items/{bad['id']}/") for name in names)
    assert bundle.read(f"items/{good['id']}/report.html") == page
    report = json.loads(bundle.read(f"items/{good['id']}/report.json"))
    assert report == served_report and all(entry["path"] is None for entry in report["inputs"])
    assert str(service.data_dir) not in bundle.read(f"items/{good['id']}/report.json").decode()


def test_a_deleted_or_unknown_job_has_no_downloads(service: InProcessService) -> None:
    with service.client() as client:
        for route in ("archive", "summary.csv", "links"):
            answer = client.get(f"/v1/jobs/nope/{route}")
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", route


def test_files_paired_by_name_are_planned_and_sent_as_planned(service: InProcessService) -> None:
    pair = make_pair(4, size=256, edit="airbrush")
    questioned = "box1/lenin_1920_b.jpg" if pair.questioned_format == "JPEG" else "box1/lenin_1920_b.png"
    sent = [(questioned, pair.questioned_bytes), ("box1/lenin_1920_a.png", pair.reference_bytes),
            ("box2/crowd.jpg", _scan(3))]
    with service.client() as client:
        plan = client.post("/v1/batches/plan", data={"names": json.dumps([name for name, _ in sent])})
        assert plan.status_code == 200, plan.text
        items = plan.json()["items"]
        assert [(item["command"], item["files"]) for item in items] == [
            ("compare", ["box1/lenin_1920_a.png", questioned]), ("analyze", ["box2/crowd.jpg"])]
        created = client.post("/v1/batches", files=[("files", entry) for entry in sent],
                              data={"pair_by_name": "true", "detectors": "grain"})
        assert created.status_code == 202, created.text
        job = service.wait_job(client, created.json()["job_id"])
    assert [(item["id"], item["command"]) for item in job["items"]] == [(i["id"], i["command"]) for i in items]
    assert job["items"][0]["inputs"] == ["lenin_1920_a.png", Path(questioned).name]  # the reference first
    assert job["state"] == "done", job


def test_a_manifest_sent_beside_the_files_lists_the_items(service: InProcessService) -> None:
    manifest = b"Reference;Questioned;ID\nscans/a.jpg;scans/b.jpg;pair-1\n"
    names = ["scans/a.jpg", "scans/b.jpg", "scans/c.jpg"]
    with service.client() as client:
        plan = client.post("/v1/batches/plan", data={"names": json.dumps(names)},
                           files={"manifest": ("pairs.csv", manifest)}).json()
        assert [(item["id"], item["command"], item["files"]) for item in plan["items"]] == [
            ("pair-1", "compare", ["scans/a.jpg", "scans/b.jpg"])]
        assert plan["notes"] == ["scans/c.jpg: not listed in pairs.csv; not analysed"]
        listed = json.dumps([{"image": "scans/c.jpg", "id": "c"}]).encode()
        created = client.post("/v1/batches", data={"detectors": "grain"},
                              files=[("files", (name, _scan(10 + i))) for i, name in enumerate(names)]
                              + [("manifest", ("manifest.json", listed))])
        assert created.status_code == 202, created.text
        assert created.json()["items"] == 1 and len(created.json()["notes"]) == 2
        job = service.wait_job(client, created.json()["job_id"])
    assert [(item["id"], item["inputs"]) for item in job["items"]] == [("c", ["c.jpg"])]


def test_plans_and_batches_by_name_that_cannot_be_made_are_refused_naming_why(service: InProcessService) -> None:
    with service.client() as client:
        def plan(names: object, **files: tuple[str, bytes]) -> tuple[int, str, str]:
            answer = client.post("/v1/batches/plan", data={"names": json.dumps(names)}, files=files or None)
            return answer.status_code, answer.json()["error"]["code"], answer.json()["error"]["message"]

        status, code, message = plan(["a.jpg"], manifest=("m.csv", b"image\nmissing.jpg\n"))
        assert (status, code) == (400, "bad_manifest") and "missing.jpg" in message and "m.csv" in message
        status, code, message = plan(["x/a.jpg", "x/a.jpg"])
        assert (status, code) == (400, "bad_manifest") and "x/a.jpg" in message
        assert plan("a.jpg")[:2] == (422, "invalid_request")
        assert plan(["a.jpg"], manifest=("list.txt", b"image\na.jpg\n"))[:2] == (400, "bad_manifest")
        alone = client.post("/v1/batches", files={"manifest": ("m.csv", b"image\na.jpg\n")})
        assert alone.status_code == 422 and alone.json()["error"]["code"] == "invalid_request"


def test_download_links_open_their_download_without_the_key_and_nothing_else(tmp_path: Path) -> None:
    key = {"Authorization": "Bearer s3cret"}
    with in_process_service(tmp_path / "data", api_key="s3cret") as service, service.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("scan.jpg", _scan(5))}, data={"detectors": "grain"},
                             headers=key).json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}/links").status_code == 401
        links = client.get(f"/v1/jobs/{job_id}/links", headers=key).json()
        assert links["expires"] is not None
        assert client.get(links["summary_csv"]).status_code == 200  # no header: the link carries the signature
        assert client.get(links["archive"]).headers["content-type"] == "application/zip"
        signature = re.search(r"signature=(\w+)", links["archive"]).group(1)
        expires = re.search(r"expires=(\d+)", links["archive"]).group(1)
        elsewhere = f"/v1/jobs/{job_id}?expires={expires}&signature={signature}"
        tampered = links["archive"].replace(f"expires={expires}", f"expires={int(expires) + 1}")
        stale, _ = signed_link("s3cret", f"/v1/jobs/{job_id}/archive", now=1_000_000)
        forged = links["archive"][:-1] + ("1" if links["archive"].endswith("0") else "0")
        for refused in (elsewhere, tampered, stale, forged):
            answer = client.get(refused)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", refused
    with in_process_service(tmp_path / "open") as service, service.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("scan.jpg", _scan(5))}, data={"detectors": "grain"},
                             ).json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}/links").json() == {
            "archive": f"/v1/jobs/{job_id}/archive", "summary_csv": f"/v1/jobs/{job_id}/summary.csv",
            "expires": None}


def test_the_api_documentation_needs_no_internet(service: InProcessService) -> None:
    with service.client() as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(asset.startswith("/") for asset in assets), (page, assets)
            assert "https://" not in html and "http://" not in html
            for asset in assets:
                assert client.get(asset).status_code == 200, asset
        spec = client.get("/openapi.json").json()
    for path in ("/v1/jobs/{job_id}/archive", "/v1/jobs/{job_id}/summary.csv", "/v1/jobs/{job_id}/links",
                 "/v1/batches/plan"):
        operation = next(iter(spec["paths"][path].values()))
        assert {"401", "404"} <= set(operation["responses"]) or path == "/v1/batches/plan", path
    listing = spec["paths"]["/v1/jobs"]["get"]["parameters"]
    assert {"state", "since", "items", "limit", "offset"} <= {parameter["name"] for parameter in listing}


def test_the_services_pixel_limit_reaches_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the workers' environment allows 1,000 pixels; the service allows the default, and checked the upload so:
    # the worker must decode with the service's limit, which the job's options carry, not its environment's
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "1000")
    scan = image_bytes(np.clip(np.random.default_rng(3).normal(120, 20, (96, 96)), 0, 255).astype(np.uint8))
    with in_process_service(tmp_path / "data", max_pixels=DEFAULT_MAX_PIXELS) as service, \
            service.client() as client:
        created = client.post("/v1/analyses", files={"image": ("scan.png", scan)}, data={"detectors": "grain"})
        job = service.wait_job(client, created.json()["job_id"])
    assert job["state"] == "done", job["items"][0]["error"]


def test_each_jobs_start_and_end_are_logged(service: InProcessService, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="retouch.api"), service.client() as client:
        created = client.post("/v1/batches", data={"detectors": "grain"},
                              files=[("files", ("a.jpg", _scan(20))), ("files", ("b.png", BROKEN_PNG))])
        job = service.wait_job(client, created.json()["job_id"])
    events = [record for record in caplog.records if getattr(record, "job", None) == job["id"]]
    assert [record.event for record in events] == ["job_started", "job_finished"]
    started, finished = events
    assert started.items == 2 and f"job {job['id']} started: 2 items" in started.getMessage()
    assert (finished.state, finished.items, finished.failed) == ("done_with_errors", 2, 1)
    assert 0 < finished.seconds < 600 and f"{finished.seconds:.1f} s" in finished.getMessage()
    line = json.loads(JsonFormatter().format(finished))
    assert line["event"] == "job_finished" and line["job"] == job["id"] and line["level"] == "info"
    assert line["message"] == finished.getMessage()
