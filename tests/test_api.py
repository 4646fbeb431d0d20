"""The web service's contract, its application run in this process (FastAPI's ``TestClient``): submit, poll,
fetch; bad uploads, archives and manifests; item ids; jobs across a restart; the API key.

What only a real server shows (HTTP on 127.0.0.1, many clients at once, bodies refused before they are read, a
server killed mid-batch) is in ``test_api_server.py``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from api.store import recorded_input, resolve_input
from retouch.samples import make_authentic, make_forgery, make_pair
from tests.helpers import InProcessService, image_bytes, in_process_service, zip_bytes

FAST = "grain,ela,jpeg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    folder = tmp_path_factory.mktemp("service")
    with in_process_service(folder / "data", workers=2, max_upload_bytes=3_000_000, max_zip_members=50) as running:
        yield running


def test_submit_poll_and_fetch_an_analysis(server: InProcessService) -> None:
    case = make_forgery(7, method="airbrush", size=320)
    with server.client() as client:
        created = client.post("/v1/analyses", files={"image": ("scan.jpg", case.file_bytes)},
                              data={"detectors": FAST})
        assert created.status_code == 202
        job = server.wait_job(client, created.json()["job_id"])
        assert job["state"] == "done" and job["progress"] == {"total": 1, "finished": 1, "failed": 0}
        report = client.get(f"/v1/jobs/{job['id']}/items/image/report").json()
        assert report["schema"] == "retouch-report/1" and report["command"] == "analyze"
        assert [a["method"] for a in report["analyses"]] == ["grain", "ela", "jpeg"]
        mask = client.get(f"/v1/jobs/{job['id']}/items/image/files/suspect_mask.png")
        assert mask.status_code == 200
        pixels = np.asarray(Image.open(io.BytesIO(mask.content)))
        assert pixels.shape == case.image.shape[:2]
        page = client.get(f"/v1/jobs/{job['id']}/items/image/files/report.html")
        assert page.status_code == 200 and "retouch analyze report" in page.text
        assert client.get(f"/v1/jobs/{job['id']}/items/image/files/..%2Fjobs.sqlite3").status_code == 404
        listed = client.get("/v1/jobs", params={"limit": 5}).json()
        assert job["id"] in [j["id"] for j in listed["jobs"]]


def test_a_tiff_input_is_previewed_as_a_jpeg_of_its_first_page(server: InProcessService) -> None:
    # browsers show no TIFF; the page shows the preview, at the input's display size when that is small
    rng = np.random.default_rng(5)
    first, second = (np.clip(rng.normal(mean, 10, (90, 130)), 0, 255).astype(np.uint8) for mean in (80, 180))
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, format="TIFF", save_all=True, append_images=[Image.fromarray(second)])
    with server.client() as client:
        created = client.post("/v1/analyses", files={"image": ("scans.tif", buffer.getvalue())},
                              data={"detectors": "grain"})
        job = server.wait_job(client, created.json()["job_id"])
        [record] = client.get(f"/v1/jobs/{job['id']}/items/image/report").json()["inputs"]
        assert record["pages"] == 2
        preview = client.get(f"/v1/jobs/{job['id']}/items/image/inputs/0/preview")
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
        shown = np.asarray(Image.open(io.BytesIO(preview.content)).convert("L"), np.float32)
        assert shown.shape == (90, 130) and abs(float(shown.mean()) - float(first.mean())) < 3
        assert client.get(f"/v1/jobs/{job['id']}/items/image/inputs/1/preview").status_code == 404


def test_comparison_job(server: InProcessService) -> None:
    pair = make_pair(3, size=384, edit="diffusion")
    with server.client() as client:
        created = client.post("/v1/comparisons", files={"reference": ("ref.png", pair.reference_bytes),
                                                        "questioned": ("q.jpg", pair.questioned_bytes)})
        assert created.status_code == 202
        job = server.wait_job(client, created.json()["job_id"])
        assert job["state"] == "done", job
        report = client.get(f"/v1/jobs/{job['id']}/items/pair/report").json()
        assert report["command"] == "compare" and report["result"]["regions"]
        assert client.get(f"/v1/jobs/{job['id']}/items/pair/files/aligned_reference.png").status_code == 200
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_bad_uploads_get_documented_errors(server: InProcessService) -> None:
    good = make_authentic(1, size=256).file_bytes
    bomb = _png_header_only(20000, 20000)  # 400 MP announced: refused from the header, before any decoding
    with server.client() as client:
        cases = [
            (client.post("/v1/analyses", files={"image": ("notes.jpg", b"minutes of the meeting")}), 415,
             "not_an_image"),
            (client.post("/v1/analyses", files={"image": ("cut.jpg", good[: len(good) // 2])}), 422,
             "unreadable_image"),
            (client.post("/v1/analyses", files={"image": ("bomb.png", bomb)}), 413, "too_many_pixels"),
            (client.post("/v1/analyses", files={"image": ("huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 3_100_000)}),
             413, "upload_too_large"),
            (client.post("/v1/batches",
                         files={"archive": ("evil.zip", zip_bytes({"../../etc/cron.d/x.jpg": good}))}),
             400, "unsafe_archive"),
            (client.post("/v1/batches",
                         files={"archive": ("bomb.zip", zip_bytes({"zeros.png": b"\0" * 2_000_000}))}),
             400, "unsafe_archive"),
            (client.post("/v1/analyses", files={"image": ("a.jpg", good)}, data={"detectors": "tea-leaves"}), 422,
             "unknown_detector"),
            (client.get("/v1/jobs/does-not-exist"), 404, "not_found"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (code, response.text)
            body = response.json()
            assert body["error"]["code"] == code and "Traceback" not in response.text


def test_a_list_offset_beyond_any_job_count_is_a_422_not_a_500(server: InProcessService) -> None:
    with server.client() as client:
        huge = client.get("/v1/jobs", params={"offset": 10 ** 30})
        assert huge.status_code == 422 and huge.json()["error"]["code"] == "invalid_request", huge.text
        largest = client.get("/v1/jobs", params={"offset": 2 ** 63 - 1}).json()
        assert largest["jobs"] == [] and largest["offset"] == 2 ** 63 - 1


def _upload_folders(server: InProcessService) -> set[str]:
    uploads = server.data_dir / "uploads"
    return {path.name for path in uploads.iterdir()} if uploads.exists() else set()


def test_malformed_batches_get_400_and_leave_nothing_behind(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr("x.png", png)
    bad_crc = bytearray(stored.getvalue())
    bad_crc[60] ^= 0xFF  # inside x.png's data: the CRC no longer matches
    lying = bytearray(stored.getvalue())
    central = lying.index(b"PK\x01\x02")
    lying[central + 24:central + 28] = (10).to_bytes(4, "little")  # uncompressed size: 10 bytes, not the PNG's
    before = _upload_folders(server)
    with server.client() as client:
        cases = [(zip_bytes({"manifest.json": manifest, "x.png": png}), "bad_manifest")
                 for manifest in (b"5", b"null", b'{"items": 5}', b'[{"image": ["x.png"]}]',
                                  b'[{"reference": "x.png"}]')]
        cases += [(bytes(bad_crc), "bad_archive"), (bytes(lying), "bad_archive")]
        for archive, code in cases:
            response = client.post("/v1/batches", files={"archive": ("a.zip", archive)})
            assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
            assert "a.zip" in response.json()["error"]["message"]
        huge = b"\x89PNG\r\n\x1a\n" + b"\0" * 3_100_000
        too_big = client.post("/v1/analyses", files={"image": ("huge.png", huge)})
        empty = client.post("/v1/analyses", files={"image": ("empty.png", b"")})
        assert (too_big.status_code, empty.status_code) == (413, 422)
        assert _upload_folders(server) == before
        # upload names that are also the server's folder names are just names
        for files in ({"archive": ("archive", zip_bytes({"x.png": png}))},
                      [("files", ("x.png", png)), ("archive", ("00000", zip_bytes({"y.png": png})))]):
            response = client.post("/v1/batches", files=files, data={"detectors": "grain"})
            assert response.status_code == 202, response.text
            server.wait_job(client, response.json()["job_id"])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width`` x ``height`` (8-bit gray) followed by a token of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_direct_files_and_zip_members_get_the_same_checks(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    big_tiff = io.BytesIO()
    Image.new("L", (64, 48), 100).save(big_tiff, format="TIFF", big_tiff=True)
    bomb = _png_header_only(20000, 20000)  # 400 MP announced, beyond the 200 MP default
    before = _upload_folders(server)
    with server.client() as client:
        # BigTIFF: read by the CLI's loader, so accepted by the API too
        assert client.post("/v1/analyses", files={"image": ("big.tif", big_tiff.getvalue())},
                           data={"detectors": "grain"}).status_code == 202
        refused = [
            (client.post("/v1/batches", files=[("files", ("x.png", png)), ("files", ("bomb.png", bomb))]),
             413, "too_many_pixels", "bomb.png"),
            (client.post("/v1/batches",
                         files={"archive": ("b.zip", zip_bytes({"x.png": png, "d/bomb.png": bomb}))}),
             413, "too_many_pixels", "d/bomb.png"),
            (client.post("/v1/batches", files=[("files", (f"s{n}.bmp", b"BM\0\0")) for n in range(60)]),
             400, "too_many_files", "at most 50"),
            (client.post("/v1/batches", files=[("files", ("notes.txt", b"minutes"))]), 415, "not_an_image",
             "notes.txt"),
            (client.post("/v1/batches", files={"archive": ("m.zip", zip_bytes({"x.png": png, "readme.txt": b"hi",
                                                                          "manifest.json": b'["readme.txt"]'}))}),
             400, "bad_manifest", "m.zip"),
            (client.post("/v1/batches", files={"archive": ("m.zip", zip_bytes({
                "x.png": png, "readme.txt": b"hi", "manifest.json": b'[{"image": "readme.txt"}]'}))}),
             400, "bad_manifest", "readme.txt"),
        ]
        for response, status, code, named in refused:
            assert response.status_code == status and response.json()["error"]["code"] == code, response.text
            assert named in response.json()["error"]["message"]
        assert len(_upload_folders(server) - before) == 1  # only the BigTIFF's
        # non-image members are skipped, and the job says which
        mixed = zip_bytes({"x.png": png, "readme.txt": b"scanned 1931", "old.zip": zip_bytes({"y.png": png})})
        created = client.post("/v1/batches", files={"archive": ("mixed.zip", mixed)}, data={"detectors": "grain"})
        assert created.status_code == 202 and created.json()["items"] == 1
        job = server.wait_job(client, created.json()["job_id"])
        assert job["state"] == "done" and created.json()["notes"] == job["notes"]
        skipped = [note.split(" skipped")[0] for note in job["notes"]]
        assert skipped == ["mixed.zip: readme.txt", "mixed.zip: old.zip"]


def test_batch_zip_with_manifest_and_one_bad_item(server: InProcessService) -> None:
    pair = make_pair(8, size=320, edit="none")
    members = {"a.png": pair.reference_bytes, "b.jpg": pair.questioned_bytes,
               "scan.jpg": make_authentic(4, size=256).file_bytes, "broken.jpg": b"\xff\xd8\xff\xe0broken",
               "manifest.json": b'{"items": [{"id": "pair", "reference": "a.png", "questioned": "b.jpg"},'
                                b' {"id": "single", "image": "scan.jpg"}, {"id": "bad", "image": "broken.jpg"}]}'}
    with server.client() as client:
        created = client.post("/v1/batches", files={"archive": ("batch.zip", zip_bytes(members))},
                              data={"detectors": FAST})
        assert created.status_code == 202 and created.json()["items"] == 3
        job = server.wait_job(client, created.json()["job_id"])
        states = {item["id"]: item["state"] for item in job["items"]}
        assert states == {"pair": "done", "single": "done", "bad": "failed"}
        assert job["state"] == "done_with_errors"
        bad = next(item for item in job["items"] if item["id"] == "bad")
        assert "broken.jpg" in bad["error"]


def test_clients_see_only_their_own_file_names(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("x.png", png)}, data={"detectors": "grain"}).json()
        job_id = job_id["job_id"]
        server.wait_job(client, job_id)
        for route in ("report", "files/report.json"):
            report = client.get(f"/v1/jobs/{job_id}/items/image/{route}").json()
            assert [(entry["name"], entry["path"]) for entry in report["inputs"]] == [("x.png", None)], route
        members = {"box1/broken.jpg": b"\xff\xd8\xff\xe0broken", "box1/fine.png": png}
        created = client.post("/v1/batches", files={"archive": ("batch.zip", zip_bytes(members))},
                              data={"detectors": "grain"})
        job = server.wait_job(client, created.json()["job_id"])
        assert [item["inputs"] for item in job["items"]] == [["broken.jpg"], ["fine.png"]]
        error = job["items"][0]["error"]
        assert error.startswith("broken.jpg: ") and "uploads" not in error and str(server.data_dir) not in error


def test_an_input_is_served_as_the_image_it_is_whatever_its_name(server: InProcessService) -> None:
    # a valid JPEG can carry HTML in a comment; named 'x.html' and served by its name it would run as a page of
    # the service's origin (where the browser page keeps the API key), so the type comes from the content
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 96), np.uint8)).save(
        buffer, format="JPEG", comment=b"<script>alert(document.domain)</script>")
    with server.client() as client:
        for name in ("scan.html", "scan.svg", "scan"):
            created = client.post("/v1/analyses", files={"image": (name, buffer.getvalue())},
                                  data={"detectors": "grain"})
            job = server.wait_job(client, created.json()["job_id"])
            served = client.get(f"/v1/jobs/{job['id']}/items/image/inputs/0")
            assert served.status_code == 200 and served.content == buffer.getvalue()
            assert served.headers["content-type"] == "image/jpeg", name
            assert served.headers["x-content-type-options"] == "nosniff"


def test_images_too_small_to_analyse_are_refused_at_submission(server: InProcessService) -> None:
    fine = image_bytes(np.full((64, 64), 128, np.uint8))
    tiny, thin = image_bytes(np.full((7, 7), 128, np.uint8)), image_bytes(np.full((100000, 10), 128, np.uint8))
    before = _upload_folders(server)
    with server.client() as client:
        refused = [
            (client.post("/v1/analyses", files={"image": ("7x7.png", tiny)}), "7x7.png: the image is 7x7"),
            (client.post("/v1/analyses", files={"image": ("thin.png", thin)}), "thin.png: the image is 10x100000"),
            (client.post("/v1/comparisons", files={"reference": ("r.png", fine), "questioned": ("q.png", tiny)}),
             "q.png"),
            (client.post("/v1/batches", files=[("files", ("ok.png", fine)), ("files", ("tiny.png", tiny))]),
             "tiny.png"),
            (client.post("/v1/batches",
                         files={"archive": ("s.zip", zip_bytes({"ok.png": fine, "d/tiny.png": tiny}))}),
             "s.zip: d/tiny.png"),
        ]
        for response, named in refused:
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "image_too_small" and named in error["message"]
            assert "at least 32 x 32 pixels" in error["message"]
        assert _upload_folders(server) == before
        # with a manifest only the members it names become items, and only they must be large enough
        manifest = b'[{"image": "ok.png"}]'
        accepted = client.post("/v1/batches", files={"archive": ("m.zip", zip_bytes({
            "ok.png": fine, "thumb.png": tiny, "manifest.json": manifest}))}, data={"detectors": "grain"})
        assert accepted.status_code == 202 and accepted.json()["items"] == 1, accepted.text


def test_a_repeated_zip_member_name_is_refused_naming_it(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    before = _upload_folders(server)
    with server.client() as client:
        for order in (["a.jpg", "a.jpg", "b.jpg"], ["a.jpg", "b.jpg", "a.jpg"]):
            archive = zip_bytes([(name, png) for name in order])
            response = client.post("/v1/batches", files={"archive": ("twice.zip", archive)})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_archive", response.text
            message = response.json()["error"]["message"]
            assert "twice.zip" in message and "'a.jpg'" in message and "b.jpg" not in message
            assert "/" not in message and "Errno" not in message
    assert _upload_folders(server) == before


def test_a_csv_manifest_saved_by_a_spreadsheet_is_read(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        # Excel's "CSV UTF-8" starts with a byte-order mark; cells are read stripped and column names in any
        # case, as the CLI reads its CSVs
        for manifest, item_id in (("\ufeffimage,id\r\nr.jpg,first\r\n", "first"),
                                  ("\ufeff image , id \r\n r.jpg , second \r\n", "second"),
                                  ("Image,ID\r\nr.jpg,third\r\n", "third")):
            response = client.post("/v1/batches", files={"archive": ("sheet.zip", zip_bytes({
                "r.jpg": png, "manifest.csv": manifest.encode()}))}, data={"detectors": "grain"})
            assert response.status_code == 202, response.text
            job = client.get(f"/v1/jobs/{response.json()['job_id']}").json()
            assert [(item["id"], item["inputs"]) for item in job["items"]] == [(item_id, ["r.jpg"])]


def test_a_csv_manifest_is_read_in_every_shape_spreadsheets_save(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    rows = [["Image", "ID"], ["r.jpg", "first"], ["s.jpg", "second"]]
    shapes = {"semicolon": ("\r\n".join(";".join(row) for row in rows) + "\r\n").encode("utf-8-sig"),
              "utf16-tabs": ("\r\n".join("\t".join(row) for row in rows) + "\r\n").encode("utf-16"),
              "cr-only": ("\r".join(",".join(row) for row in rows) + "\r").encode()}
    before = _upload_folders(server)
    with server.client() as client:
        for shape, manifest in shapes.items():
            response = client.post("/v1/batches", files={"archive": ("sheet.zip", zip_bytes({
                "r.jpg": png, "s.jpg": png, "manifest.csv": manifest}))}, data={"detectors": "grain"})
            assert response.status_code == 202, (shape, response.text)
            job = client.get(f"/v1/jobs/{response.json()['job_id']}").json()
            assert [(item["id"], item["inputs"]) for item in job["items"]] == [
                ("first", ["r.jpg"]), ("second", ["s.jpg"])], shape
        before |= _upload_folders(server)
        # refused naming the archive, the manifest and the line: a legacy code page, a first row of file names
        for manifest, expected in (("image\nr.jpg\ncafé.jpg\n".encode("cp1252"),
                                    "sheet.zip: manifest.csv: the CSV is not UTF-8 text (line 3 holds byte 0xe9"),
                                   (b"r.jpg,first\ns.jpg,second\n", "sheet.zip: manifest.csv line 1: the first "
                                                                    "row must name the columns")):
            response = client.post("/v1/batches", files={"archive": ("sheet.zip", zip_bytes({
                "r.jpg": png, "s.jpg": png, "manifest.csv": manifest}))})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_manifest"
            assert expected in response.json()["error"]["message"], response.text
    assert _upload_folders(server) == before


def _zip_without_utf8_flag(members: dict[str, bytes]) -> bytes:
    """A zip whose names are UTF-8 bytes without the UTF-8 flag, as Info-ZIP's zip and macOS write them."""
    placeholders = {name: "".join(char if char.isascii() else "x" * len(char.encode()) for char in name)
                    for name in members}
    archive = zip_bytes({placeholders[name]: data for name, data in members.items()})
    for name, placeholder in placeholders.items():  # same length, so every offset in the zip stays right
        archive = archive.replace(placeholder.encode(), name.encode())
    return archive


