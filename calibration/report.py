"""Formatters for `calibrate`: each returns lines; the CLI prints them."""

from calibration.fits import fit_label


NEXT_GAIN_WORTH = 0.5  # points of leave-one-out MAPE below which another reference buys little
EXTENSION = {"tflite": "tflite", "onnx": "onnx", "torch": "pt"}
# The command that makes the device's TFLite from a host format (profile --variants tflite).
CONVERT_HINT = {"onnx": "`profile --env ENV --variants tflite model.onnx`",
                "torch": "`profile --env ENV --variants tflite model.pt2` (a torch.export program, through "
                         "litert-torch; a TorchScript model.pt converts through its ONNX export)"}


def _g(value, digits=4):
    return "-" if value is None or value != value or value in (float("inf"), float("-inf")) else f"{value:.{digits}g}"


def fit_table(calibration):
    split = any(f.get("precision") for f in calibration["fits"])
    header = ["metric", "threads"] + (["precision"] if split else []) + [
        "method", "n", "a", "b", "R²", "adj R²", "RMSE", "MAPE %", "LOO MAPE %", "ρ", "τ"]
    rows = [[f["metric"], f["threads"]] + ([f.get("precision") or "-"] if split else []) + [
        f["method"], f["n"], _g(f["a"]), _g(f["b"])] + (
        [f"{f['r2']:.4f}", f"{f['adj_r2']:.4f}", _g(f["rmse"]), _g(f["mape"], 3)] if f["n"] >= 3 else
        ["unchecked"] * 4) + [_g(f.get("loo_mape"), 3), _g(f["spearman"], 3), _g(f["kendall"], 3)]
        for f in calibration["fits"]]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    lines = [f"Calibration (method {calibration['method']}, runtime {calibration.get('runtime') or '?'}); "
             f"ols/robust: device = a·host + b, loglinear: log device = a·log host + b, "
             f"relative: device = a·host + Σ w·feature (relative error), features: device = Σ w·feature + b",
             line(header), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    for f in calibration["fits"]:
        if f.get("auto"):
            lines.append(f"  {fit_label(f)}: auto chose {f['auto']['chose']} ({f['auto']['why']})")
        step = f.get("next_reference")
        if step:
            lines.append(f"  {fit_label(f)}: leave-one-out MAPE {step['loo_mape']:.2f}% with "
                         f"{step['n']} references, {step['loo_mape_one_fewer']:.2f}% with {step['n'] - 1} (mean over "
                         f"the {step['n']} left out): "
                         + (f"the last one bought {step['gain']:.2f} points and the next is likely to buy about as "
                            "much or less" if step["gain"] > 0 else "one fewer did as well")
                         + ("; measuring more helps little" if step["gain"] < NEXT_GAIN_WORTH else
                            " (`calibrate suggest --have` names it)"))
        if f["method"] in ("features", "relative"):
            lines.append(f"  {fit_label(f)}: features used: {', '.join(f['model']['selected'])}"
                         + (f"; prior{' ' + repr(f['prior']['key']) if f['prior'].get('key') else ''} learned on "
                            f"{f['prior']['source']}" if f.get("prior") else ""))
    return lines


def warnings(calibration):
    out = []
    for fit in calibration["fits"]:
        for point in fit.get("leverage", []):
            out.append(f"WARNING: {fit_label(fit)}: {point['model']} has Cook's distance "
                       f"{point['cooks_distance']:.2f} > 4/n = {4 / fit['n']:.2f}; it carries the fit "
                       f"(R² {fit['r2']:.4f} with it, {point['r2_without']:.4f} without). Add references near it.")
        if fit["n"] < 3:
            out.append(f"WARNING: {fit_label(fit)}: only {fit['n']} references (kept with --force); a line through "
                       "two points fits them exactly, so its R² and MAPE say nothing, and no leave-one-out "
                       "error or prediction interval can check it (needs 3)")
    if len(calibration.get("precisions") or []) > 1 and not calibration.get("per_precision"):
        out.append(f"WARNING: the references mix precisions ({', '.join(calibration['precisions'])}); one fit "
                   "spans them, so profile and calibrate each precision apart for predictions that hold")
    for short in calibration.get("precisions_without_fit") or []:
        out.append(f"WARNING: {short['metric']} at {short['threads']} threads, {short['precision']}: only "
                   f"{short['n']} reference(s), too few for a fit of that precision; its models get no prediction "
                   "(measure more of them on the device)")
    unsteady = calibration.get("unsteady") or {}
    if unsteady.get("models"):
        names = ", ".join(unsteady["models"][:8]) + (" …" if len(unsteady["models"]) > 8 else "")
        out.append(f"WARNING: {len(unsteady['models'])} reference(s) have an unstable or disturbed host figure: "
                   f"{names}; " + ("left out of the fit (--skip-unsteady)" if unsteady.get("left_out") else
                                   "profile them again on a quiet host (--remeasure), or leave them out "
                                   "with --skip-unsteady"))
    gap = calibration.get("format_gap")
    if gap:
        device = "/".join(gap["device"])
        extension = EXTENSION.get(gap["device"][0], gap["device"][0])
        out.append(f"WARNING: the references ran on the device as {device} but were profiled on this host as "
                   f"{gap['host']}; the two runtimes differ per operator, so predictions are looser than a "
                   f"same-format fit. Profile the {device} files on the host (`profile --env ENV model.{extension}`"
                   + (f", or convert yours: {CONVERT_HINT[gap['host']]}"
                      if gap["device"] == ["tflite"] and gap["host"] in CONVERT_HINT else "")
                   + ") and calibrate on those" + ("; the relative model starts from the prior learned for this pair of "
                                               "formats" if any("->" in ((f.get("prior") or {}).get("runtime") or "")
                                                                for f in calibration["fits"]) else ""))
    for fit in calibration["fits"]:
        if fit.get("host_threads"):
            out.append(f"WARNING: {fit_label(fit)}: no host profile at {fit['threads']} threads, so the device's "
                       f"{fit['threads']}-thread figures are fitted to {fit['host_threads']}-thread host figures; "
                       "how each model scales across threads is then the fit's to learn, from its references")
    if calibration.get("accelerator"):
        out.append(f"WARNING: the device rows ran on {calibration['accelerator']} and the host profiles on this "
                   "host's CPU: this calibration maps CPU figures to an accelerator, whose cost per operator "
                   "differs from a CPU's; check its leave-one-out error before trusting it")
    if calibration.get("unmatched"):
        names = ", ".join(f"{u['model']}@{u['threads']}t" for u in calibration["unmatched"])
        out.append(f"WARNING: {len(calibration['unmatched'])} device row(s) matched no host profile and were "
                   f"not used: {names}")
    return out


def predictions(records):
    from profiler.report import ranking, results_table

    return results_table(records) + [""] + ranking(records)
