"""The compilation job: fetch, load, build each candidate, verify and time them, keep the best, upload.

spec (written by jobforge.api.sagemaker_compilation): ``request`` (InputConfig, OutputConfig,
StoppingCondition as sent), ``target``, ``options``, ``inputs`` (the parsed DataInputConfig, or None) and
``output_uri``.
"""

from __future__ import annotations

import json
import time

from jobforge.execution.context import JobContext, JobStopped, WorkloadError
from jobforge.runtime import MANIFEST
from jobforge.runtime import load as load_compiled
from jobforge.workloads.compile import backends, measure, package, report, shapes, sources
from jobforge.workloads.compile.options import Options
from jobforge.workloads.compile.targets import Target, host_tuned, missing_cpu_features

RUNTIME_IMAGE = "jobforge-runtime"


def run(ctx: JobContext, spec: dict) -> None:
    input_config = spec["request"]["InputConfig"]
    target, options = Target.from_json(spec["target"]), Options.from_json(spec["options"])
    threads = max(1, int(ctx.resources.get("cpus", 1)))
    _set_torch_threads(input_config["Framework"], threads)
    work = ctx.work_dir / "compile"
    work.mkdir(parents=True, exist_ok=True)

    ctx.status("DownloadingInput", input_config["S3Uri"])
    archive = ctx.download(input_config["S3Uri"], work / "input.tar.gz")
    package.unpack(archive, work / "input", input_config["S3Uri"])
    model_path = package.model_file(work / "input", input_config["Framework"])
    _check_stop(ctx)

    ctx.status("Converting", f"{input_config['Framework']} model {model_path.name}")
    given = [shapes.InputSpec.from_json(item) for item in spec["inputs"]] if spec["inputs"] else None
    source = sources.load(input_config["Framework"], model_path, given, options.input_dtype, work)
    ctx.result({"DerivedDataInputConfig": shapes.dumps(source.inputs)})
    ctx.event(f"model {model_path.name}: inputs {shapes.dumps(source.inputs)}"
              + (" (derived from the model)" if source.derived else ""))
    for note in source.notes:
        ctx.event(note)
    feeds = measure.user_feeds(ctx.download(options.calibration, work / "calibration"), source.inputs) \
        if options.calibration else measure.generated(source.inputs)
    reference = [source.run(feed) for feed in feeds]
    timed = host_tuned(target, options.mattr)
    original = {"runs_as": source.original}
    if timed:
        original.update(measure.latency(source.run, feeds[0], options.timing_runs, ctx.should_stop))
    else:
        original["not_timed"] = _untimed_reason(target, options)
    _check_stop(ctx)

    candidates = []
    for backend, reason in backends.applicable(input_config["Framework"], target, options).items():
        if reason is not None:
            candidates.append({"backend": backend, "status": "not applicable", "reason": reason})
            continue
        ctx.status("Compiling", backend)
        candidates.append(_candidate(ctx, backend, source, target, options, feeds, reference, work, threads,
                                     original if timed else None))
        _check_stop(ctx)
    chosen = _choose(candidates, timed, target)
    summary = {"original": original, "candidates": [{k: v for k, v in c.items() if k != "built"} for c in candidates],
               "precision": options.precision, "allowed_error": options.allowed_difference, "target": target.name,
               "timed_on_host": timed, "verification_inputs": "calibration prefix" if options.calibration
               else f"{len(feeds)} generated input set(s), seed {measure.SEED}"}
    for line in report.log_lines(summary):
        ctx.event(line)
    if chosen is None:
        raise WorkloadError("No backend produced an accurate artifact: " + "; ".join(
            f"{c['backend']}: {c['status']}" + (f" ({c['reason']})" if c.get("reason") else "") for c in candidates))

    ctx.status("Uploading", spec["output_uri"])
    built = chosen["built"]
    summary["chosen"] = built.backend
    manifest = report.manifest(source, target, options, built)
    manifest["verification"] = {k: chosen[k] for k in ("max_abs_diff", "max_rel_diff", "error", "verified_on",
                                                         "on_target")}
    tarball = report.package(built, manifest, summary, work / "output.tar.gz")
    ctx.upload(tarball, spec["output_uri"])
    ctx.upload(built.folder / report.REPORT, spec["output_uri"].removesuffix(".tar.gz") + "-report.json")
    version = built.versions.get(built.backend) or built.versions.get("torch", "")
    ctx.result({"ArtifactDigest": report.digest(tarball), "Backend": built.backend,
                "InferenceImage": f"{RUNTIME_IMAGE}:{built.backend}-{version}"})
    ctx.event(f"kept {built.backend}: {spec['output_uri']}")


