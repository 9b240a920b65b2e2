"""Figures on a busy host: disturbed runs counted and left out, free cores chosen, shaky records
measured again and never served from the store as steady, relative intervals that carry the host's
uncertainty, and the flags in every export. Real processes (a CPU hog started and stopped here)."""

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, example, run_cli

import profiler  # noqa: E402
from profiler.harness.stats import DISTURBED_WAIT_SHARE, latency_stats  # noqa: E402


def target(**settings):
    return profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend="local", cpus=1, threads=1,
                                    warmup=3, **settings)


class Hog:
    """A busy loop pinned to one core, bounded in time, stopped on exit."""

    def __init__(self, core, seconds=60):
        self.core, self.seconds = core, seconds

    def __enter__(self):
        code = f"import os, time\nos.sched_setaffinity(0, {{{self.core}}})\nend = time.time() + {self.seconds}\n" \
               "while time.time() < end: pass\n"
        self.process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def test_runs_that_waited_for_the_core_are_counted_and_left_out(tmp_path):
    core = sorted(os.sched_getaffinity(0))[0]
    with Hog(core):
        (record,) = profiler.profile([example("tiny_cnn.onnx")], target(cpu_set=[core], iterations=300), store=None,
                                     retries=0)
    disturbance = record["disturbance"]
    assert disturbance["source"] == "schedstat" and disturbance["of"] == 300 == len(record["samples_ms"])
    assert disturbance["runs"] > 0  # the hog held the core for part of the timed span
    waited = [w > DISTURBED_WAIT_SHARE * t for t, w in zip(record["samples_ms"], record["samples_wait_ms"])]
    assert sum(waited) == disturbance["runs"]
    clean = [t for t, bad in zip(record["samples_ms"], waited) if not bad]
    if disturbance["basis"] == "undisturbed":  # the figures are the undisturbed runs' own statistics
        expected = latency_stats(clean)
        figures = {k: v for k, v in record["latency_ms"].items() if k != "ci_rel"}
        assert figures == pytest.approx({k: v for k, v in expected.items() if k != "ci_rel"}, abs=2e-5)  # 10 ns
        # a ratio of the interval to the median: the samples' 10 ns rounding, divided by the median
        assert record["latency_ms"]["ci_rel"] == pytest.approx(expected["ci_rel"], abs=2e-5 / expected["median"])
        assert record["latency_ms"]["median"] <= latency_stats(record["samples_ms"])["median"]
    else:  # too few undisturbed runs, one thread: each run's time on a CPU, and the record says so
        on_cpu = [t - w for t, w in zip(record["samples_ms"], record["samples_wait_ms"])]
        recovered = {k: v for k, v in record["latency_ms"].items() if not k.startswith("ci_")}
        expected = {k: v for k, v in latency_stats(on_cpu).items() if not k.startswith("ci_")}
        assert disturbance["basis"] == "on_cpu" and recovered == pytest.approx(expected, abs=2e-5)
        assert "recovered" in record["flags"] and disturbance["wall"]["median"] >= record["latency_ms"]["median"]
    assert record["cores"]["how"] == "CPU_SET" and record["cpus_seen"] == [core]
    # the latency distribution's box is drawn from the runs the table's figures come from; the
    # runs left out are crosses
    from profiler.figures import distribution_figure

    ax = distribution_figure([record]).axes[0]
    median_line = next(line for line in ax.lines if line.get_color() == "tab:red")
    assert median_line.get_xdata()[0] == pytest.approx(record["latency_ms"]["median"], abs=2e-5)
    crosses = sum(len(c.get_offsets()) for c in ax.collections)
    assert crosses == (disturbance["runs"] if disturbance["basis"] == "undisturbed" else 0)


