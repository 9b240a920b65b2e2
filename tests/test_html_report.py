"""`profile --html` and `calibrate --html` opened in a real headless Chromium: the tables and figures
render, sorting works, the screenshot is not blank, and the page requests nothing from the network."""

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, run_cli

CAL_EXAMPLE = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")


def _browser():
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if found is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser():
    return _browser()


def browse(browser, page, folder):
    """(DOM after load, URLs the page itself requested, screenshot path) of one headless load."""
    netlog, shot = os.path.join(folder, "net.json"), os.path.join(folder, "shot.png")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
              f"--user-data-dir={os.path.join(folder, 'profile')}", "--window-size=1280,1600"]
    url = "file://" + os.path.abspath(page)
    # one load gives all three: the DOM on stdout, the screenshot and the net log in files
    dom = subprocess.run(common + [f"--log-net-log={netlog}", f"--screenshot={shot}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and os.path.isfile(shot), dom.stderr[-2000:]
    return dom.stdout, page_requests(netlog), shot


def page_requests(netlog):
    """URLs requested on behalf of a page. The browser's own traffic (update checks, network time)
    has no initiator ("not an origin"); a file:// page's requests have the opaque origin "null"."""
    with open(netlog) as f:
        log = json.load(f)
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted({e["params"]["url"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})
                   and e["params"].get("initiator") != "not an origin"})


def not_blank(shot):
    from PIL import Image

    counts = Image.open(shot).convert("L").histogram()  # pixels per grey level, 0 (black) to 255
    return sum(counts[:200]) / sum(counts), sum(1 for c in counts if c)


def test_the_request_detector_sees_a_page_that_fetches(browser, tmp_path):
    page = tmp_path / "fetches.html"
    page.write_text('<html><body><p>x</p><img src="http://192.0.2.1/a.png">'
                    '<script src="https://192.0.2.1/b.js"></script></body></html>')
    _, requests, _ = browse(browser, str(page), str(tmp_path))
    assert requests == ["http://192.0.2.1/a.png", "https://192.0.2.1/b.js"]


@pytest.fixture(scope="module")
def profile_report(tmp_path_factory):
    from experiments.examples.models import cnn_onnx

    folder = tmp_path_factory.mktemp("report")
    paths = [os.path.join(ROOT, "experiments", "examples", "tiny_cnn.onnx"),
             cnn_onnx(folder / "cnn_64.onnx", size=64, channels=(16, 32)),
             cnn_onnx(folder / "cnn_128.onnx", size=128, channels=(32, 64, 64))]
    page = folder / "report.html"
    result = run_cli("profile", "--env", "env.template", "--backend", "local", "--iterations", "40", "--no-store",
                     "--calibration", os.path.join(CAL_EXAMPLE, "calib_ols.json"), "--threads", "1",
                     "--html", page, "--plot", folder / "figures", *paths)
    assert result.returncode == 0, result.stderr
    return str(page), str(folder)


def test_profile_report_renders_offline(browser, profile_report, tmp_path):
    page, folder = profile_report
    dom, requests, shot = browse(browser, page, str(tmp_path))
    assert requests == []
    body = dom.split('<table id="results"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == 1 + 3 and "tiny_cnn" in body and "cnn_128" in body
    ranking = dom.split('<table id="ranking"', 1)[1].split("</table>", 1)[0]
    assert "95% interval" in ranking and "predicted device ms" in ranking and "extrapolated" in ranking
    assert dom.count('src="data:image/svg+xml;base64,') == 3  # latency distribution, latency and energy fits
    assert "raspberry-pi-5" in dom and "1024 MiB" in dom and "onnx 1." in dom and "caps enforced" in dom
    dark, shades = not_blank(shot)
    assert dark > 0.02 and shades > 50, (dark, shades)
    assert os.path.isfile(os.path.join(folder, "figures", "latency_distribution.svg"))


def test_sorting_happens_in_the_browser(browser, profile_report, tmp_path):
    page, _ = profile_report
    text = open(page, encoding="utf-8").read()
    clicked = tmp_path / "clicked.html"
    # click "median ms" twice: ascending, then descending
    click = "<script>var h=document.querySelectorAll('#results th')[4];h.click();h.click();</script></body>"
    clicked.write_text(text.replace("</body>", click))
    dom, _, _ = browse(browser, str(clicked), str(tmp_path))
    body = dom.split('<table id="results"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    medians = [float(row.split("<td")[5].split('data-v="', 1)[1].split('"', 1)[0]) for row in body.split("<tr>")[1:]]
    assert len(medians) == 3 and medians == sorted(medians, reverse=True)
    original = [float(row.split("<td")[5].split('data-v="', 1)[1].split('"', 1)[0])
                for row in text.split('<table id="results"', 1)[1].split("<tbody>", 1)[1].split("</tbody>")[0]
                .split("<tr>")[1:]]
    assert original != medians  # as written, the rows follow the order the models were given


def test_calibrate_report_renders_offline(browser, tmp_path):
    page = tmp_path / "calibration.html"
    result = run_cli("calibrate", os.path.join(CAL_EXAMPLE, "pi5_device.csv"), "--host",
                     os.path.join(CAL_EXAMPLE, "host.json"), "--method", "auto", "--device-name", "Raspberry Pi 5",
                     "--html", page)
    assert result.returncode == 0, result.stderr
    dom, requests, shot = browse(browser, str(page), str(tmp_path))
    assert requests == []
    fits = dom.split('<table id="fits"', 1)[1].split("</table>", 1)[0]
    assert fits.count("<tr>") == 1 + 2 and "latency_ms" in fits and "energy_mj" in fits
    refs = dom.split('<table id="references"', 1)[1].split("</table>", 1)[0]
    assert refs.count("<tr>") == 1 + 20 and "nb201_00103" in refs
    assert dom.count('src="data:image/svg+xml;base64,') == 2 and "auto chose" in dom
    dark, shades = not_blank(shot)
    assert dark > 0.02 and shades > 50, (dark, shades)


def test_the_accuracy_front_reaches_the_report_the_figures_and_the_api(browser, digits, tmp_path, monkeypatch):
    import profiler
    from profiler.results import Results
    from profiler.report import accuracy_score, front, ranking_latency

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    page = tmp_path / "front.html"
    result = run_cli("profile", "--env", "env.template", "--backend", "local", "--iterations", "20", "--no-store",
                     "--data", digits["data"], "--variants", "int8-dynamic,fp16", "--json", tmp_path / "r.json",
                     "--html", page, "--plot", tmp_path / "figures", digits["onnx"])
    assert result.returncode == 0, result.stderr
    assert os.path.isfile(tmp_path / "figures" / "accuracy_front.svg")
    dom, requests, _ = browse(browser, str(page), str(tmp_path))
    assert requests == []
    body = dom.split('<table id="results"', 1)[1].split("</table>", 1)[0]
    assert ">accuracy<" in body
    assert body.count("top-1 ") == 3
    assert dom.count('src="data:image/svg+xml;base64,') == 2 and "Accuracy against latency" in dom

    records = json.load(open(tmp_path / "r.json"))
    results = Results(records)
    fig = results.plot_front()
    _, on_front = front(records)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "front"]
    assert list(line.get_xdata()) == [ranking_latency(r) for r in on_front]  # the front drawn is the front
    assert list(line.get_ydata()) == pytest.approx([100 * accuracy_score(r) for r in on_front])
    markers = sum(len(c.lines[0].get_xdata()) for c in fig.axes[0].containers)
    assert markers == len(fig.axes[0].texts) == 3  # one marker and one label per model and variant
    assert results.plot_front(tmp_path / "api").endswith("accuracy_front.png")
    with pytest.raises(profiler.ProfileError, match="is a file"):
        results.plot_front(tmp_path / "r.json")