def _set_torch_threads(framework: str, threads: int) -> None:
    if framework == "PYTORCH":
        import torch

        torch.set_num_threads(threads)


def _check_stop(ctx: JobContext) -> None:
    if ctx.should_stop():
        raise JobStopped()


def _untimed_reason(target: Target, options: Options) -> str:
    missing = missing_cpu_features(options.mattr)
    if missing:
        return f"this host's CPU lacks {', '.join(missing)} that mattr asks for"
    if not target.served_here:
        return f"this host does not run {target.name} artifacts as that target would"
    return "this host cannot run the target"


def _candidate(ctx, backend, source, target, options, feeds, reference, work, threads, original) -> dict:
    item: dict = {"backend": backend, "precision": options.precision}
    started = time.monotonic()
    try:
        built = backends.build(backend, source, target, options, work / backend, feeds)
        item["build_seconds"] = round(time.monotonic() - started, 2)
        item["notes"] = built.notes
        item["size_bytes"] = sum(p.stat().st_size for p in built.folder.iterdir())
        model = _load(built, report.manifest(source, target, options, built), target, threads)
    except JobStopped:
        raise
    except Exception as err:  # the candidate fails; the report says why and the others go on
        item.update(status="failed", reason=f"{type(err).__name__}: {str(err)[:500]}")
        return item
    item["on_target"] = target.cpu or built.runs_on_accelerator()
    item["verified_on"] = "this host's CPU" if target.cpu else f"this host's {target.accelerator} GPU" \
        if item["on_target"] else f"this host's CPU, not the target's {target.accelerator}"
    item.update(measure.compare(reference, [model.run(feed) for feed in feeds]))
    if item["error"] > options.allowed_difference or item["label_mismatches"]:
        item.update(status="inaccurate", reason=f"error {item['error']:.3g} exceeds the allowed "
                    f"{options.allowed_difference:.3g} for {options.precision}" if not item["label_mismatches"] else
                    f"{item['label_mismatches']} predicted label(s) differ from the original's")
        return item
    if original is not None:
        item.update(measure.latency(model.run, feeds[0], options.timing_runs, ctx.should_stop))
        item["speedup"] = round(original["median_us"] / item["median_us"], 3)
    item.update(status="accurate", built=built)
    return item


def _load(built, manifest: dict, target: Target, threads: int):
    """The artifact through jobforge.runtime, as a user loads it; on this host's CPU where the target is an
    accelerator (this host verifies the graph, not the accelerator's execution of it)."""
    (built.folder / MANIFEST).write_text(json.dumps(manifest))
    device = None if target.cpu or built.runs_on_accelerator() else \
        {"onnxruntime": "CPUExecutionProvider", "openvino": "CPU"}.get(built.backend)
    return load_compiled(built.folder, threads=threads, device=device)


def _choose(candidates: list[dict], timed: bool, target: Target) -> dict | None:
    """The fastest accurate candidate where they were timed; else one verified on the target's accelerator
    before one verified only on this host's CPU, then the first in backends.ORDER."""
    accurate = [c for c in candidates if c["status"] == "accurate"]
    if not accurate:
        return None
    if timed:
        best, why = min(accurate, key=lambda c: c["median_us"]), "fastest accurate candidate"
    else:
        best = min(accurate, key=lambda c: (not c["on_target"], backends.ORDER.index(c["backend"])))
        why = "verified on the target's accelerator" if not target.cpu and best["on_target"] else \
            "first accurate candidate in jobforge's order (the target cannot be timed here)"
    for item in accurate:
        if item is best:
            item.update(status="chosen", reason=why)
        else:
            item.update(status="not chosen", reason=f"slower than {best['backend']}" if timed else
                        f"{best['backend']} comes first")
    return best
