"""The machine's physical state beside every figure: what this host exposes (here, in a VM, nothing:
every field reads "unavailable", never 0), and the readers and parsers on trees and outputs laid
out as the kernel and the Raspberry Pi tools document them. These trees are written by the test in
the documented layout and units (sysfs thermal zones in millidegrees Celsius, cpufreq in kHz;
`vcgencmd` output as the Raspberry Pi documentation shows it); they are not recordings of a device."""

import json
import os

import pytest

from tests.conftest import example

import profiler  # noqa: E402
from profiler.harness import telemetry  # noqa: E402


def sysfs(root, temps_mc=(), cores=None, governor="performance"):
    """A /sys tree: thermal zones at temps_mc (m°C); cores {n: (current kHz, max kHz)}."""
    for i, value in enumerate(temps_mc):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(f"{value}\n")
        (zone / "type").write_text("cpu-thermal\n")
    for core, (current, maximum) in (cores or {}).items():
        folder = root / f"sys/devices/system/cpu/cpu{core}/cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_cur_freq").write_text(f"{current}\n")
        (folder / "cpuinfo_max_freq").write_text(f"{maximum}\n")
        (folder / "scaling_governor").write_text(f"{governor}\n")
    return root


def test_this_host_reports_what_it_exposes_and_unavailable_for_the_rest():
    (record,) = profiler.profile([example("tiny_cnn.onnx")], profiler.Target.from_env(
        None, backend="local", cpus=1, warmup=2, iterations=20), store=None, retries=0)
    seen = record["telemetry"]
    exposed = telemetry.temperatures("/")
    assert (seen["temperature_c"] == "unavailable") == (not exposed)
    has_cpufreq = os.path.exists(f"/sys/devices/system/cpu/cpu{record['cpus_seen'][0]}/cpufreq/scaling_cur_freq")
    assert (seen["clock_mhz"] == "unavailable") == (not has_cpufreq)
    assert (seen["energy"] == "unavailable") == (not telemetry.rapl_energy_uj("/"))
    assert "throttled" not in record["flags"] or seen["throttled"]


def test_a_clock_below_its_maximum_under_the_performance_governor_is_throttled(tmp_path):
    root = sysfs(tmp_path, temps_mc=[81250], cores={0: (1500000, 2400000), 1: (2400000, 2400000)})
    watch = telemetry.Watch(root=str(root), cores=[0, 1])
    watch.tick()
    found = watch.finish(runs=100)
    assert found["temperature_c"] == {"before": 81.2, "after": 81.2} or found["temperature_c"]["after"] == 81.2
    assert found["clock_mhz"] == {"min": 1500.0, "median": 1950.0, "max_available": 2400.0}
    assert found["governor"] == "performance" and found["energy"] == "unavailable"
    assert found["throttled"] == ["a core ran at 1500 MHz of 2400 MHz under the performance governor"]
    # big.LITTLE, each cluster at its own maximum, and a governor that scales on purpose: not throttled
    calm = sysfs(tmp_path / "ondemand", cores={0: (1800000, 1800000), 4: (1000000, 2400000)}, governor="schedutil")
    watch = telemetry.Watch(root=str(calm), cores=[0, 4])
    watch.tick()
    assert watch.finish(runs=10)["throttled"] == []


def test_rapl_counters_give_energy_per_inference(tmp_path):
    package = tmp_path / "sys/class/powercap/intel-rapl:0"
    package.mkdir(parents=True)
    (package / "energy_uj").write_text("1000000\n")
    watch = telemetry.Watch(root=str(tmp_path), cores=[0])
    (package / "energy_uj").write_text("3000000\n")  # 2 J over the runs
    energy = watch.finish(runs=400)["energy"]
    assert energy["source"] == "rapl" and energy["energy_mj_per_inference"] == pytest.approx(5.0)


def test_vcgencmd_outputs_parse_as_documented():
    assert telemetry.parse_temp("temp=45.6'C\n") == 45.6
    assert telemetry.parse_clock("frequency(48)=1500398464\n") == 1500.4
    bits = telemetry.parse_throttled("throttled=0x50005\n")
    assert bits["now"] == ["under-voltage", "throttled"]
    assert bits["since_boot"] == ["under-voltage", "throttled"]
    assert telemetry.parse_throttled("throttled=0x0")["now"] == []
    pmic = ("     3V7_WL_SW_A current(0)=0.00390372A\n     3V7_WL_SW_V volt(8)=3.74277000V\n"
            "       VDD_CORE_A current(7)=2.49330000A\n       VDD_CORE_V volt(15)=0.72000000V\n")
    assert telemetry.parse_pmic(pmic) == pytest.approx(0.00390372 * 3.74277 + 2.4933 * 0.72, abs=1e-4)
    assert telemetry.parse_pmic("") is None and telemetry.parse_temp("nonsense") is None


