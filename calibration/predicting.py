"""Predicting: a calibration's fits applied to host records, the fit chosen for each record's metric,
thread count and precision, and what a record gets when none applies."""

from calibration.errors import CalibrationError
from calibration.fits import positive
from calibration.hostdata import host_value, record_threads
from calibration.mix import operator_mix


class Predictor:
    """Adds `prediction` to host records: device latency and peak memory with 95% intervals."""

    def needs_op_profile(self):
        """True if a feature fit uses per-operator-class times, which profiling must then record."""
        return any(name.startswith("op_ms:") for fit in self.calibration["fits"]
                   for name in fit["model"].get("selected", []))

    def __init__(self, calibration, force=False, warn=print, device_ram_mb=None, device_threads=None):
        self.calibration, self.force, self.warn = calibration, force, warn
        self.device_threads = device_threads
        self.device_ram_mb = device_ram_mb or calibration.get("device_ram_mb")
        self.warned = set()

    def _fit(self, metric, threads, precision=None):
        fits = [f for f in self.calibration["fits"] if f["metric"] == metric]
        if self.calibration.get("per_precision") and any(f.get("precision") == precision for f in fits):
            fits = [f for f in fits if f.get("precision") == precision]
        # the fits made from host profiles at this thread count, for whichever device count they map to
        exact = [f for f in fits if f.get("host_threads", f["threads"]) == threads]
        if self.device_threads is not None:
            exact = [f for f in exact if f["threads"] == self.device_threads]
        if len(exact) > 1:
            same = [f for f in exact if f["threads"] == threads]
            if same:
                exact = same
            else:
                key = ("device threads", metric, threads)
                if key not in self.warned:
                    self.warned.add(key)
                    self.warn(f"warning: the calibration maps {threads}-thread host profiles to "
                              f"{', '.join(str(f['threads']) for f in exact)} device threads; choose one with "
                              "--device-threads")
                return None
        if exact or not fits:
            return exact[0] if exact else None
        key = ("threads", metric, threads)
        if key not in self.warned:
            self.warned.add(key)
            have = ", ".join(str(f["threads"]) for f in fits)
            self.warn(f"warning: the calibration has {metric} fits for {have} threads, not {threads}"
                      + ("; using the nearest (--force)" if self.force else "; use --force to predict anyway"))
        return min(fits, key=lambda f: abs(f["threads"] - threads)) if self.force else None

    def annotate(self, record):
        """The record with `prediction` added, or with `no_prediction` saying why it has none."""
        if record.get("status") != "ok":
            return record
        record.pop("no_prediction", None)
        why = self._annotate(record)
        if why and not record.get("prediction"):
            record["no_prediction"] = why
        return record

    def _annotate(self, record):
        refused = self.refusal(record)
        if refused:
            return refused
        threads = record_threads(record)
        prediction, why = {}, []
        for metric in ("latency_ms", "peak_memory_mb", "energy_mj"):
            fit = self._fit(metric, threads, record.get("precision"))
            host = host_value(record, metric)[0] if fit else None
            if fit and positive(host):
                try:
                    prediction[metric] = fit.predict(host, record)
                    if fit.get("host_threads"):
                        prediction[metric].update(device_threads=fit["threads"], host_threads=fit["host_threads"])
                except CalibrationError as exc:
                    self.warn(f"warning: no {metric} prediction: {exc}")
                    why.append(f"{metric}: {exc}")
            elif fit:
                why.append(f"{metric}: no positive host figure")
        if not any(f["metric"] in ("latency_ms", "peak_memory_mb", "energy_mj")
                   and f.get("host_threads", f["threads"]) == threads for f in self.calibration["fits"]) \
                and not prediction:
            have = sorted({f["threads"] for f in self.calibration["fits"]})
            why.insert(0, f"the calibration has fits for {', '.join(map(str, have))} thread(s), not {threads} "
                          "(--force takes the nearest)")
        if self.device_ram_mb and "peak_memory_mb" in prediction:
            p = prediction["peak_memory_mb"]
            p["exceeds_device_ram"] = p["value"] > self.device_ram_mb
        if prediction:
            record["prediction"] = prediction
            return None
        return "; ".join(why) or "no fit of the calibration applies"

    def refusal(self, record):
        """Why this calibration does not predict this record without --force (another runtime or
        precision than its references), warned once per kind; None when it may."""
        runtime = self.calibration.get("runtime")
        if runtime and record.get("runtime") != runtime:
            key = ("runtime", record.get("runtime"))
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration was made for runtime {runtime}, not {record.get('runtime')}"
                          + ("; predicting anyway (--force)" if self.force else "; use --force to predict anyway"))
            if not self.force:
                return f"the calibration is for runtime {runtime}, not {record.get('runtime')} (--force)"
        precision = self.calibration.get("precision")
        if precision and record.get("precision") and record["precision"] != precision:
            key = ("precision", record["precision"])
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration was fitted on {precision} references, not "
                          f"{record['precision']} ({record.get('model')})"
                          + ("; predicting anyway (--force)" if self.force else
                             "; use --force to predict anyway, or calibrate on references of that precision"))
            if not self.force:
                return f"the calibration was fitted on {precision} references, not {record['precision']} (--force)"
        fitted = {f.get("precision") for f in self.calibration["fits"]}
        if self.calibration.get("per_precision") and record.get("precision") not in fitted:
            key = ("precision", record.get("precision"))
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration has fits for {', '.join(sorted(p for p in fitted if p))} "
                          f"references, not {record.get('precision') or 'an unknown precision'} "
                          f"({record.get('model')})" + ("; predicting with another precision's fit (--force)"
                                                        if self.force else "; use --force to predict anyway, or "
                                                        "calibrate on references of that precision"))
            if not self.force:
                return (f"the calibration has fits for {', '.join(sorted(p for p in fitted if p))} references, not "
                        f"{record.get('precision') or 'an unknown precision'} (--force)")
        return None

    def mix_advice(self, records):
        """Warnings for predictions outside the references' operator mix, each naming the class, the
        models it concerns and the ones that would help most as new references (the largest share)."""
        flagged = {}
        for record in records:
            for metric, p in (record.get("prediction") or {}).items():
                for cls in p.get("outside_mix", []):
                    flagged.setdefault(cls, {})[record["model"]] = operator_mix(record)[cls]
        lines = []
        for cls, models in sorted(flagged.items()):
            cover = next((f["mix"].get(cls) for f in self.calibration["fits"] if f.get("mix")), None) or {}
            best = sorted(models, key=models.get, reverse=True)
            lines.append(f"warning: {len(models)} model(s) outside the references' operator mix: {cls} work is "
                         f"up to {100 * max(models.values()):.0f}% of their MACs, at most "
                         f"{100 * cover.get('share', 0):.0f}% in any reference ({cover.get('model', 'none')}): "
                         f"{', '.join(best[:5])}{' …' if len(best) > 5 else ''}; measuring "
                         f"{' or '.join(best[:2])} on the device as a reference would help")
        return lines
