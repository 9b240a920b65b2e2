"""The physical state of the machine that measures, where it exposes it: temperatures (thermal zones,
hwmon), the measuring cores' clocks and governor (cpufreq), a Raspberry Pi's throttling bits and
PMIC power (`vcgencmd`), a Jetson's power rails (INA3221 through hwmon), and package energy (RAPL,
powercap). Part of the worker package: standard
library only, read from `root` (the real `/` unless a test points elsewhere). A figure a system does
not expose is the text "unavailable", never a zero."""

import os
import shutil
import statistics
import subprocess
import time

UNAVAILABLE = "unavailable"
THROTTLE_CLOCK_SHARE = 0.95  # under a performance governor, a clock below this share of its maximum is throttled
# get_throttled bits (Raspberry Pi documentation): now, and since boot
PI_THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit"}
PI_SINCE_SHIFT = 16


def _read(root, path):
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def temperatures(root="/"):
    """{sensor: °C} from the thermal zones and hwmon sensors."""
    found = {}
    zones = os.path.join(root, "sys/class/thermal")
    for name in sorted(os.listdir(zones)) if os.path.isdir(zones) else []:
        if name.startswith("thermal_zone"):
            value = _number(_read(root, f"/sys/class/thermal/{name}/temp"))
            if value is not None:
                label = _read(root, f"/sys/class/thermal/{name}/type") or name
                found[f"{name} ({label})"] = round(value / 1000.0, 1)
    hwmon = os.path.join(root, "sys/class/hwmon")
    for name in sorted(os.listdir(hwmon)) if os.path.isdir(hwmon) else []:
        chip = _read(root, f"/sys/class/hwmon/{name}/name") or name
        for entry in sorted(os.listdir(os.path.join(hwmon, name))):
            if entry.startswith("temp") and entry.endswith("_input"):
                value = _number(_read(root, f"/sys/class/hwmon/{name}/{entry}"))
                if value is not None:
                    found[f"{chip}/{entry[:-6]}"] = round(value / 1000.0, 1)
    return found


def hottest(root="/", vcgencmd=None):
    """The highest temperature the machine reports (°C), or None."""
    values = list(temperatures(root).values())
    if vcgencmd:
        pi = parse_temp(_vcgencmd(vcgencmd, "measure_temp"))
        if pi is not None:
            values.append(pi)
    return max(values) if values else None