def test_manifest_names_match_members_as_zip_tools_and_spreadsheets_write_them(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    composed = "café.png"
    decomposed = unicodedata.normalize("NFD", composed)
    # a folder zipped on a Mac: names UTF-8 without the flag, 'é' decomposed, the manifest beside the scans;
    # the manifest typed on Windows: 'é' composed, another case, '\\' between folders
    members = {f"scans/{decomposed}": png, "scans/Box/Scan.PNG": png,
               "scans/manifest.csv": f"id,image\nc,{composed}\ns,box\\scan.png\n".encode()}
    with server.client() as client:
        response = client.post("/v1/batches", files={"archive": ("mac.zip", _zip_without_utf8_flag(members))},
                               data={"detectors": "grain"})
        assert response.status_code == 202, response.text
        job = client.get(f"/v1/jobs/{response.json()['job_id']}").json()
        assert [(item["id"], item["inputs"]) for item in job["items"]] == [("c", [decomposed]),
                                                                           ("s", ["Scan.PNG"])]
        # without a manifest, the names (and the ids made from them) read as written, not as code page 437
        del members["scans/manifest.csv"]
        response = client.post("/v1/batches", files={"archive": ("mac.zip", _zip_without_utf8_flag(members))},
                               data={"detectors": "grain"})
        job = client.get(f"/v1/jobs/{response.json()['job_id']}").json()
        assert [unicodedata.normalize("NFC", item["id"]) for item in job["items"]] == [composed, "Scan.PNG"]
        assert [item["inputs"] for item in job["items"]] == [[decomposed], ["Scan.PNG"]]
        # what cannot be told apart is refused naming it
        for members, expected in (({"a.png": png, "A.PNG": png, "manifest.json": b'[{"image": "a.Png"}]'},
                                   "names 'a.Png', which matches"),
                                  ({"a.png": png, "manifest.json": b'[{"image": "a.png"}]',
                                    "old/manifest.csv": b"image\na.png\n"}, "holds two manifests")):
            response = client.post("/v1/batches", files={"archive": ("two.zip", zip_bytes(members))})
            assert response.status_code == 400 and response.json()["error"]["code"] == "bad_manifest"
            assert "two.zip" in response.json()["error"]["message"] and expected in response.json()["error"][
                "message"], response.text


def test_files_the_zipping_system_adds_are_ignored_and_an_empty_zip_is_named(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    apple_double = b"\x00\x05\x16\x07" + b"\x00" * 78  # the resource fork macOS stores as __MACOSX/._name
    # zipped on a Mac: each scan has its '__MACOSX/._' twin, so 30 scans are 60 members, beyond the limit of 50
    members = {f"scans/{n:02d}.png": png for n in range(30)}
    members |= {f"__MACOSX/scans/._{n:02d}.png": apple_double for n in range(30)}
    members |= {"scans/.DS_Store": b"\x00\x00\x00\x01Bud1", "scans/Thumbs.db": b"\xd0\xcf\x11\xe0"}
    before = _upload_folders(server)
    with server.client() as client:
        response = client.post("/v1/batches", files={"archive": ("mac.zip", zip_bytes(members))},
                               data={"detectors": "grain"})
        assert response.status_code == 202, response.text
        assert response.json()["items"] == 30 and response.json()["notes"] == []
        before |= _upload_folders(server)
        for archive in (zip_bytes({}), zip_bytes({"scans/": b"", "__MACOSX/._scans": apple_double})):
            response = client.post("/v1/batches", files={"archive": ("empty.zip", archive)})
            assert response.status_code == 422 and response.json()["error"]["code"] == "empty_batch"
            assert response.json()["error"]["message"].startswith("empty.zip: the archive holds no files")
    assert _upload_folders(server) == before


def test_item_ids_from_file_names_are_unique_and_inputs_keep_the_clients_names(server: InProcessService) -> None:
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        # no manifest: ids come from the names, made unique (the folder path where it tells them apart)
        for members, ids, inputs in (
            ({"box1/001.jpg": png, "box2/001.jpg": png}, ["box1_001.jpg", "box2_001.jpg"], ["001.jpg", "001.jpg"]),
            ({"фото.jpg": png, "снимок.jpg": png}, ["фото.jpg", "снимок.jpg"], ["фото.jpg", "снимок.jpg"]),
            ({"a b.jpg": png, "a_b.jpg": png}, ["a_b.jpg", "a_b-2.jpg"], ["a b.jpg", "a_b.jpg"]),
            # on a case-insensitive file system these two would share one folder
            ({"Scan.jpg": png, "scan.jpg": png}, ["Scan.jpg", "scan-2.jpg"], ["Scan.jpg", "scan.jpg"]),
        ):
            created = client.post("/v1/batches", files={"archive": ("n.zip", zip_bytes(members))},
                                  data={"detectors": "grain"})
            assert created.status_code == 202, created.text
            job = client.get(f"/v1/jobs/{created.json()['job_id']}").json()
            assert [item["id"] for item in job["items"]] == ids
            assert [item["inputs"] for item in job["items"]] == [[name] for name in inputs]
        # a file sent directly keeps its name too, and an archive member cannot take a direct file's id
        created = client.post("/v1/batches", files=[("files", ("фото.jpg", png)),
                                                    ("archive", ("n.zip", zip_bytes({"00000-фото.jpg": png})))],
                              data={"detectors": "grain"})
        job = server.wait_job(client, created.json()["job_id"])
        assert [(item["id"], item["inputs"]) for item in job["items"]] == [
            ("00000-фото.jpg", ["фото.jpg"]), ("00000-фото-2.jpg", ["00000-фото.jpg"])]
        report = client.get(f"/v1/jobs/{job['id']}/items/00000-фото.jpg/report").json()
        assert [entry["name"] for entry in report["inputs"]] == ["фото.jpg"]
        # a manifest's ids are the client's own: a repeated one is refused, naming the archive and the id
        manifest = b'[{"id": "x", "image": "a.png"}, {"id": "x", "image": "b.png"}]'
        refused = client.post("/v1/batches", files={"archive": ("dup.zip", zip_bytes({
            "a.png": png, "b.png": png, "manifest.json": manifest}))})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_manifest"
        assert "dup.zip" in refused.json()["error"]["message"] and "'x'" in refused.json()["error"]["message"]
        # and so are two that differ only in case, as the command line's pairs CSV refuses them
        manifest = b'[{"id": "Lenin", "image": "a.png"}, {"id": "lenin", "image": "b.png"}]'
        refused = client.post("/v1/batches", files={"archive": ("case.zip", zip_bytes({
            "a.png": png, "b.png": png, "manifest.json": manifest}))})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_manifest"
        assert "'Lenin' and 'lenin'" in refused.json()["error"]["message"]


def test_delete_removes_uploads_and_cancels_running_items(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slow = make_forgery(300, method="diffusion", size=448).file_bytes
    with in_process_service(data) as server, server.client() as client:
        def submit(image: bytes, detectors: str) -> str:
            return client.post("/v1/analyses", files={"image": ("scan.jpg", image)},
                               data={"detectors": detectors}).json()["job_id"]

        tiny = image_bytes(np.full((64, 64), 90, np.uint8))
        finished = submit(tiny, "grain")
        server.wait_job(client, finished)
        assert client.delete(f"/v1/jobs/{finished}").status_code == 204
        assert not (data / "jobs" / finished).exists() and not list((data / "uploads").iterdir())

        running = submit(slow, "grain,ela,clone")  # about a second: caught running
        deadline = time.time() + 60
        while client.get(f"/v1/jobs/{running}").json()["state"] != "running" and time.time() < deadline:
            time.sleep(0.02)
        assert client.delete(f"/v1/jobs/{running}").status_code == 204
        # one worker: once a job submitted after the delete is done, the deleted job's item has finished too
        server.wait_job(client, submit(tiny, "grain"))
        time.sleep(0.2)  # the dispatcher's clean-up runs just after the worker returns
        assert not (data / "jobs" / running).exists()
        assert client.get(f"/v1/jobs/{running}").status_code == 404
        assert len(list((data / "uploads").iterdir())) == 1  # only the last job's upload


def _one_finished_analysis(data_dir: Path, image: bytes) -> str:
    """Start a service on ``data_dir``, run one grain analysis of ``image`` to its end, stop it; the job's id."""
    with in_process_service(data_dir) as server, server.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("scan.png", image)},
                             data={"detectors": "grain"}).json()["job_id"]
        server.wait_job(client, job_id)
    return job_id


def test_a_relative_data_dir_keeps_working_after_a_restart_from_another_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the default --data-dir is relative: paths stored relative to the first server's working folder pointed
    # nowhere once it was started from elsewhere, so a delete left the job's uploads on disk for ever
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    tiny = image_bytes(np.full((64, 64), 90, np.uint8))
    monkeypatch.chdir(first)
    job_id = _one_finished_analysis(Path("data"), tiny)
    monkeypatch.chdir(second)
    with in_process_service(first / "data") as server, server.client() as client:
        assert client.get(f"/v1/jobs/{job_id}/items/image/inputs/0").content == tiny
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not list((first / "data" / "uploads").iterdir())


def test_an_input_no_longer_where_it_was_stored_is_a_404_not_a_500(tmp_path: Path) -> None:
    # an upload removed from disk behind the service's back (or a job deleted while its input is fetched): the
    # stored path points nowhere, which FileResponse turned into a 500 internal error
    data = tmp_path / "data"
    job_id = _one_finished_analysis(data, image_bytes(np.full((64, 64), 90, np.uint8)))
    shutil.rmtree(data / "uploads")
    with in_process_service(data) as server, server.client() as client:
        for route in ("inputs/0", "inputs/0/preview"):
            gone = client.get(f"/v1/jobs/{job_id}/items/image/{route}")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found", (route, gone.text)


def _set_recorded_inputs(data_dir: Path, job_id: str, inputs: list[str] | None = None, *,
                         absolute_from: Path | None = None, state: str | None = None) -> None:
    """Rewrite a job's items in the database, with the server stopped or running: its recorded ``inputs``, or
    every input made absolute under ``absolute_from`` as the service recorded them before they were stored
    relative to the data folder; ``state`` 'running' leaves them as a process killed mid-item does."""
    with closing(sqlite3.connect(data_dir / "jobs.sqlite3")) as db, db:
        for item_id, recorded in db.execute("SELECT item_id, inputs FROM items WHERE job_id = ?", (job_id,)):
            paths = inputs if inputs is not None else json.loads(recorded)
            if absolute_from is not None:
                paths = [str(absolute_from / path) for path in paths]
            db.execute("UPDATE items SET inputs = ?, state = COALESCE(?, state) WHERE job_id = ? AND item_id = ?",
                       (json.dumps(paths), state, job_id, item_id))


@pytest.mark.parametrize("recorded", ["relative", "absolute as before"])
def test_a_moved_data_folder_keeps_its_jobs_inputs_and_clean_deletes(tmp_path: Path, recorded: str) -> None:
    # an operator stops the service, moves its data folder and starts it on the new place: jobs recorded with
    # absolute paths lost their inputs (404, queued items failing) and a delete left their uploads behind
    old, new = tmp_path / "data", tmp_path / "big" / "retouch-data"  # moved and renamed
    tiny, other = (image_bytes(np.full((64, 64), grey, np.uint8)) for grey in (90, 150))
    with in_process_service(old) as server, server.client() as client:
        finished, interrupted = (
            client.post("/v1/analyses", files={"image": ("scan.png", image)}, data={"detectors": "grain"}
                        ).json()["job_id"] for image in (tiny, other))
        for job_id in (finished, interrupted):
            server.wait_job(client, job_id)
    if recorded == "absolute as before":
        for job_id in (finished, interrupted):
            _set_recorded_inputs(old, job_id, absolute_from=old)
    _set_recorded_inputs(old, interrupted, state="running")  # runs again on restart, from its stored input
    new.parent.mkdir()
    old.rename(new)
    with in_process_service(new) as server, server.client() as client:
        listed = client.get("/v1/jobs").json()
        assert {job["id"] for job in listed["jobs"]} == {finished, interrupted}
        item = f"/v1/jobs/{finished}/items/image"
        assert client.get(f"{item}/report").json()["inputs"][0]["name"] == "scan.png"
        assert client.get(f"{item}/files/suspect_mask.png").status_code == 200
        served = client.get(f"{item}/inputs/0")
        assert served.status_code == 200 and served.content == tiny, served.text
        assert client.get(f"{item}/inputs/0/preview").status_code == 200
        rerun = server.wait_job(client, interrupted)
        assert rerun["state"] == "done" and rerun["items"][0]["completions"] == 2, rerun
        assert client.get(f"/v1/jobs/{interrupted}/items/image/inputs/0").content == other
        for job_id in (finished, interrupted):
            assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not list((new / "jobs").iterdir()) and not list((new / "uploads").iterdir())


def test_a_recorded_input_outside_the_data_folder_is_neither_served_nor_deleted(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    tiny = image_bytes(np.full((64, 64), 90, np.uint8))
    job_id = _one_finished_analysis(data, tiny)
    with closing(sqlite3.connect(data / "jobs.sqlite3")) as db:
        [own] = json.loads(db.execute("SELECT inputs FROM items").fetchone()[0])
    request = Path(own).parts[-2]  # the upload's request folder, uploads/<request>/scan.png
    # a copy of the data folder beside it: an absolute record of the copy's upload is read in this folder
    copy = outside / "uploads" / request / "scan.png"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"the copy's file")
    secret = outside / "secret.png"
    secret.write_bytes(image_bytes(np.full((64, 64), 200, np.uint8)))
    with in_process_service(data) as server, server.client() as client:
        _set_recorded_inputs(data, job_id, [str(copy)])
        assert client.get(f"/v1/jobs/{job_id}/items/image/inputs/0").content == tiny
        for escaping in ("../outside/secret.png", str(secret), "uploads/../../outside/secret.png",
                         f"uploads/{request}/../../../outside/secret.png"):
            _set_recorded_inputs(data, job_id, [escaping])
            for route in ("inputs/0", "inputs/0/preview"):
                refused = client.get(f"/v1/jobs/{job_id}/items/image/{route}")
                assert refused.status_code == 404, (escaping, route, refused.text)
        # queued again with such a record, the item fails without its input being read
        _set_recorded_inputs(data, job_id, ["../outside/secret.png"], state="queued")
        [item] = server.wait_job(client, job_id)["items"]
        assert item["state"] == "failed" and "not among this data folder's uploads" in item["error"], item
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert secret.exists() and copy.exists()


def test_recorded_inputs_resolve_under_the_current_data_folder_only(tmp_path: Path) -> None:
    data, request = tmp_path / "moved" / "data", "0123456789abcdef0123456789abcdef"
    upload = data / "uploads" / request / "members" / "00001" / "scan.png"
    assert recorded_input(upload, data) == f"uploads/{request}/members/00001/scan.png"
    assert resolve_input(recorded_input(upload, data), data) == upload
    # absolute, as recorded before: re-rooted from the last uploads/<request>, even under a folder named so
    for old_root in ("/srv/retouch-data", f"/mnt/uploads/{request}/retouch-data"):
        assert resolve_input(f"{old_root}/uploads/{request}/members/00001/scan.png", data) == upload
    assert resolve_input(f"/srv/data/uploads/{request}/uploads", data) == data / "uploads" / request / "uploads"
    for outside in ("/etc/passwd", "../secret.png", "jobs.sqlite3", "uploads/scan.png", f"uploads/{request}",
                    f"uploads/{request}/../../jobs.sqlite3", f"/srv/data/uploads/{request}/../../../etc/passwd",
                    "uploads/not-a-request-folder/scan.png"):
        assert resolve_input(outside, data) is None, outside
    (data / "uploads" / request).mkdir(parents=True)
    (data / "uploads" / request / "link.png").symlink_to(tmp_path / "secret.png")
    assert resolve_input(f"uploads/{request}/link.png", data) is None


def test_api_key_protects_everything_but_health(tmp_path: Path) -> None:
    # (that the key is asked for before a body is read is shown on a real server: test_api_server.py)
    with in_process_service(tmp_path / "data", api_key="s3cret") as server, server.client() as client:
        assert client.get("/health").status_code == 200
        denied = client.get("/v1/jobs")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        wrong = client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_urls_naming_no_job_item_or_file_get_a_404_json_however_they_are_spelt(server: InProcessService) -> None:
    # a file name longer than the file system takes made the files route's is_file() raise: a 500, not a 404
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("x.png", png)}, data={"detectors": "grain"})
        job_id = job_id.json()["job_id"]
        server.wait_job(client, job_id)
        item = f"/v1/jobs/{job_id}/items/image"
        for path in ("/v1/jobs/%2e%2e", "/v1/jobs/" + "a" * 5000, "/v1/jobs/%ED%A0%80", "/v1/jobs/%00",
                     f"/v1/jobs/{job_id}/items/%2e%2e/report", f"/v1/jobs/{job_id}/items/{'a' * 5000}/report",
                     f"/v1/jobs/{job_id}/items/..%2F..%2Fjobs.sqlite3/report",
                     f"{item}/files/%2e%2e%2freport.json",
                     f"{item}/files/{'a' * 300}.png", f"{item}/files/{'a' * 5000}.png", f"{item}/inputs/7",
                     f"{item}/inputs/{'9' * 40}/preview"):
            response = client.get(path)
            assert response.status_code == 404, (path[:100], response.text[:200])
            body = json.loads(response.content.decode("utf-8"))  # strict UTF-8: no lone surrogates
            assert body["error"]["code"] == "not_found", path[:100]