def test_a_busy_core_is_avoided_and_the_choice_recorded():
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    with Hog(cores[0]):
        results = profiler.profile([example("tiny_cnn.onnx")], target(iterations=20), store=None, retries=0)
    choice = results[0]["cores"]
    assert choice["load"][str(cores[0])] > 0.25 and choice["used"] == results[0]["cpus_seen"]
    idle = [c for c in cores[1:] if choice["load"][str(c)] <= 0.25 and c not in choice["held_by_others"]]
    if idle:  # the rule: a free, idle core is taken before a busy one
        assert choice["how"] == "free" and choice["used"] == [idle[0]]
    else:  # another run holds or loads the other cores: the run says so
        assert choice["how"] in ("busy", "shared") and any("core(s)" in w for w in results.warnings)


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_two_profiles_started_together_get_disjoint_cores(request, tmp_path, backend):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    if backend == "docker":
        request.getfixturevalue("docker_backend")
    outputs = [tmp_path / f"{i}.json" for i in range(2)]
    command = [sys.executable, "-m", "profiler.cli", "--env", os.path.join(ROOT, "env.template"), "--backend",
               backend, "--no-store", "--quiet", "--retries", "0", "--iterations", "3000", "--warmup", "1"]
    children = [subprocess.Popen(command + ["--json", str(out), example("tiny_cnn.tflite")], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for out in outputs]
    errors = [child.communicate(timeout=300)[1] for child in children]
    assert all(child.returncode == 0 for child in children), errors
    first, second = (json.load(open(out))[0] for out in outputs)
    assert first["cpus_seen"] == first["cores"]["used"] and second["cpus_seen"] == second["cores"]["used"]
    shared = set(first["cpus_seen"]) & set(second["cpus_seen"])
    assert not shared or any("held by another edge-profiler run" in e for e in errors), (first["cores"],
                                                                                          second["cores"])


def test_a_claimed_core_is_not_taken_by_a_second_run(tmp_path, monkeypatch):
    from profiler import cores

    monkeypatch.setattr(cores, "NAME_PREFIX", f"edge-profiler-test-{os.getpid()}-cpu")  # apart from other runs
    candidates = sorted(os.sched_getaffinity(0))
    if len(candidates) < 2:
        pytest.skip("needs two cores")
    first = cores.choose(candidates, 1, sample_s=0.05)
    try:
        second = cores.choose(candidates, 1, sample_s=0.05)
        try:
            assert not set(first.cores) & set(second.cores)
            assert set(first.cores) <= set(second.info["held_by_others"])
        finally:
            second.release()
        third = cores.choose(first.cores, 1, explicit=True, sample_s=0.05)  # CPU_SET on a held core: said
        try:
            assert third.cores == first.cores and any("held by another" in w for w in third.warnings)
        finally:
            third.release()
    finally:
        first.release()
    again = cores.choose(candidates, 1, sample_s=0.05)
    again.release()
    assert again.info["held_by_others"] == []


def test_a_shaky_stored_record_is_measured_again_and_settings_are_part_of_the_key(tmp_path):
    from profiler.stability import shaky
    from profiler.store import Store

    store_path = tmp_path / "p.db"
    first = profiler.profile([example("tiny_cnn.onnx")], target(iterations=20), store=store_path, retries=0)
    again = profiler.profile([example("tiny_cnn.onnx")], target(iterations=20), store=store_path, retries=0)
    if shaky(first[0]):  # a busy host made the first one shaky: it is not served, whatever the host
        assert not again[0].get("from_store") and "were unstable or disturbed" in again.notices[0]
    else:
        assert again[0]["from_store"] and again.notices[0].startswith("1 of 1 from the store")
    # the stored record, marked as a busy host leaves it: not served as if it were steady
    store = Store(str(store_path))
    store.save(dict(first[0], flags=["unstable"]))
    store.close()
    third = profiler.profile([example("tiny_cnn.onnx")], target(iterations=20), store=store_path, retries=0)
    assert not third[0].get("from_store") and any("were unstable or disturbed" in n for n in third.notices)
    # more iterations, or a tighter interval, is another measurement
    for settings in ({"iterations": 40}, {"iterations": 20, "target_ci": "5%", "time_budget_s": 2}):
        more = profiler.profile([example("tiny_cnn.onnx")], target(**settings), store=store_path, retries=0)
        assert not more[0].get("from_store") and more[0]["settings"]["iterations"] == settings["iterations"]


def test_target_ci_measures_until_the_interval_is_reached_or_the_budget_is_spent():
    (record,) = profiler.profile([example("tiny_cnn.tflite")], target(iterations=20, target_ci="0.2%",
                                                                        time_budget_s=1.5), store=None, retries=0)
    convergence = record["disturbance"]["convergence"]
    assert record["iterations_run"] >= 20 and convergence["runs"] == record["iterations_run"]
    assert convergence["stopped"] in ("target", "budget")
    assert (convergence["stopped"] == "target") == (record["latency_ms"]["ci_rel"] <= 0.002)
    assert sum(record["samples_ms"]) < 1500 * 2  # the budget bounds the timed runs


def test_remeasure_keeps_the_steadiest_attempt_and_lists_every_one():
    from profiler.stability import remeasure

    shaky = {"model": "m", "runtime": "onnx", "path": "/m.onnx", "status": "ok", "flags": ["unstable"],
             "latency_ms": {"median": 1.0, "iqr": 0.5, "ci_rel": 0.2}}
    calmer = dict(shaky, latency_ms={"median": 0.9, "iqr": 0.05, "ci_rel": 0.01}, flags=[])
    calls = []

    def measure(groups, emit):
        calls.append(groups)
        emit(dict(calmer))

    changed, made = remeasure({0: dict(shaky)}, measure)
    assert calls == [{"onnx": ["/m.onnx"]}] and made == 1  # steady after one more: no third attempt
    kept = changed[0]
    assert kept["latency_ms"]["median"] == 0.9 and kept["flags"] == ["remeasured"] and kept["remeasured"] == 1
    assert [a["median"] for a in kept["attempts"]] == [1.0, 0.9]


def test_a_relative_interval_holds_the_quiet_truth_under_known_host_noise():
    from calibration.fitting import fit_one

    rng = np.random.default_rng(7)
    host = np.exp(rng.uniform(np.log(2), np.log(200), 12))
    device = 4.0 * host * np.exp(rng.normal(0, 0.03, 12))
    fit = fit_one([f"m{i}" for i in range(12)], host, device, "ols").with_fields(metric="latency_ms")
    truth_host = 3.3
    covered = 0
    for noise in rng.normal(0, 0.05, 200):  # the host figure off by its own noise, which its CI states
        measured = truth_host * np.exp(noise)
        record = {"latency_ms": {"median": measured, "ci_low": measured * 0.9, "ci_high": measured * 1.1}}
        p = fit.predict(measured, record)
        assert p["low"] > 0 and p["low"] / p["value"] == pytest.approx(p["value"] / p["high"])  # relative
        covered += p["low"] <= 4.0 * truth_host <= p["high"]
    assert covered >= 190
    quiet = fit.predict(truth_host, {"latency_ms": {"median": truth_host, "ci_low": truth_host,
                                                                  "ci_high": truth_host}})
    assert quiet["high"] - quiet["low"] < p["high"] - p["low"]  # the host's uncertainty widens it


def test_flags_and_intervals_reach_csv_markdown_json_and_the_table(tmp_path):
    from profiler.report import flags

    name = tmp_path / "=cmd|' -C calc'!A0 \x1b[2J.onnx"
    shutil.copy(example("tiny_cnn.onnx"), name)
    calibration = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "calib_ols.json")
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "markdown")}
    done = run_cli("profile", "--env", os.path.join(ROOT, "env.template"), "--backend", "local", "--no-store",
                   "--iterations", 20, "--calibration", calibration, "--force", "--json", out["json"],
                   "--csv", out["csv"], "--markdown", out["markdown"], name, example("tiny_cnn.tflite"))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\\x1b[2J" in done.stdout
    records = json.load(open(out["json"]))
    rows = list(csv.DictReader(open(out["csv"], newline="")))
    for record, row in zip(records, rows):
        assert row["flags"] == " ".join(flags(record))
        prediction = record["prediction"]["latency_ms"]
        assert float(row["predicted_latency_ms_low"]) == pytest.approx(prediction["low"])
        assert float(row["predicted_latency_ms_high"]) == pytest.approx(prediction["high"])
        assert row["extrapolated"] == str(prediction["extrapolated"])
        assert float(row["latency_ci_low_ms"]) == pytest.approx(record["latency_ms"]["ci_low"])
        assert row["disturbed_runs"] == str(record["disturbance"]["runs"])
        assert ("extrapolated" in row["flags"].split()) == prediction["extrapolated"]
    assert rows[0]["model"].startswith("'=cmd")  # a spreadsheet shows it as text, never runs it
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values() if cell)
    markdown = open(out["markdown"]).read()
    header = markdown.splitlines()[0]
    assert "flags" in header and "median 95% CI" in header and "device ms (95% PI)" in header
    assert "\x1b" not in markdown and "\\|" in markdown.splitlines()[2]
    assert all(line.count(" | ") == header.count(" | ") for line in markdown.splitlines()[2:4])


