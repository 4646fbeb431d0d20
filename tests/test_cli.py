"""The command line's contract: exit codes 0/1/2, one readable error line, reports with provenance."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from retouch import __version__
from retouch.result import AnalysisResult
from tests.helpers import CliRunner, one_line, retouch_process


def test_version_and_help() -> None:
    done = retouch_process("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"retouch {__version__}"
    shown = retouch_process("--help")
    assert shown.returncode == 0
    for command in ("analyze", "compare"):
        assert command in shown.stdout


def test_misuse_exits_2_with_one_line(cli: CliRunner, tmp_path: Path) -> None:
    misuse = cli("anything.txt")
    assert misuse.returncode == 2
    assert "No such command 'anything.txt'" in one_line(misuse.stderr)
    missing_arg = cli("compare", "only-one.jpg")
    assert missing_arg.returncode == 2
    one_line(missing_arg.stderr)


def test_missing_and_non_image_inputs_exit_2_naming_the_file(cli: CliRunner, tmp_path: Path) -> None:
    missing = cli("analyze", str(tmp_path / "lost.jpg"), "-o", str(tmp_path / "out"))
    assert missing.returncode == 2
    assert "lost.jpg" in one_line(missing.stderr)
    notes = tmp_path / "notes.txt"
    notes.write_text("minutes of the Politburo meeting\n")
    wrong = cli("analyze", str(notes), "-o", str(tmp_path / "out"))
    assert wrong.returncode == 2
    assert "notes.txt" in one_line(wrong.stderr)
    assert not (tmp_path / "out" / "report.json").exists()


def test_truncated_16bit_colour_png_gets_one_line(cli: CliRunner, tmp_path: Path) -> None:
    # 16-bit colour files are read by OpenCV, whose libpng would print its own complaint to stderr if it saw the
    # truncated data before Pillow's decoder refused it
    deep = (np.random.default_rng(0).random((64, 64, 3)) * 65535).astype(np.uint16)
    data = cv2.imencode(".png", deep)[1].tobytes()
    cut = tmp_path / "deep.png"
    cut.write_bytes(data[: len(data) // 2])
    done = cli("analyze", str(cut), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "deep.png: truncated" in one_line(done.stderr)
    assert not (tmp_path / "out").exists()


def test_unknown_detector_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((40, 40), 128, np.uint8))
    done = cli("analyze", str(image), "-o", str(tmp_path / "out"), "--detectors", "tea-leaves")
    assert done.returncode == 2
    assert "tea-leaves" in one_line(done.stderr)


def _explodes(image: np.ndarray) -> AnalysisResult:
    raise RuntimeError("simulated defect")


def test_internal_error_exits_1_with_log(cli: CliRunner, extra_detector: Callable[..., None], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    extra_detector("test-explodes", _explodes, title="fails on purpose", description="raises to test exit code 1",
                   default=False)
    monkeypatch.setenv("RETOUCH_LOG_DIR", str(tmp_path / "logs"))
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((40, 40), 128, np.uint8))
    done = cli("analyze", str(image), "-o", str(tmp_path / "out"), "--detectors", "test-explodes")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "internal error" in line and "simulated defect" in line
    log = Path(re.search(r"details in (\S+)", line).group(1))
    assert "Traceback" in log.read_text()


def test_analyze_writes_complete_report(cli: CliRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scan = np.clip(rng.normal(128, 12, (180, 240)), 0, 255).astype(np.uint8)
    image = tmp_path / "scan.jpg"
    cv2.imwrite(str(image), scan, [cv2.IMWRITE_JPEG_QUALITY, 85])
    before = image.read_bytes()
    out = tmp_path / "report"
    done = cli("analyze", str(image), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"Report: {out / 'report.html'}" in done.stdout
    assert image.read_bytes() == before
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "retouch-report/1" and report["tool"]["version"] == __version__
    [record] = report["inputs"]
    assert record["sha256"] == hashlib.sha256(before).hexdigest()
    assert (record["width"], record["height"], record["format"]) == (240, 180, "JPEG")
    assert report["parameters"]["detectors"], "the parameters record which detectors ran"
    for analysis in report["analyses"]:
        heatmap = cv2.imread(str(out / f"{analysis['method']}.png"), cv2.IMREAD_UNCHANGED)
        assert heatmap.shape == (180, 240) and heatmap.dtype == np.uint8
    mask = cv2.imread(str(out / "suspect_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (180, 240) and set(np.unique(mask)) <= {0, 255}
    page = (out / "report.html").read_text()
    assert "<script" in page and "data:image/jpeg;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "the report must open offline"
    assert not list(out.glob("*.part")), "no temp files left behind"


def test_paths_with_square_brackets_are_printed_as_they_are(cli: CliRunner, tmp_path: Path) -> None:
    # the terminal output is rich markup: '[draft]' in a folder name was taken for a style and dropped, and a
    # path reading '[/x]' (folder 'a[', then 'x]') was a closing tag that crashed the command after its work
    rng = np.random.default_rng(4)
    image = tmp_path / "scan [draft].png"
    cv2.imwrite(str(image), np.clip(rng.normal(128, 12, (96, 128)), 0, 255).astype(np.uint8))
    for out in (tmp_path / "box [old]", tmp_path / "a[" / "x]"):
        done = cli("analyze", str(image), "-o", str(out), "-d", "grain")
        assert done.returncode == 0, done.stderr
        assert f"Report: {out / 'report.html'}" in done.stdout


def test_a_multi_page_tiff_is_analysed_on_its_first_page_and_the_report_says_so(
        cli: CliRunner, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    first, second = (np.clip(rng.normal(mean, 12, (120, 160)), 0, 255).astype(np.uint8) for mean in (90, 170))
    image = tmp_path / "scans.tif"
    Image.fromarray(first).save(image, save_all=True, append_images=[Image.fromarray(second)])
    out = tmp_path / "report"
    done = cli("analyze", str(image), "-o", str(out), "--detectors", "grain")
    assert done.returncode == 0, done.stderr
    assert "scans.tif holds 2 images" in done.stdout and "only the first was analysed" in done.stdout
    [record] = json.loads((out / "report.json").read_text())["inputs"]
    assert (record["pages"], record["page_analysed"]) == (2, 1)
    assert "holds 2 images (pages or frames); only the first was analysed" in (out / "report.html").read_text()
    # and it is the first page that was analysed, not the last one read while counting
    from retouch.io import load_image

    assert np.array_equal(load_image(image).pixels, first)


@pytest.mark.slow
def test_twelve_bit_data_in_a_16_bit_file_are_analysed_like_the_same_picture_at_8_bits(
        cli: CliRunner, tmp_path: Path) -> None:
    from PIL import Image

    from retouch.io import load_image_bytes
    from retouch.samples import make_forgery

    case = make_forgery(9001, method="diffusion", size=512, history="print")
    pixels = load_image_bytes(case.file_bytes, name="scan").pixels
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    Image.fromarray(gray).save(tmp_path / "scan8.png")
    Image.fromarray((gray.astype(np.uint32) * 4095 // 255).astype(np.uint16)).save(tmp_path / "scan12.png")
    masks = {}
    for name in ("scan8.png", "scan12.png"):
        out = tmp_path / name.replace(".", "-")
        done = cli("analyze", str(tmp_path / name), "-o", str(out), "--detectors", "grain,inpaint")
        assert done.returncode == 0, done.stderr
        masks[name] = cv2.imread(str(out / "suspect_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert "scan12.png its 16-bit samples use only the low 12 bits" in " ".join(done.stdout.split())
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"][0]["used_bits"] == 12
    assert "only the low 12 bits" in (out / "report.html").read_text()
    # read as stored, the analyses saw 16 grey levels: grain marked 1.4 % of the picture away from the fill
    # (pixel AUC 0.40), inpaint nothing; shifted up, both give what they give on the 8-bit picture
    found = masks["scan8.png"]
    assert found.sum() >= 0.5 * case.mask.sum() and (found & case.mask.astype(bool)).sum() >= 0.5 * found.sum()
    overlap = (found & masks["scan12.png"]).sum() / (found | masks["scan12.png"]).sum()
    assert overlap >= 0.9


def test_refuses_to_overwrite_an_input(cli: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "overlay.png"
    cv2.imwrite(str(image), np.full((40, 40), 90, np.uint8))
    before = image.read_bytes()
    done = cli("analyze", str(image), "-o", str(tmp_path))
    assert done.returncode == 2
    assert "overwrite an input" in one_line(done.stderr)
    assert image.read_bytes() == before


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes; others must be valid text")
def test_file_names_that_are_not_utf8_are_analysed_and_shown(cli: CliRunner, tmp_path: Path) -> None:
    # Linux file names are bytes (a scan copied from an old Windows or Mac disk keeps its Latin-1 'é'): Python
    # holds such a byte as a lone surrogate, which report.html could not encode (internal error, exit 1)
    from retouch.samples import make_pair

    pair = make_pair(12, size=256, edit="diffusion")
    folder = os.fsencode(tmp_path)
    reference, questioned = folder + b"/r\xe9f.png", folder + b"/d\xe9p\xf4t.jpg"
    Path(os.fsdecode(reference)).write_bytes(pair.reference_bytes)
    Path(os.fsdecode(questioned)).write_bytes(pair.questioned_bytes)
    for command, args in (("analyze", [questioned, b"-d", b"grain"]), ("compare", [reference, questioned])):
        out = tmp_path / command
        # decoded as Python decodes the command line's bytes (os.fsdecode: surrogate escapes)
        done = cli(command, *map(os.fsdecode, args), "-o", str(out))
        assert done.returncode == 0, (command, done.stderr)
        page = (out / "report.html").read_bytes().decode("utf-8")  # valid UTF-8, so a browser shows it
        assert "d\\xe9p\\xf4t.jpg" in page, command
        text = (out / "report.json").read_text(encoding="utf-8")
        assert "\\ud" not in text.lower(), "a lone surrogate escaped in JSON is refused by strict readers"
        assert json.loads(text)["inputs"][-1]["name"] == "d\\xe9p\\xf4t.jpg"


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes; others must be valid text")
def test_an_error_naming_a_file_that_is_not_utf8_shows_its_bytes_as_python_does(tmp_path: Path) -> None:
    # such a name reached the terminal as '\\udce9', a code that names no character and no byte of the file
    missing = os.fsencode(tmp_path) + b"/d\xe9p\xf4t.png"
    done = retouch_process("analyze", missing, "-o", str(tmp_path / "out"), text=False)
    assert done.returncode == 2
    line = one_line(done.stderr.decode("utf-8"))  # valid UTF-8 on any terminal
    assert "d\\xe9p\\xf4t.png" in line and "\\udc" not in line, line


def test_an_output_path_that_is_a_dangling_link_is_named_as_such(cli: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((40, 40), 90, np.uint8))
    (tmp_path / "out").symlink_to(tmp_path / "unmounted" / "reports")
    done = cli("analyze", str(image), "-o", str(tmp_path / "out"), "-d", "grain")
    assert done.returncode == 2
    line = one_line(done.stderr)  # was "out: cannot create the output folder (File exists)"
    assert "out: the output path is a symbolic link to" in line
    assert "unmounted/reports, which does not exist" in line
    assert not (tmp_path / "unmounted").exists()


@pytest.mark.slow
def test_compare_unrelated_photographs_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    from retouch.samples import load_source

    cat, coffee = tmp_path / "cat.png", tmp_path / "coffee.png"
    cv2.imwrite(str(cat), load_source("chelsea")[:, :, ::-1])
    cv2.imwrite(str(coffee), load_source("coffee")[:, :, ::-1])
    done = cli("compare", str(cat), str(coffee), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "these images do not show the same photograph" in line
    assert "cat.png and " in line and "coffee.png:" in line and "check that both are scans" in line, line
    assert not (tmp_path / "out" / "report.json").exists()


def test_compare_writes_every_artifact_in_the_questioned_frame(cli: CliRunner, tmp_path: Path) -> None:
    from retouch.samples import make_pair

    pair = make_pair(12, size=384, edit="diffusion")
    reference, questioned = tmp_path / "ref.png", tmp_path / "q.jpg"
    reference.write_bytes(pair.reference_bytes)
    questioned.write_bytes(pair.questioned_bytes)
    out = tmp_path / "out"
    done = cli("compare", str(reference), str(questioned), "-o", str(out))
    assert done.returncode == 0, done.stderr
    height, width = pair.questioned.shape[:2]
    for name in ("changes_mask.png", "changes_heatmap.png", "aligned_reference.png", "overlay.png"):
        assert cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).shape[:2] == (height, width), name
    assert (out / "flicker.gif").read_bytes()[:6] == b"GIF89a"
    report = json.loads((out / "report.json").read_text())
    assert report["registration"]["inliers"] > 20 and len(report["transform"]["matrix"]) == 3
    assert {entry["role"] for entry in report["inputs"]} == {"reference", "questioned"}


@pytest.mark.slow
def test_degenerate_images_get_reports_not_crashes(cli: CliRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    strip = tmp_path / "strip.jpg"
    cv2.imwrite(str(strip), (rng.random((12, 900, 3)) * 255).astype(np.uint8))
    done = cli("analyze", str(strip), "-o", str(tmp_path / "strip"), "--json")
    assert done.returncode == 2, done.stderr
    assert "strip.jpg: the image is 900x12 pixels" in one_line(done.stderr)
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((300, 300), 128, np.uint8))
    same = cli("compare", str(flat), str(flat), "-o", str(tmp_path / "same"))
    assert same.returncode in (0, 2), same.stderr  # refused or compared, never an internal error
    if same.returncode == 2:
        one_line(same.stderr)
    else:
        assert not same.stderr.strip(), "no warnings"
    if same.returncode == 0:
        assert json.loads((tmp_path / "same" / "report.json").read_text())["result"]["regions"] == []
    # a blank scan, a scan of a white sheet and a black-and-white drawing: block detectors have nothing they can
    # measure (they say so) and nothing is marked, not even by the copy detector, for which every uniform area
    # and every straight edge is its own exact twin
    drawing = np.zeros((300, 400), np.uint8)
    drawing[100:200, 100:200] = 255
    blank, sheet = np.zeros((300, 400), np.uint8), np.full((300, 400, 3), 255, np.uint8)
    for name, pixels in (("black", blank), ("white", sheet), ("drawing", drawing)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), pixels)
        done = cli("analyze", str(tmp_path / f"{name}.png"), "-o", str(tmp_path / name), "--json")
        assert done.returncode == 0, (name, done.stderr)
        report = json.loads((tmp_path / name / "report.json").read_text())
        analyses = {a["method"]: a for a in report["analyses"]}
        assert all(not a["regions"] for a in analyses.values()), name
        if name != "drawing":
            assert all("clipped" in analyses[m]["skipped"] for m in ("ela", "grain", "inpaint")), name
        mask = cv2.imread(str(tmp_path / name / "suspect_mask.png"), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (300, 400) and not mask.any(), name


def _interrupt_once_busy(command: list[str], started: Path | None = None, *, cpu_seconds: float = 1.0
                         ) -> subprocess.CompletedProcess[str]:
    """Run ``retouch`` and press Ctrl-C (SIGINT to its whole process group, as a terminal does) once it is busy:
    after ``started`` exists, or once the process has used ``cpu_seconds`` of CPU (a second: Python and the
    imports are done)."""
    process = subprocess.Popen([sys.executable, "-m", "retouch", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if started is not None:
            if started.exists() and started.stat().st_size:
                break
        else:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            if (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") >= cpu_seconds:
                break
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be interrupted; use a bigger input"
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_ctrl_c_exits_130_with_one_line_and_no_report(tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    cv2.imwrite(str(image), (np.random.default_rng(4).random((900, 900, 3)) * 255).astype(np.uint8))
    for command in (["analyze", str(image), "-o", str(tmp_path / "analyze")],
                    ["compare", str(image), str(image), "-o", str(tmp_path / "compare")]):
        done = _interrupt_once_busy(command)
        assert done.returncode == 130, (command[0], done.stderr)
        assert one_line(done.stderr) == "retouch: error: interrupted"
        assert not (Path(command[-1]) / "report.json").exists()


@pytest.mark.slow
def test_sigterm_while_writing_leaves_no_part_of_the_new_report(tmp_path: Path) -> None:
    # SIGTERM (kill, a closed terminal, a job scheduler) ended the process at once: the maps written so far stayed
    # beside the previous run's others, without a report.json, and a temp file could stay too
    image = tmp_path / "noise.png"
    cv2.imwrite(str(image), (np.random.default_rng(6).random((1000, 1000, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    # one detector at a time: the timing of the write window below is measured on one run and used on the next,
    # and detectors sharing the cores with other work make a run's length vary more
    command = [sys.executable, "-m", "retouch", "analyze", str(image), "-o", str(out), "-d", "ela,grain,jpeg",
               "--threads", "1"]
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0

    def started() -> tuple[subprocess.Popen[str], float]:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while process.poll() is None and (out / "report.json").exists():  # the previous report goes first
            time.sleep(0.005)
        return process, time.perf_counter()

    # how long the run goes on writing after that, on this machine: until its report.json is there (the process
    # then still ends the interpreter, a few tenths of a second in which a SIGTERM finds the report complete)
    process, since = started()
    while process.poll() is None and not (out / "report.json").exists():
        time.sleep(0.005)
    window = time.perf_counter() - since
    assert process.wait(timeout=300) == 0
    for delay in (0.0, 0.3 * window, 0.6 * window):
        process, _ = started()
        time.sleep(delay)
        assert process.poll() is None and not (out / "report.json").exists(), "done before it could be stopped"
        process.terminate()
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 143, (delay, stderr)
        assert one_line(stderr) == "retouch: error: terminated"
        assert sorted(p.name for p in out.iterdir()) == [], delay  # none of the new files, no temp file
        assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_ctrl_c_while_the_command_line_loads_exits_130_with_one_line(tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), (np.random.default_rng(7).random((64, 64)) * 255).astype(np.uint8))
    # a quarter second of CPU in, numpy, OpenCV and the commands are still loading (about a second in all): Python's
    # own handler printed an import traceback there, and under load the test above could land in that window
    done = _interrupt_once_busy(["analyze", str(image), "-o", str(tmp_path / "out")], cpu_seconds=0.25)
    assert done.returncode == 130, done.stderr
    assert one_line(done.stderr) == "retouch: error: interrupted"
    assert not (tmp_path / "out").exists()


PROBE = """
import os, signal, sys
import typer.main
from retouch.cli.app import main