def _zip_claiming_utf8(members: dict[str, bytes], name: bytes) -> bytes:
    """A zip of ``members`` whose first member's name is ``name`` (raw bytes) with the UTF-8 flag set."""
    first = next(iter(members))
    archive = bytearray(zip_bytes(members))
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # flags: at offset 6 in the local, 8 in the central header
        at = archive.index(header) + (6 if header == b"PK\x03\x04" else 8)
        archive[at:at + 2] = (int.from_bytes(archive[at:at + 2], "little") | 0x800).to_bytes(2, "little")
    assert len(name) == len(first.encode())  # same length: every offset in the zip stays right
    return bytes(archive).replace(first.encode(), name)


def test_a_zip_whose_names_claim_utf8_but_are_not_is_a_400_naming_the_archive(server: InProcessService) -> None:
    # zipfile decodes a flagged name strictly while reading the directory: its UnicodeDecodeError was a 500
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    before = _upload_folders(server)
    with server.client() as client:
        archive = _zip_claiming_utf8({"xx.png": png, "ok.png": png}, b"\xff\xfe.png")
        response = client.post("/v1/batches", files={"archive": ("latin.zip", archive)})
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_archive", response.text
        message = response.json()["error"]["message"]
        assert message.startswith("latin.zip: ") and "UTF-8" in message and "re-create the zip" in message
    assert _upload_folders(server) == before