def test_every_backend_measures_at_the_callers_priority(request, tmp_path):
    backends = ["local"]
    try:
        request.getfixturevalue("docker_backend")
        backends.append("docker")
    except pytest.skip.Exception:
        pass
    for backend in backends:
        done = subprocess.run(["nice", "-n", "7", sys.executable, "-m", "profiler.cli", "--backend", backend,
                               "--no-store", "--quiet", "--iterations", "5", "--json", tmp_path / f"{backend}.json",
                               example("tiny_cnn.tflite")], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        record = json.load(open(tmp_path / f"{backend}.json"))[0]
        assert record["scheduling"] == {"nice": 7, "policy": "other"}, backend


def test_a_busy_neighbour_core_is_measured_and_flagged():
    from profiler.harness.disturbance import CONTENDED_SHARE

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    with contextlib.ExitStack() as stack:
        for core in cores[1:]:  # every other core busy, on a host of any size
            stack.enter_context(Hog(core))
        (record,) = profiler.profile([example("tiny_cnn.onnx")], target(cpu_set=[cores[0]], iterations=200),
                                     store=None, retries=0)
    busy = record["disturbance"]["neighbour_busy"]
    assert busy is not None and busy > CONTENDED_SHARE  # the hogs held the other cores throughout
    assert "contended" in record["flags"] and any("other cores were" in w for w in record["warnings"])
    (quiet,) = profiler.profile([example("tiny_cnn.onnx")], target(cpu_set=[cores[0]], iterations=200),
                                store=None, retries=0)
    assert record["disturbance"]["neighbour"]["effect"] is None  # busy throughout: no quiet runs to compare
    neighbour = quiet["disturbance"]["neighbour"]
    assert ("contended" in quiet["flags"]) == neighbour["contended"]
    if neighbour["effect"] is None:
        assert neighbour["contended"] == ((quiet["disturbance"]["neighbour_busy"] or 0) > CONTENDED_SHARE
                                          or neighbour["busy_runs"] >= 10)


def test_contended_means_the_busy_neighbour_moved_the_runs():
    from profiler.harness.disturbance import CONTENDED_EFFECT, neighbour_effect

    rng = np.random.default_rng(0)
    quiet = list(rng.normal(1.0, 0.01, 100))
    same = list(rng.normal(1.0, 0.01, 100))
    slower = list(rng.normal(1.1, 0.01, 100))
    spans = [(0, 100, 0.1), (100, 200, 0.95)]  # the other cores idle, then busy
    unmoved = neighbour_effect(quiet + same, None, spans, overall=0.6)
    assert unmoved["contended"] is False and abs(unmoved["effect"]) < CONTENDED_EFFECT
    assert unmoved["busy_runs"] == unmoved["quiet_runs"] == 100
    moved = neighbour_effect(quiet + slower, None, spans, overall=0.6)
    assert moved["contended"] is True and moved["effect"] == pytest.approx(0.1, abs=0.01)
    # runs that waited for their own core are no evidence of the neighbour either way
    waits = [0] * 100 + [0.5e6] * 100
    assert neighbour_effect(quiet + slower, waits, spans, overall=0.6)["busy_runs"] == 0
    # busy throughout: the effect cannot be measured, and the flag says the figure may be high
    throughout = neighbour_effect(slower, None, [(0, 100, 0.9)], overall=0.9)
    assert throughout["effect"] is None and throughout["contended"] is True


def test_threads_above_the_cores_are_the_models_own_doing(models):
    core = sorted(os.sched_getaffinity(0))[0]
    t = profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend="local", cpus=1, threads=2, warmup=3,
                                 cpu_set=[core], iterations=60)
    assert any("THREADS=2 is above the 1 core(s)" in w for w in t.warnings)
    (record,) = profiler.profile([models["slow"]], t, store=None, retries=0)
    assert "oversubscribed" in record["flags"] and "disturbed" not in record["flags"]
    assert record["disturbance"]["basis"] == "all" and record["disturbance"]["oversubscribed"]["cores"] == 1
    assert not any("another program shares this core" in w or "waited for a core" in w for w in record["warnings"])
    assert any("THREADS=2 on 1 core(s)" in w for w in record["warnings"])


def test_a_target_wider_than_the_host_says_what_to_do_instead():
    from profiler.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend="local",
                                 cpus=len(os.sched_getaffinity(0)) + 2)
    message = str(caught.value)
    assert "\n" not in message and "THREADS<=" in message and "--on" in message and "calibrate" in message


def test_worker_processes_share_the_runs_and_their_spread_is_kept():
    (record,) = profiler.profile([example("tiny_cnn.tflite")], target(iterations=31, workers=3), store=None,
                                 retries=0)
    workers = record["workers"]
    assert workers["count"] == 3 and len(record["samples_ms"]) == 31 == record["iterations_run"]
    clean = [t for t, w in zip(record["samples_ms"], record["samples_wait_ms"]) if w <= DISTURBED_WAIT_SHARE * t]
    pooled = clean if record["disturbance"]["basis"] == "undisturbed" else record["samples_ms"]
    assert record["latency_ms"] == pytest.approx(latency_stats(pooled), abs=2e-5)  # every worker's runs, pooled
    spread = (max(workers["medians_ms"]) - min(workers["medians_ms"])) / record["latency_ms"]["median"]
    assert workers["median_spread"] == pytest.approx(spread, abs=1e-3)
    assert ("unstable" in record["flags"]) >= (spread > 0.10)  # a spread past the bar is always flagged
    assert record["peak_memory_mb"] == sorted(workers["peaks_mb"])[1]