build = typer.main.get_command

def building_when_ctrl_c_lands(typer_app):
    # the interrupt arrives while Typer evaluates a string annotation of a command
    eval("[os.kill(os.getpid(), signal.SIGINT)] + [i for i in range(10**7)]", {"os": os, "signal": signal})
    return build(typer_app)

typer.main.get_command = building_when_ctrl_c_lands
sys.exit(main(["detectors"]))
"""


@pytest.mark.slow
def test_ctrl_c_while_typer_evaluates_annotations_still_exits_130(tmp_path: Path) -> None:
    # seen about once in ten interrupts a third of a second in: CPython took the interrupt, which had left an
    # eval(), for an unhandled one and ended 'python -m retouch' by SIGINT (-2) after the right one line
    (tmp_path / "ctrl_c_probe.py").write_text(PROBE)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    done = subprocess.run([sys.executable, "-m", "ctrl_c_probe"], capture_output=True, text=True, cwd=tmp_path,
                          env=environment, timeout=120)
    assert done.returncode == 130, done.stderr
    assert one_line(done.stderr) == "retouch: error: interrupted"


def test_blank_detectors_mean_the_defaults_and_a_bare_comma_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), (np.random.default_rng(5).random((48, 48)) * 255).astype(np.uint8))
    # the defaults as the command itself sees them (tests in this process may register detectors of their own)
    runs = {}
    for name, extra in (("omitted", []), ("blank", ["--detectors", " "])):
        done = cli("analyze", str(image), "-o", str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())["parameters"]["detectors"]
    assert runs["blank"] == runs["omitted"] and "ela" in runs["blank"]
    for command in (["analyze", str(image), "-o", str(tmp_path / "comma")], ["batch", str(tmp_path), "-o",
                                                                             str(tmp_path / "batch")]):
        comma = cli(*command, "--detectors", ",")
        assert comma.returncode == 2, (command[0], comma.stderr)
        line = one_line(comma.stderr)
        assert "names no detector" in line and "ela" in line and "grain" in line, line
    assert not (tmp_path / "comma").exists() and not (tmp_path / "batch").exists()


def test_images_too_small_to_analyse_are_refused_naming_the_file_and_size(cli: CliRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    sizes = {"tiny7.png": (7, 7), "line.png": (1, 50), "dot.png": (1, 1), "small8.png": (8, 8), "ok.png": (64, 64)}
    for name, shape in sizes.items():
        cv2.imwrite(str(tmp_path / name), (rng.random((*shape, 3)) * 255).astype(np.uint8))
    cases = {("analyze", "tiny7.png"): "tiny7.png: the image is 7x7 pixels",
             ("compare", "line.png", "line.png"): "line.png: the image is 50x1 pixels",
             ("compare", "dot.png", "ok.png"): "dot.png: the image is 1x1 pixels",
             ("compare", "ok.png", "small8.png"): "small8.png: the image is 8x8 pixels"}
    for (command, *images), expected in cases.items():
        out = tmp_path / f"out-{command}-{images[0]}"
        done = cli(command, *(str(tmp_path / image) for image in images), "-o", str(out))
        assert done.returncode == 2, (command, images, done.stderr)
        line = one_line(done.stderr)  # and no warnings
        assert expected in line and "at least 32 x 32 pixels" in line, line
        assert not out.exists()


def test_a_rerun_into_the_same_folder_leaves_only_its_own_outputs(cli: CliRunner, tmp_path: Path) -> None:
    first, out = tmp_path / "first.png", tmp_path / "out"
    cv2.imwrite(str(first), (np.random.default_rng(7).random((64, 64)) * 255).astype(np.uint8))
    assert cli("analyze", str(first), "-o", str(out), "-d", "ela,grain,jpeg").returncode == 0
    (out / "notes.txt").write_text("the archivist's own file\n")
    # the second input is the first run's ela.png, inside the folder: an input is never removed
    done = cli("analyze", str(out / "ela.png"), "-o", str(out), "-d", "grain")
    assert done.returncode == 0, done.stderr
    artifacts = set(json.loads((out / "report.json").read_text())["artifacts"])
    assert artifacts == {"grain.png", "suspect_mask.png", "suspect_heatmap.png", "overlay.png", "report.html",
                         "report.json"}
    assert {p.name for p in out.iterdir()} == artifacts | {"ela.png", "notes.txt"}


def test_empty_paths_and_non_positive_pixel_limits_are_refused_naming_the_option(
        cli: CliRunner, tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), (np.random.default_rng(8).random((48, 48)) * 255).astype(np.uint8))
    cases = {("analyze", ""): "'image': the path is empty",
             ("analyze", "scan.png", "-o", ""): "'-o' / '--out': the path is empty",
             ("compare", "scan.png", ""): "'questioned': the path is empty",
             ("batch", "", "-o", "out"): "'INPUT': the path is empty",
             ("analyze", "scan.png", "--max-pixels", "0"): "'--max-pixels'",
             ("compare", "scan.png", "scan.png", "--max-pixels", "-5"): "'--max-pixels'"}
    for args, expected in cases.items():
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in one_line(done.stderr), (args, done.stderr)
    assert {p.name for p in tmp_path.iterdir()} == {"scan.png"}, "nothing written into the current folder"


def test_serve_misconfiguration_exits_2_with_one_line_before_starting(cli: CliRunner, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    (tmp_path / "a-file").write_text("not a folder\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = {("--data-dir", str(tmp_path / "a-file")): "a-file: the output path exists and is not a folder; "
                                                             "choose another --data-dir",
                 ("--scheduler", "bogus"): "unknown scheduler 'bogus'",
                 ("--scheduler", "tcp://127.0.0.1:1"): "cannot connect to the Dask scheduler at tcp://127.0.0.1:1",
                 ("--port", port): f"127.0.0.1:{port}: the port is already in use"}
        for args, expected in cases.items():
            done = cli("serve", "--data-dir", str(tmp_path / "data"), *args)
            assert done.returncode == 2, (args, done.stderr)
            assert expected in one_line(done.stderr), (args, done.stderr)
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "1k")
    unparsable = cli("serve", "--data-dir", str(tmp_path / "data"))
    assert unparsable.returncode == 2 and "RETOUCH_MAX_PIXELS='1k'" in one_line(unparsable.stderr)


def test_samples_and_demo_refuse_bad_output_paths_and_seeds_with_exit_2(cli: CliRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    not_a_folder = "a-file: the output path exists and is not a folder"
    cases = {("samples", "build", "-o", str(blocker), "--count", "1", "--size", "128"): not_a_folder,
             ("samples", "build", "-o", str(tmp_path / "out"), "--seed", "-1"): "'--seed'",
             ("demo", "-o", str(blocker)): not_a_folder}
    for args, expected in cases.items():
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in one_line(done.stderr), (args, done.stderr)
    assert blocker.read_text() == "not a folder\n" and not (tmp_path / "out").exists()


def test_a_samples_rebuild_leaves_exactly_the_new_set_and_the_users_own_files(
        cli: CliRunner, tmp_path: Path) -> None:
    def build(seed: int, count: int) -> dict:
        done = cli("samples", "build", "-o", str(tmp_path), "--seed", str(seed), "--count", str(count),
                       "--size", "128")
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / "cases.json").read_text())

    build(1, 3)
    (tmp_path / "single" / "notes.txt").write_text("the archivist's own file\n")
    manifest = build(2, 2)
    keys = {"single": ("image", "mask"), "pairs": ("reference", "questioned", "mask_reference", "mask_questioned")}
    listed = {case[key] for section, names in keys.items() for case in manifest[section] for key in names}
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == listed | {"single/notes.txt", "cases.json", "pairs.csv"}
    assert len(manifest["single"]) == len(manifest["pairs"]) == 2 and manifest["seed"] == 2


def test_a_full_disk_exits_2_naming_the_folder_and_leaves_no_partial_output(
        cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import retouch.run.tasks
    from retouch.io import atomic_write_bytes
    from retouch.samples import make_pair

    pair = make_pair(12, size=384, edit="diffusion")
    reference, questioned = tmp_path / "ref.png", tmp_path / "q.jpg"
    reference.write_bytes(pair.reference_bytes)
    questioned.write_bytes(pair.questioned_bytes)
    writes = []

    def fills_the_disk(path: Path, data: bytes) -> Path:  # the third file finds the disk full
        writes.append(path)
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return atomic_write_bytes(path, data)

    monkeypatch.setattr(retouch.run.tasks, "atomic_write_bytes", fills_the_disk)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("the archivist's own file\n")
    monkeypatch.setenv("RETOUCH_LOG_DIR", str(tmp_path / "logs"))  # (were it an internal error)
    for args, out in ((["analyze", str(questioned), "-d", "grain,ela"], tmp_path / "new" / "analyze"),
                      (["compare", str(reference), str(questioned)], tmp_path / "new" / "compare"),
                      (["analyze", str(questioned), "-d", "grain,ela"], kept)):
        writes.clear()
        done = cli(*args, "-o", str(out))
        assert done.returncode == 2
        line = one_line(done.stderr)
        assert f"{out}: no space left on device" in line and "choose another -o/--out" in line, line
        # the failed write stops the queue; the writer's other syncing threads may have begun their own files
        assert 3 <= len(writes) <= 2 + retouch.run.tasks.SYNCING_THREADS, writes
    assert not (tmp_path / "new").exists(), "the folders the runs created are gone"
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"), reason="needs /dev/zero, FIFOs")
def test_devices_and_pipes_are_refused_naming_the_file_without_reading_them(
        cli: CliRunner, tmp_path: Path) -> None:
    pipe = tmp_path / "scan.jpg"
    os.mkfifo(pipe)  # nobody writes to it: opening it to read would wait forever
    cases = {"/dev/zero": "/dev/zero: is a character device", str(pipe): "scan.jpg: is a named pipe"}
    for source, expected in cases.items():
        done = cli("analyze", source, "-o", str(tmp_path / "out"))  # /dev/zero was read until memory ran out
        assert done.returncode == 2, (source, done.stderr)
        assert expected in one_line(done.stderr)
        assert not (tmp_path / "out").exists()


def test_pixel_limit_refusals_give_exact_counts_and_name_the_setting_used(
        cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((400, 600), 128, np.uint8))
    out = str(tmp_path / "out")
    done = cli("analyze", str(image), "-o", out, "--max-pixels", "1000")
    assert done.returncode == 2
    line = one_line(done.stderr)  # it said "600x400 is 0 MP, over the 0 MP limit"
    assert "600x400 is 240,000 pixels, over the limit of 1,000 pixels" in line and "raise --max-pixels" in line
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "239999")
    done = cli("compare", str(image), str(image), "-o", out)
    assert done.returncode == 2
    assert "over the limit of 239,999 pixels" in (line := one_line(done.stderr))
    assert "raise RETOUCH_MAX_PIXELS" in line
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "1k")  # was silently replaced by the default 200 MP
    for command in (["analyze", str(image)], ["batch", str(tmp_path)]):
        done = cli(*command, "-o", out)
        assert done.returncode == 2, command
        assert "RETOUCH_MAX_PIXELS='1k' is not a positive whole number" in one_line(done.stderr)
    assert not Path(out).exists()


@pytest.mark.parametrize(("argv", "preset", "expected"), [
    (["retouch", "analyze", "scan.jpg"], None, "1"),  # the detectors' threads use the cores, not a BLAS pool
    (["retouch", "analyze", "scan.jpg"], "3", "3"),  # the user's own choice stays
    (["retouch", "compare", "a.jpg", "b.jpg"], None, None),
])
def test_analyze_asks_the_numerical_libraries_for_one_thread_before_they_load(argv: list[str], preset: str | None,
                                                                               expected: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS"}}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    probe = (f"import sys; sys.argv = {argv!r}; import retouch.cli, os; "
             "print(os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                           check=True).stdout.split()
    assert shown == [str(expected), "True"]