def test_an_item_id_ending_in_partial_keeps_its_results(server: InProcessService) -> None:
    # item 'x' ran in the folder 'x.partial', which is item 'x.partial''s own: running 'x' removed the other
    # item's finished reports, and fetching them was a 500
    first, second = (image_bytes(np.clip(np.random.default_rng(seed).normal(120, 15, (64, 64)), 0, 255)
                                 .astype(np.uint8))
                     for seed in (1, 2))
    manifest = b'[{"id": "x.partial", "image": "y.png"}, {"id": "x", "image": "x.png"}]'
    with server.client() as client:
        created = client.post("/v1/batches", files={"archive": ("p.zip", zip_bytes({
            "x.png": first, "y.png": second, "manifest.json": manifest}))}, data={"detectors": "grain"})
        assert created.status_code == 202, created.text
        job = server.wait_job(client, created.json()["job_id"])
        assert [(item["id"], item["state"]) for item in job["items"]] == [("x.partial", "done"), ("x", "done")]
        for item_id, name, data in (("x.partial", "y.png", second), ("x", "x.png", first)):
            report = client.get(f"/v1/jobs/{job['id']}/items/{item_id}/report")
            assert report.status_code == 200, (item_id, report.text)
            assert [entry["name"] for entry in report.json()["inputs"]] == [name]
            assert client.get(f"/v1/jobs/{job['id']}/items/{item_id}/inputs/0").content == data
            assert client.get(f"/v1/jobs/{job['id']}/items/{item_id}/files/report.html").status_code == 200


