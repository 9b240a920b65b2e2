"""`calibrate suggest`: which candidates to measure on the device, from their host profiles only.

The candidates are real host profiles of models made by the project's own builders (conv stacks,
the digits MLP, MobileNetV2 and SqueezeNet from the zoo), measured here by the local backend."""

import json
import os

import pytest

from tests.conftest import run_cli

import calibration  # noqa: E402
from calibration.mix import outside_mix, reference_mix  # noqa: E402


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """{"records", "json", "paths", "folder"}: host profiles of 16 models with different operator mixes."""
    import profiler
    from experiments.examples import digits
    from experiments.zoo.__main__ import export
    from experiments.examples.models import cnn_onnx

    folder = tmp_path_factory.mktemp("candidates")
    # Many alike conv stacks and a few unlike models: the typical and the rare both need a reference.
    paths = [str(cnn_onnx(folder / f"cnn_{size}_{c}.onnx", size=size, channels=(c, 2 * c)))
             for size in (32, 48, 64, 96) for c in (8, 16, 24)]
    paths.append(digits.write_onnx(digits.train()[0], str(folder / "digits_mlp.onnx")))
    for name in ("mobilenet_v2_0.25", "mobilenet_v2_0.5", "squeezenet1_1"):
        paths.append(export(name, ["onnx"], str(folder))["onnx"])
    target = profiler.Target.from_env(None, backend="local", iterations=10, warmup=2)
    results = profiler.profile(paths, target, store=None, retries=0)
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    records = list(results)
    out = folder / "host.json"
    out.write_text(json.dumps(records))
    return {"records": records, "json": str(out), "paths": paths, "folder": folder}


def test_every_prefix_is_a_set_and_the_have_list_continues_it(candidates):
    records = candidates["records"]
    five = [p["model"] for p in calibration.suggest(records, k=5)]
    assert len(set(five)) == 5 and set(five) <= {r["model"] for r in records}
    # Below the range rule (k < 6) the order is greedy: a shorter list is the longer one's start.
    assert [p["model"] for p in calibration.suggest(records, k=3)] == five[:3]
    # With the first three measured, the next one suggested is the fourth.
    grown = calibration.suggest(records, k=1, have=five[:3])
    assert [p["model"] for p in grown] == five[:4]
    assert [p["measured"] for p in grown] == [True, True, True, False]
    assert all(p["reason"] for p in grown)


def test_the_set_spans_the_host_range_and_every_operator_class(candidates):
    records = candidates["records"]
    latency = {r["model"]: r["latency_ms"]["median"] for r in records}
    for k in range(6, len(records) + 1):
        chosen = [p["model"] for p in calibration.suggest(records, k=k)]
        assert min(latency, key=latency.get) in chosen and max(latency, key=latency.get) in chosen, (k, chosen)
    for k in range(3, len(records) + 1):
        chosen = {p["model"] for p in calibration.suggest(records, k=k)}
        refs = [r for r in records if r["model"] in chosen]
        fit = {"mix": reference_mix([r["model"] for r in refs], refs)}
        # the out-of-mix warning would fire for none of the candidates
        assert not [r["model"] for r in records if outside_mix(fit, r)], (k, chosen)


def test_references_already_measured_that_miss_the_ends_get_them_next(candidates):
    records = candidates["records"]
    latency = {r["model"]: r["latency_ms"]["median"] for r in records}
    alike = sorted((m for m in latency if m.startswith("cnn_")), key=latency.get)[2:6]  # neither end
    picks = calibration.suggest(records, k=2, have=alike)
    assert {p["model"] for p in picks if not p["measured"]} == {min(latency, key=latency.get),
                                                                max(latency, key=latency.get)}, picks


def test_suggest_reads_nothing_but_host_profiles(candidates):
    """The same candidates give the same suggestion whatever the device will measure: there is no
    device input to the rule at all, and the order does not depend on the order of the records."""
    records = candidates["records"]
    forward = [p["model"] for p in calibration.suggest(records, k=6)]
    backward = [p["model"] for p in calibration.suggest(list(reversed(records)), k=6)]
    assert forward == backward


def test_cli_prints_paths_to_paste_and_reasons_apart(candidates, tmp_path):
    out = run_cli("calibrate", "suggest", "--host", candidates["json"], "-k", "4", "--json", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all(os.path.isfile(line) for line in lines), out.stdout
    assert "4 reference(s) to measure on the device" in out.stderr and "stands for" in out.stderr
    saved = json.load(open(tmp_path / "s.json"))
    assert [s["path"] for s in saved] == lines
    have = tmp_path / "measured.txt"
    have.write_text("# measured on the board\n" + "\n".join(os.path.basename(p)[:-5] for p in lines[:2]) + "\n")
    out = run_cli("calibrate", "suggest", "--host", candidates["json"], "--have", str(have))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines[2:3], (out.stdout, lines)


def test_cli_profiles_model_files_when_given_them(candidates, tmp_path):
    env = tmp_path / "env"
    env.write_text("BACKEND=local\nITERATIONS=10\nWARMUP=2\n")
    paths = candidates["paths"][:3]
    out = run_cli("calibrate", "suggest", "--env", str(env), "--store", str(tmp_path / "p.db"), "-k", "2", *paths)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 2 and set(out.stdout.splitlines()) <= set(paths)


@pytest.mark.parametrize("args, message", [
    (["-k", "0"], "-k 0: suggest at least 1 reference"),
    (["--have", "{missing}"], "not among the candidates' host profiles"),
])
def test_cli_bad_input_is_one_line(candidates, tmp_path, args, message):
    missing = tmp_path / "have.txt"
    missing.write_text("no_such_model\n")
    args = [a.replace("{missing}", str(missing)) for a in args]
    out = run_cli("calibrate", "suggest", "--host", candidates["json"], *args)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr
