"""`Results`: the records of one `profile` call, with what the run had to say, as a DataFrame, the
accuracy-latency front, its figure and the ranking."""

import os

from profiler.errors import ProfileError


class Results(list):
    """The result records of one run (dicts in the result JSON shape), plus what the run had to say.

    `notices`: progress-free remarks (e.g. how many came from the store); `warnings`: lines a user
    must see (caps not enforced, predictions outside the references' mix, per-model warnings)."""

    def __init__(self, records=(), target=None):
        super().__init__(records)
        self.target = target
        self.notices, self.warnings = [], []

    def __repr__(self):
        statuses = {}
        for record in self:
            statuses[record.get("status")] = statuses.get(record.get("status"), 0) + 1
        counts = ", ".join(f"{n} {status}" for status, n in statuses.items())
        name = self.target.name if self.target is not None else "?"
        return f"<Results: {len(self)} model(s) on {name}{': ' + counts if counts else ''}>"

    def _repr_html_(self):  # a notebook shows the table, not every timed run
        return self.to_pandas()._repr_html_()

    def to_pandas(self):
        """One row per model; nested fields flattened with dots (latency_ms.median, prediction.latency_ms.value)."""
        from profiler.export import to_pandas

        return to_pandas(self)

    def front(self, budget_ms=None, min_accuracy=None):
        """The accuracy-latency front as a DataFrame: every model with an accuracy (within the budget and
        floor, if given), fastest first, `on_front` where no other is both faster and more accurate;
        latency is the predicted device figure when there is one, else the measured median (on the host,
        or on the device with --on); `fits_device_ram` compares the predicted peak, else the measured peak
        (`latency_basis`, `memory_basis`: predicted, device or host) with DEVICE_RAM."""
        import pandas as pd

        from profiler.report import accuracy_score, front, ranking_latency

        _front_limits(budget_ms, min_accuracy)
        scored, on_front = front(self, budget_ms, min_accuracy)
        ram = self.target.device_ram_mb if self.target is not None else None
        rows = []
        for r in scored:
            predicted = ((r.get("prediction") or {}).get("peak_memory_mb") or {}).get("value")
            peak = predicted if predicted is not None else r.get("peak_memory_mb")
            rows.append({"model": r["model"], "runtime": r.get("runtime"), "precision": r.get("precision"),
                         "variant": (r.get("variant") or {}).get("kind"), "latency_ms": ranking_latency(r),
                         "latency_basis": "predicted" if (r.get("prediction") or {}).get("latency_ms") else
                         "device" if r.get("native_device") else "host",
                         "accuracy": accuracy_score(r), "task": r["accuracy"]["task"], "peak_memory_mb": peak,
                         "memory_basis": "predicted" if predicted is not None else
                         "device" if r.get("native_device") else "host",
                         "fits_device_ram": None if ram is None or peak is None else peak <= ram,
                         "flags": ",".join(r.get("flags") or []), "on_front": any(r is f for f in on_front)})
        return pd.DataFrame(rows, columns=["model", "runtime", "precision", "variant", "latency_ms", "latency_basis",
                                           "accuracy", "task", "peak_memory_mb", "memory_basis", "fits_device_ram",
                                           "flags", "on_front"])

    def plot_front(self, folder=None, budget_ms=None, min_accuracy=None):
        """The accuracy-latency figure with the front drawn (a matplotlib Figure), or, with `folder`, the
        path of the accuracy_front.png written there (an .svg beside it); None when no model has an accuracy."""
        from profiler.figures import accuracy_front, front_figure

        _front_limits(budget_ms, min_accuracy)
        if folder is None:
            return front_figure(self, budget_ms, min_accuracy)
        if not isinstance(folder, (str, os.PathLike)):
            raise ProfileError(f"plot_front: folder must be a path, not {type(folder).__name__}")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ProfileError(f"plot_front: {folder} is a file, not a folder")
        try:
            return accuracy_front(self, os.fspath(folder), budget_ms=budget_ms, min_accuracy=min_accuracy)
        except OSError as exc:
            raise ProfileError(f"plot_front: {folder}: could not write ({exc.strerror or exc})") from None

    def ranking(self):
        """The ranked summary lines (fastest first, with ratios), as `profile` prints them."""
        from profiler.report import ranking

        return ranking(self)


def _front_limits(budget_ms, min_accuracy):
    """The front's filters, checked as the command checks --budget-ms and --min-accuracy."""
    from profiler.report import front_limit_problem

    for name, value in (("budget_ms", budget_ms), ("min_accuracy", min_accuracy)):
        problem = None if value is None else front_limit_problem(name, value)
        if problem:
            raise ProfileError(f"{name}: {problem}")