def test_a_manifest_name_picks_the_member_spelt_so_when_two_differ_in_unicode_form_only(
        server: InProcessService) -> None:
    # 'café.png' with 'é' as one character and as 'e' and an accent: the manifest's exact name took whichever
    # member came last, so an item silently analysed the other scan
    composed = "café.png"
    decomposed = unicodedata.normalize("NFD", composed)
    first, second = image_bytes(np.full((64, 64), 60, np.uint8)), image_bytes(np.full((64, 64), 200, np.uint8))
    with server.client() as client:
        for named, expected in ((composed, first), (decomposed, second)):
            manifest = json.dumps([{"id": "one", "image": named}], ensure_ascii=False).encode()
            archive = zip_bytes([(composed, first), (decomposed, second), ("manifest.json", manifest)])
            created = client.post("/v1/batches", files={"archive": ("nfc.zip", archive)},
                                  data={"detectors": "grain"})
            assert created.status_code == 202, created.text
            job = server.wait_job(client, created.json()["job_id"])
            assert client.get(f"/v1/jobs/{job['id']}/items/one/inputs/0").content == expected, ascii(named)
        # a name that matches both only once case is ignored cannot be told apart: refused, naming both
        manifest = json.dumps([{"image": "CAFÉ.png"}], ensure_ascii=False).encode()
        refused = client.post("/v1/batches", files={"archive": ("nfc.zip", zip_bytes(
            [(composed, first), (decomposed, second), ("manifest.json", manifest)]))})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_manifest", refused.text
        assert "'CAFÉ.png', which matches" in refused.json()["error"]["message"]