def clocks(root, cores):
    """{core: MHz} now, from cpufreq's scaling_cur_freq (kHz)."""
    found = {}
    for core in cores:
        value = _number(_read(root, f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq"))
        if value is not None:
            found[core] = value / 1000.0
    return found


def clock_limits(root, cores):
    """({core: max MHz}, governor or None) from cpufreq."""
    limits = {}
    governor = None
    for core in cores:
        value = _number(_read(root, f"/sys/devices/system/cpu/cpu{core}/cpufreq/cpuinfo_max_freq"))
        if value is not None:
            limits[core] = value / 1000.0
        governor = governor or _read(root, f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor")
    return limits, governor


def rapl_energy_uj(root="/"):
    """{domain: µJ} of the package energy counters (powercap intel-rapl, which AMD hosts use too)."""
    found = {}
    base = os.path.join(root, "sys/class/powercap")
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if name.count(":") == 1:  # packages, not their subdomains
            value = _number(_read(root, f"/sys/class/powercap/{name}/energy_uj"))
            if value is not None:
                found[name] = value
    return found


def ina3221_rails(root="/"):
    """A Jetson's INA3221 rails to read (hwmon: in<N>_input mV and curr<N>_input mA per rail,
    in<N>_label naming it): [(voltage file, current file)], the VDD_IN rail alone where one is
    labelled so (the board's whole input), else every rail; found once, read at every tick."""
    hwmon = os.path.join(root, "sys/class/hwmon")
    rails = {}
    for name in sorted(os.listdir(hwmon)) if os.path.isdir(hwmon) else []:
        if (_read(root, f"/sys/class/hwmon/{name}/name") or "") != "ina3221":
            continue
        for channel in range(1, 4):
            files = (f"/sys/class/hwmon/{name}/in{channel}_input", f"/sys/class/hwmon/{name}/curr{channel}_input")
            if all(_number(_read(root, f)) is not None for f in files):
                rails[_read(root, f"/sys/class/hwmon/{name}/in{channel}_label") or f"{name}/{channel}"] = files
    total = [files for label, files in rails.items() if label.upper().startswith("VDD_IN")]
    return total[:1] or list(rails.values())


def ina3221_power_w(root="/", rails=None):
    """The power in W through the rails ina3221_rails() found (volts × amps, summed), or None."""
    readings = [(_number(_read(root, v)), _number(_read(root, a))) for v, a in
                (ina3221_rails(root) if rails is None else rails)]
    readings = [(v, a) for v, a in readings if v is not None and a is not None]
    return round(sum(v * a for v, a in readings) / 1e6, 4) if readings else None


def _vcgencmd(command, *args):
    try:
        done = subprocess.run([command, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def parse_temp(text):
    """`vcgencmd measure_temp`: "temp=45.6'C" -> 45.6."""
    if text and text.strip().startswith("temp="):
        return _number(text.strip()[5:].split("'")[0])
    return None


def parse_throttled(text):
    """`vcgencmd get_throttled`: "throttled=0x50005" -> {"now": [...], "since_boot": [...], "bits": 0x50005}."""
    if not text or not text.strip().startswith("throttled="):
        return None
    try:
        bits = int(text.strip().split("=", 1)[1], 16)
    except ValueError:
        return None
    return {"bits": bits, "now": [name for bit, name in PI_THROTTLE_BITS.items() if bits >> bit & 1],
            "since_boot": [name for bit, name in PI_THROTTLE_BITS.items() if bits >> (bit + PI_SINCE_SHIFT) & 1]}


def parse_clock(text):
    """`vcgencmd measure_clock arm`: "frequency(48)=1500398464" -> 1500.4 (MHz)."""
    if text and "=" in text:
        value = _number(text.strip().split("=", 1)[1])
        return round(value / 1e6, 1) if value is not None else None
    return None


def parse_pmic(text):
    """`vcgencmd pmic_read_adc` (Raspberry Pi 5): the board's power in W, the sum over its rails of
    current × voltage ("VDD_CORE_A current(7)=2.49330000A" with "VDD_CORE_V volt(15)=0.72000000V")."""
    currents, volts = {}, {}
    for line in (text or "").splitlines():
        line = line.strip()
        if "=" not in line or " " not in line:
            continue
        name, _, value = line.partition(" ")
        reading = _number(value.split("=", 1)[1].rstrip("AV"))
        if reading is None:
            continue
        if value.startswith("current"):
            currents[name[:-2]] = reading
        elif value.startswith("volt"):
            volts[name[:-2]] = reading
    rails = set(currents) & set(volts)
    return round(sum(currents[r] * volts[r] for r in rails), 4) if rails else None


class Watch:
    """What one model's timed runs saw: temperature before and after, the measuring cores' clocks
    (sampled by tick() between runs), throttling, and energy where a counter or sensor exists."""

    def __init__(self, root="/", cores=None):
        self.root = root
        self.cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
        self.vcgencmd = shutil.which("vcgencmd")
        self.limits, self.governor = clock_limits(root, self.cores)
        self.samples, self.pi_clocks, self.power, self.rails = [], [], [], []
        self.ina3221 = ina3221_rails(root)  # what exists is found once, not at every tick
        self.clock_cores = list(clocks(root, self.cores))
        self.temperature_before = hottest(root, self.vcgencmd)
        self.throttled_before = parse_throttled(_vcgencmd(self.vcgencmd, "get_throttled")) if self.vcgencmd else None
        self.energy_before = rapl_energy_uj(root)
        self.started = time.monotonic()
        self.last_slow = 0.0

    def tick(self):
        """Between timed runs: the cores' clocks and a Jetson's rails (file reads); a Pi's clock and
        PMIC (a command each) at most twice a second."""
        if self.clock_cores:
            self.samples.extend(clocks(self.root, self.clock_cores).values())
        if self.ina3221:
            jetson = ina3221_power_w(self.root, self.ina3221)
            if jetson is not None:
                self.rails.append(jetson)
        if self.vcgencmd and time.monotonic() - self.last_slow >= 0.5:
            self.last_slow = time.monotonic()
            clock = parse_clock(_vcgencmd(self.vcgencmd, "measure_clock", "arm"))
            if clock is not None:
                self.pi_clocks.append(clock)
            power = parse_pmic(_vcgencmd(self.vcgencmd, "pmic_read_adc"))
            if power is not None:
                self.power.append(power)

    def finish(self, runs):
        """The record's `telemetry` and whether the runs were throttled (with why)."""
        seconds = time.monotonic() - self.started
        after = hottest(self.root, self.vcgencmd)
        clocks_seen = self.samples or self.pi_clocks
        record = {
            "temperature_c": ({"before": self.temperature_before, "after": after}
                              if self.temperature_before is not None or after is not None else UNAVAILABLE),
            "clock_mhz": ({"min": round(min(clocks_seen), 1), "median": round(statistics.median(clocks_seen), 1),
                           "max_available": round(max(self.limits.values()), 1) if self.limits else None}
                          if clocks_seen else UNAVAILABLE),
            "governor": self.governor or UNAVAILABLE,
        }
        reasons = []
        if self.samples and self.limits and self.governor == "performance" \
                and min(self.samples) < THROTTLE_CLOCK_SHARE * min(self.limits.values()):
            reasons.append(f"a core ran at {min(self.samples):.0f} MHz of {min(self.limits.values()):.0f} MHz under "
                           "the performance governor")
        if self.vcgencmd:
            now = parse_throttled(_vcgencmd(self.vcgencmd, "get_throttled"))
            record["throttled_bits"] = now["bits"] if now else UNAVAILABLE
            if now and now["now"]:
                reasons.append("the board reports " + ", ".join(now["now"]))
            elif now and self.throttled_before and set(now["since_boot"]) - set(self.throttled_before["since_boot"]):
                reasons.append("the board was " + ", ".join(sorted(set(now["since_boot"])
                                                                   - set(self.throttled_before["since_boot"])))
                               + " during the runs")
        energy_after = rapl_energy_uj(self.root)
        common = [d for d in energy_after if d in self.energy_before and energy_after[d] >= self.energy_before[d]]
        if common and runs:
            joules = sum(energy_after[d] - self.energy_before[d] for d in common) / 1e6
            record["energy"] = {"source": "rapl", "mean_power_w": round(joules / seconds, 3) if seconds > 0 else None,
                                "energy_mj_per_inference": round(1000 * joules / runs, 4),
                                "note": "the whole package, every process on it"}
        elif self.rails and runs:
            mean_w = statistics.fmean(self.rails)
            record["energy"] = {"source": "ina3221", "mean_power_w": round(mean_w, 3),
                                "energy_mj_per_inference": round(1000 * mean_w * seconds / runs, 4),
                                "note": "the board's input rail (VDD_IN), or its rails summed"}
        elif self.power and runs:
            mean_w = statistics.fmean(self.power)
            record["energy"] = {"source": "vcgencmd pmic_read_adc", "mean_power_w": round(mean_w, 3),
                                "energy_mj_per_inference": round(1000 * mean_w * seconds / runs, 4),
                                "note": "the whole board"}
        else:
            record["energy"] = UNAVAILABLE
        record["throttled"] = reasons
        return record


def cool_down(limit_c, root="/", max_wait_s=300.0, poll_s=1.0):
    """Wait until the hottest sensor reads at most limit_c (°C), at most max_wait_s. Returns
    {"waited_s", "temperature_c", "reached"}, or None when no sensor is exposed."""
    vcgencmd = shutil.which("vcgencmd")
    start = time.monotonic()
    value = hottest(root, vcgencmd)
    if value is None:
        return None
    while value > limit_c and time.monotonic() - start < max_wait_s:
        time.sleep(poll_s)
        value = hottest(root, vcgencmd)
    return {"waited_s": round(time.monotonic() - start, 1), "temperature_c": value, "reached": value <= limit_c}