def test_a_throttled_record_is_flagged_in_every_export(tmp_path):
    from profiler.export import write_csv, write_json
    from profiler.harness.record import measurement_flags
    from profiler.html_report import profile_report
    from profiler.report import markdown_lines, results_table

    (record,) = profiler.profile([example("tiny_cnn.onnx")], profiler.Target.from_env(
        None, backend="local", cpus=1, warmup=2, iterations=10), store=None, retries=0)
    root = sysfs(tmp_path / "hot", temps_mc=[85000], cores={0: (600000, 2400000)})
    watch = telemetry.Watch(root=str(root), cores=[0])
    watch.tick()
    record = dict(record, telemetry=watch.finish(runs=10))
    record["flags"] = measurement_flags(record)
    assert "throttled" in record["flags"]
    assert "throttled" in "\n".join(results_table([record])) and "throttled" in "\n".join(markdown_lines([record]))
    write_csv(tmp_path / "r.csv", [record])
    write_json(tmp_path / "r.json", [record])
    assert "throttled" in (tmp_path / "r.csv").read_text()
    assert json.loads((tmp_path / "r.json").read_text())[0]["telemetry"]["throttled"]
    profile_report(str(tmp_path / "r.html"), [record])
    assert "throttled" in (tmp_path / "r.html").read_text()


def test_cool_down_waits_for_the_board_and_says_when_there_is_no_sensor(tmp_path):
    root = sysfs(tmp_path, temps_mc=[50000])
    assert telemetry.cool_down(55, root=str(root)) == {"waited_s": 0.0, "temperature_c": 50.0, "reached": True}
    hot = sysfs(tmp_path / "hot", temps_mc=[70000])
    waited = telemetry.cool_down(55, root=str(hot), max_wait_s=0.3, poll_s=0.1)
    assert waited["reached"] is False and waited["waited_s"] >= 0.3
    assert telemetry.cool_down(55, root=str(tmp_path / "nothing")) is None


def test_a_jetsons_ina3221_rails_give_its_input_power(tmp_path):
    chip = tmp_path / "sys/class/hwmon/hwmon1"
    chip.mkdir(parents=True)
    (chip / "name").write_text("ina3221\n")
    for channel, (label, millivolts, milliamps) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400),
                                                              ("VDD_SOC", 5000, 300)], start=1):
        (chip / f"in{channel}_label").write_text(label + "\n")
        (chip / f"in{channel}_input").write_text(f"{millivolts}\n")
        (chip / f"curr{channel}_input").write_text(f"{milliamps}\n")
    assert telemetry.ina3221_power_w(str(tmp_path)) == 6.0  # VDD_IN alone: the board's whole input
    watch = telemetry.Watch(root=str(tmp_path), cores=[0])
    watch.tick()
    energy = watch.finish(runs=1000)["energy"]
    assert energy["source"] == "ina3221" and energy["mean_power_w"] == 6.0
    assert telemetry.ina3221_power_w(str(tmp_path / "none")) is None


def test_energy_measured_on_the_device_becomes_a_device_row_metric(tmp_path):
    from calibration.importers import harness_rows

    (record,) = profiler.profile([example("tiny_cnn.onnx")], profiler.Target.from_env(
        None, backend="local", cpus=1, warmup=2, iterations=10), store=None, retries=0)
    record = dict(record, telemetry=dict(record["telemetry"], energy={
        "source": "vcgencmd pmic_read_adc", "mean_power_w": 3.1, "energy_mj_per_inference": 0.62}))
    (row,) = harness_rows([record], "device.json")
    assert row.metrics["energy_mj"] == 0.62 and row.metrics["latency_ms"] == record["latency_ms"]["median"]
    (without,) = harness_rows([dict(record, telemetry={"energy": "unavailable"})], "device.json")
    assert "energy_mj" not in without.metrics