def test_notes_name_skipped_members_without_control_characters(server: InProcessService) -> None:
    # a member named with a line break or a terminal escape was quoted raw in the job's notes: a client printing
    # them got forged lines or coloured text; such names are shown as the error messages show them, quoted
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    members = {"x.png": png, "readme.txt": b"hi", "a\r\nb.txt": b"hi", "\x1b[31mred.txt": b"hi",
               "<script>alert(1)</script>.txt": b"hi"}
    with server.client() as client:
        created = client.post("/v1/batches", files={"archive": ("n.zip", zip_bytes(members))},
                              data={"detectors": "grain"})
        assert created.status_code == 202, created.text
        notes = client.get(f"/v1/jobs/{created.json()['job_id']}").json()["notes"]
        assert notes == created.json()["notes"]
        assert [note.split(" skipped")[0] for note in notes] == [
            "n.zip: readme.txt", r"n.zip: 'a\r\nb.txt'", r"n.zip: '\x1b[31mred.txt'",
            "n.zip: <script>alert(1)</script>.txt"]
        assert all(note.isprintable() for note in notes)


def test_an_input_is_downloaded_under_the_clients_file_name_in_a_safe_header(server: InProcessService) -> None:
    # inputs came without a Content-Disposition: saved from a browser, a scan was named '0', not as sent
    from urllib.parse import unquote

    png = image_bytes(np.full((64, 64), 128, np.uint8))
    names = ["plain.png", "фото.png", 'a"b;c.png', "<img src=x onerror=alert(1)>.png", "100%.png", "it's.png"]
    with server.client() as client:
        created = client.post("/v1/batches",
                              files={"archive": ("n.zip", zip_bytes({name: png for name in names}))},
                              data={"detectors": "grain"})
        job = server.wait_job(client, created.json()["job_id"])
        assert [item["inputs"] for item in job["items"]] == [[name] for name in names]
        for item in job["items"]:
            served = client.get(f"/v1/jobs/{job['id']}/items/{item['id']}/inputs/0")
            header = served.headers["content-disposition"]
            assert served.status_code == 200 and header.isascii() and header.isprintable(), header
            # a quoted ASCII fallback for clients that read only that, then the exact name (RFC 5987)
            parsed = re.fullmatch(r'inline; filename="[^"\\%]*"; filename\*=UTF-8\'\'([A-Za-z0-9_.~%-]+)', header)
            assert parsed is not None and unquote(parsed.group(1), errors="strict") == item["inputs"][0], header