def test_a_single_threaded_run_under_a_hog_on_its_core_is_recovered_from_its_time_on_a_cpu(models):
    core = sorted(os.sched_getaffinity(0))[0]
    settings = dict(cpu_set=[core], iterations=60)
    (quiet,) = profiler.profile([models["slow"]], target(**settings), store=None, retries=0)
    with Hog(core):
        (busy,) = profiler.profile([models["slow"]], target(**settings), store=None, retries=0)
    disturbance = busy["disturbance"]
    if disturbance["basis"] == "undisturbed":
        pytest.skip("the hog left enough undisturbed runs: nothing to recover here")
    assert disturbance["basis"] == "on_cpu" and "recovered" in busy["flags"] and "disturbed" not in busy["flags"]
    on_cpu = [t - w for t, w in zip(busy["samples_ms"], busy["samples_wait_ms"])]
    assert busy["latency_ms"]["median"] == pytest.approx(latency_stats(on_cpu)["median"], abs=2e-5)
    wall, recovered, truth = disturbance["wall"]["median"], busy["latency_ms"]["median"], quiet["latency_ms"]["median"]
    assert abs(recovered / truth - 1) < abs(wall / truth - 1)  # nearer the quiet figure than the wall clock
    assert any("recovered" in w for w in busy["warnings"])
    # two threads on two cores, a hog on one: a waiting thread stalls the other, so nothing is recovered
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) == 2:
        with Hog(cores[0]):
            (two,) = profiler.profile([models["slow"]], profiler.Target.from_env(
                os.path.join(ROOT, "env.template"), backend="local", cpus=2, threads=2, warmup=3, cpu_set=cores,
                iterations=60), store=None, retries=0)
        assert two["disturbance"]["basis"] != "on_cpu" and "recovered" not in two["flags"]
        assert "oversubscribed" not in two["flags"]
