"""The Python API (profiler.profile, Target, Store, calibration.fit/load/predict_model) on real runtimes
with the local backend: the README's example, DataFrames, the store, errors, and silence."""

import json
import os
import re

import pytest

from tests.conftest import ROOT, run_cli

import calibration  # noqa: E402
import profiler  # noqa: E402
from profiler.stability import shaky  # noqa: E402

CAL_EXAMPLE = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
DEVICE_CSV = os.path.join(CAL_EXAMPLE, "pi5_device.csv")
HOST_JSON = os.path.join(CAL_EXAMPLE, "host.json")


def readme_block(marker):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    after = text[text.index(marker):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    """A working folder that sees the repository's env.template and experiments, as the README assumes."""
    for name in ("env.template", "experiments"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def target(**settings):
    return profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend="local", cpus=1, threads=1,
                                    warmup=3, iterations=30, **settings)


def test_readme_notebook_example_runs(in_tmp, capfd):
    namespace = {}
    exec(compile(readme_block("<!-- readme-api-example"), "README.md", "exec"), namespace)
    results, pred, cal = namespace["results"], namespace["pred"], namespace["cal"]
    assert [(r["runtime"], r["status"]) for r in results] == [("onnx", "ok"), ("tflite", "ok"), ("torch", "ok")]
    frame = results.to_pandas()
    assert (frame["latency_ms.median"] > 0).all() and (frame["peak_memory_mb"] > 0).all()
    assert list(pred["model"]) == ["tiny_cnn"] * 3 and list(pred["runtime"]) == ["onnx", "tflite", "torch"]
    fit = next(f for f in cal.fits if f["metric"] == "latency_ms")
    for _, row in pred.iterrows():  # ols: a·host + b with the fitted a and b, inside its interval
        host = frame.loc[frame["runtime"] == row["runtime"], "latency_ms.median"].item()
        low, high = fit["host_range"]
        line = fit["a"] * host + fit["b"]
        # below the references a line is never followed below the ratio at the lowest one (never to zero)
        through_origin = host * (fit["a"] * low + fit["b"]) / low
        bounded = host < low and through_origin > line
        assert row["predicted_latency_ms"] == pytest.approx(through_origin if bounded else line, rel=1e-9)
        assert row["bounded"] == bounded
        assert 0 < row["predicted_latency_ms_low"] < row["predicted_latency_ms"] < row["predicted_latency_ms_high"]
        assert row["extrapolated"] == (not low <= host <= high)
    # the rule, on host values placed below, inside and above the references' range, on any host
    low, high = fit["host_range"]
    probe = [dict(results[0], latency_ms=dict(results[0]["latency_ms"], median=value))
             for value in (low / 3, (low + high) / 2, high * 3)]
    assert cal.predict(probe, force=True)["extrapolated"].tolist() == [True, False, True]
    assert os.path.isfile(in_tmp / "profiles.db")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # the API never prints, not even from its sandboxes


def test_results_and_store_as_dataframes(tmp_path, models):
    from profiler.stability import shaky

    store = tmp_path / "p.db"
    results = profiler.profile([models["onnx"], models["slow"]], target(), store=store)
    assert isinstance(results, list) and all(isinstance(r, dict) for r in results)
    frame = results.to_pandas()
    assert list(frame.columns[:4]) == ["model", "runtime", "status", "latency_ms.median"]
    assert "samples_ms" not in frame.columns and len(results[0]["samples_ms"]) == 30
    assert frame["latency_ms.median"].tolist() == [r["latency_ms"]["median"] for r in results]
    assert frame.loc[1, "latency_ms.median"] > frame.loc[0, "latency_ms.median"]  # 128x128, 64-128 channels
    stored = profiler.Store(str(store)).to_pandas()
    assert sorted(stored["sha256"]) == sorted(frame["sha256"])
    assert sorted(stored["latency_ms.median"]) == sorted(frame["latency_ms.median"])
    again = profiler.profile([models["onnx"], models["slow"]], target(), store=store)
    steady = [r for r in results if not shaky(r)]  # a shaky record is measured again, never served
    if steady:
        assert again.notices[0].startswith(f"{len(steady)} of 2 from the store")
    served = {r["sha256"]: r["latency_ms"]["median"] for r in again if r.get("from_store")}
    assert served == {r["sha256"]: r["latency_ms"]["median"] for r in steady}


def test_errors_are_exceptions_with_the_commands_messages(tmp_path, models):
    missing = str(tmp_path / "nothing.onnx")
    with pytest.raises(profiler.ProfileError) as caught:
        profiler.profile([missing], target(), store=None)
    cli = run_cli("profile", "--backend", "local", "--no-store", missing)
    assert cli.returncode == 2 and cli.stderr.strip() == f"profile: error: {caught.value}"

    with pytest.raises(profiler.ConfigError) as caught:
        profiler.Target.from_env(None, memory="lots")
    cli = run_cli("profile", "--memory", "lots", "--no-store", models["onnx"])
    assert cli.stderr.strip() == f"profile: error: {caught.value}"
    with pytest.raises(profiler.ConfigError, match="^colour: not a target setting"):
        profiler.Target.from_env(None, colour="red")

    bad = tmp_path / "bad.csv"
    bad.write_text("model,threads,latency_ms\nnb201_00103,1,fast\n")
    with pytest.raises(calibration.CalibrationError) as caught:
        calibration.fit(str(bad), host=HOST_JSON)
    cli = run_cli("calibrate", bad, "--host", HOST_JSON)
    assert cli.returncode == 2 and cli.stderr.strip() == f"calibrate: error: {caught.value}"
    assert "'fast' is not a number" in str(caught.value)


def test_fit_from_a_dataframe_matches_the_command(tmp_path):
    import pandas as pd

    out = tmp_path / "calib.json"
    cli = run_cli("calibrate", DEVICE_CSV, "--host", HOST_JSON, "--method", "ols", "--out", out)
    assert cli.returncode == 0, cli.stderr
    by_command = json.loads(out.read_text())
    cal = calibration.fit(pd.read_csv(DEVICE_CSV), host=json.load(open(HOST_JSON)), method="ols")
    assert [(f["metric"], f["a"], f["b"]) for f in cal.fits] == \
        [(f["metric"], pytest.approx(f["a"], rel=1e-12), pytest.approx(f["b"], rel=1e-12)) for f in by_command["fits"]]
    cal.save(tmp_path / "again.json")
    loaded = calibration.load(tmp_path / "again.json")
    records = json.load(open(HOST_JSON))
    assert loaded.predict(records).equals(cal.predict(records))
    summary = cal.summary()
    assert list(summary["metric"]) == ["energy_mj", "latency_ms"] and (summary["n"] == 10).all()
    assert summary["within10"].between(0, 100).all() and (summary["loo_mape"] >= summary["mape"]).all()


def test_predict_model_profiles_once_then_reads_the_store(tmp_path, models):
    cal = calibration.fit(DEVICE_CSV, host=HOST_JSON, method="ols", metrics=["latency_ms"])
    store = str(tmp_path / "loop.db")
    first = calibration.predict_model(models["slow"], cal, target(), store=store)
    stored = profiler.Store(store)
    [kept] = stored.records()
    stored.close()
    second = calibration.predict_model(models["slow"], cal, target(), store=store)
    assert first["status"] == "ok" and first["predicted_latency_ms"] > 0
    if shaky(kept):
        # a record flagged unstable or disturbed is never served: the second call measured again
        assert second["host_latency_ms"] != first["host_latency_ms"]
    else:
        assert second == first  # the same stored record: a new measurement would not give the same median
    assert len(profiler.Store(store).to_pandas()) == 1
    remeasured = calibration.predict_model(models["slow"], cal, target(), store=store, remeasure=True)
    assert remeasured["host_latency_ms"] != first["host_latency_ms"]
    broken = calibration.predict_model(models["corrupt"], cal, target(), store=store)
    assert broken["status"] == "error" and "predicted_latency_ms" not in broken and broken["error"]


def test_a_csv_export_is_a_host_input(tmp_path, models):
    """`profile --csv` (written with pandas) read back by `calibrate --host` (read with pandas)."""
    import pandas as pd

    host = tmp_path / "host.csv"
    done = run_cli("profile", "--backend", "local", "--iterations", "20", "--no-store", "--csv", host,
                   models["onnx"], models["slow"], models["dynamic"])
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(host)
    assert list(table["status"]) == ["ok"] * 3 and table["latency_median_ms"].gt(0).all()
    device = tmp_path / "device.csv"
    device.write_text("model,threads,latency_ms\n" + "".join(
        f"{row.model},{row.threads},{5 * row.latency_median_ms + 0.2!r}\n" for row in table.itertuples()))
    cal = calibration.fit(str(device), host=str(host), method="ols")
    assert cal.fits[0]["a"] == pytest.approx(5, rel=1e-9) and cal.fits[0]["b"] == pytest.approx(0.2, rel=1e-6)
    out = tmp_path / "calib.json"
    assert run_cli("calibrate", device, "--host", host, "--method", "ols", "--out", out).returncode == 0
    assert json.loads(out.read_text())["fits"][0]["a"] == pytest.approx(5, rel=1e-9)


def test_profile_leaves_the_callers_target_as_it_was_given(tmp_path):
    """A calibration that needs per-operator times profiles with them, on a copy of the caller's Target."""
    import dataclasses

    class NeedsOpProfile:
        def annotate(self, record):
            return record

        def needs_op_profile(self):
            return True

        def mix_advice(self, records):
            return []

    given = target()
    before = dataclasses.asdict(given)
    model = os.path.join(ROOT, "experiments", "examples", "tiny_cnn.onnx")
    results = profiler.profile(model, given, store=None, calibration=NeedsOpProfile(), retries=0)
    assert results[0]["status"] == "ok" and results.target.op_profile_runs == 20
    assert dataclasses.asdict(given) == before and given.op_profile_runs in (0, None)


def test_a_profiler_session_keeps_its_backend_and_store_open_until_closed(tmp_path, models):
    """A search loop's session: the sandbox and its empty-run timing are made once, the store stays
    open (a second call is served from it), and a closed session refuses more work in one line."""
    path = str(tmp_path / "session.db")
    with profiler.Profiler(target(), store=path) as session:
        first = session.profile(models["onnx"])
        (backend,) = session._backends.values()
        second = session.profile([models["onnx"], models["dynamic"]])
        assert list(session._backends.values()) == [backend]  # the same sandbox for the same runtimes
        store = session.store()
        assert store is session.store() and isinstance(store, profiler.Store)
        row = calibration.predict_model(models["slow"], calibration.fit(DEVICE_CSV, host=HOST_JSON, method="ols",
                                                                        metrics=["latency_ms"]), session=session)
    assert first[0]["status"] == "ok" and [r["status"] for r in second] == ["ok", "ok"]
    assert first[0]["executor_overhead"] == second[0]["executor_overhead"]  # timed once, by the one backend
    if not shaky(first[0]):
        assert second[0]["latency_ms"] == first[0]["latency_ms"]  # served from the open store
    assert row["status"] == "ok" and row["predicted_latency_ms"] > 0
    assert session.closed and session._store is None and not session._backends
    with pytest.raises(profiler.ProfileError, match="this Profiler is closed"):
        session.profile(models["onnx"])
    assert len(profiler.Store(path).to_pandas()) == 3
    with pytest.raises(profiler.ProfileError, match="store: a Profiler's target and store are given"):
        profiler.Profiler(target(), store=None).profile(models["onnx"], store=path)
    cal = calibration.fit(DEVICE_CSV, host=HOST_JSON, method="ols", metrics=["latency_ms"])
    with profiler.Profiler(target(), store=None) as other, \
            pytest.raises(profiler.ProfileError, match="target: a session's target"):
        calibration.predict_model(models["onnx"], cal, target(), session=other)


def test_an_unknown_keyword_option_is_one_error_naming_it(tmp_path):
    """A misspelt option of profile or fit is refused before any work, naming it and the real options."""
    model = tmp_path / "never_read.onnx"
    with pytest.raises(profiler.ProfileError, match=r"^retires: not an option of profile \(options: .*retries"):
        profiler.profile([str(model)], retires=2)
    with pytest.raises(calibration.CalibrationError, match=r"^metod: not an option of fit \(options: .*method"):
        calibration.fit(DEVICE_CSV, host=HOST_JSON, metod="ols")
    assert not model.exists()