def test_a_file_sent_without_a_file_name_is_a_422_saying_what_to_send(server: InProcessService) -> None:
    # a part without filename= (or with only RFC 2231's filename*=, which multipart forms do not use) is a text
    # field to the parser: the answer read "Expected UploadFile, received: <class 'str'>"
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    for disposition in (b'form-data; name="image"', b"form-data; name=\"image\"; filename*=utf-8''%D1%84.png"):
        body = b"--XyZ\r\nContent-Disposition: " + disposition + b"\r\nContent-Type: image/png\r\n\r\n" + png
        body += b"\r\n--XyZ--\r\n"
        with server.client() as client:
            response = client.post("/v1/analyses", content=body,
                                   headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", response.text
        message = response.json()["error"]["message"]
        assert "image" in message and "filename" in message and "class" not in message, message


def test_a_manifest_id_that_is_not_text_or_names_no_folder_is_refused_naming_the_entry(
        server: InProcessService) -> None:
    # ["a"] was taken as 'a', {"a": 1} as 'a_1', true as 'True', and '..' as 'item0': ids the client never gave
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        for given, expected in ((["a"], "is not text"), ({"a": 1}, "is not text"), (True, "is not text"),
                                (1.5, "is not text"), ("..", "holds no letter or digit"),
                                ("%%", "holds no letter or digit")):
            manifest = json.dumps([{"id": "fine", "image": "x.png"}, {"id": given, "image": "x.png"}]).encode()
            refused = client.post("/v1/batches", files={"archive": ("ids.zip", zip_bytes(
                {"x.png": png, "manifest.json": manifest}))})
            assert refused.status_code == 400, (given, refused.text)
            error = refused.json()["error"]
            assert error["code"] == "bad_manifest" and "ids.zip: manifest.json entry 2" in error["message"], error
            assert expected in error["message"], error
        # a whole number is an id as it is written
        manifest = json.dumps([{"id": 17, "image": "x.png"}]).encode()
        created = client.post("/v1/batches", files={"archive": ("ids.zip", zip_bytes(
            {"x.png": png, "manifest.json": manifest}))}, data={"detectors": "grain"})
        assert created.status_code == 202, created.text
        listed = client.get(f"/v1/jobs/{created.json()['job_id']}").json()["items"]
        assert [item["id"] for item in listed] == ["17"]


def test_a_finished_item_whose_report_left_the_data_folder_is_a_404_not_a_500(server: InProcessService) -> None:
    # a report.json deleted or cut short on disk (a cleanup script, a full disk while it was copied) was a 500
    png = image_bytes(np.full((64, 64), 128, np.uint8))
    with server.client() as client:
        created = client.post("/v1/analyses", files={"image": ("x.png", png)}, data={"detectors": "grain"})
        job = server.wait_job(client, created.json()["job_id"])
        (item,) = job["items"]
        stored = server.data_dir / "jobs" / job["id"] / "items" / item["id"] / "report.json"
        for damage in ("cut", "gone"):
            if damage == "cut":
                stored.write_bytes(stored.read_bytes()[:40])
            else:
                stored.unlink()
            for url in (f"/v1/jobs/{job['id']}/items/{item['id']}/report",
                        f"/v1/jobs/{job['id']}/items/{item['id']}/files/report.json",
                        f"/v1/jobs/{job['id']}/items/{item['id']}/inputs/0"):
                response = client.get(url)
                assert response.status_code == 404, (damage, url, response.text)
                assert response.json()["error"]["code"] == "not_found"
                assert "report is no longer stored" in response.json()["error"]["message"], response.text
