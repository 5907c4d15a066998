"""The performance benchmark of issue 10, in sections. One run prints a table per section and
writes everything as one JSON file under var/benchmarks/perf/.

    .venv/bin/python benchmarks/perf.py                         # every section
    .venv/bin/python benchmarks/perf.py --section engines --rounds 5 --batches 1,2,4,8,32

Sections (add one: a module with `add_arguments(parser)` and `run(args) -> (dict, table text)`,
listed in SECTIONS):
  engines   eager torch vs each inference engine: img/s per batch size, ratios, best batch per
            engine, cosine agreement with torch on real photos (benchmarks/perf_engines.py)
  ingest    `attrib index` of JPEG files end to end against the bare forward, by batch size, with
            and without decoding worker processes (benchmarks/perf_ingest.py)
  serving   /attribute at concurrency 1 and 16 against the engine's bare forward, with and
            without the shared inference batches (benchmarks/perf_serving.py)
  spaces    /attribute at c=1: style alone against copy + style + content, with content heads on
            either backbone and with the previous 9-forward recipe (benchmarks/perf_spaces.py)

Timings on a shared machine are noisy: variants are measured interleaved (A, B, A, B, ...), in a
rotating order, best of `--rounds`; the load average before and after is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's packages, not an editable install's
sys.path.insert(0, str(Path(__file__).resolve().parent))

import perf_engines  # noqa: E402
import perf_ingest  # noqa: E402
import perf_serving  # noqa: E402
import perf_spaces  # noqa: E402

SECTIONS = {"engines": perf_engines, "ingest": perf_ingest, "serving": perf_serving, "spaces": perf_spaces}
DATA = REPO.parent / "shared" / "data" / "imagenet-sample"


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS), help="run only these (repeatable)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of real photos (*.jpg)")
    parser.add_argument("--output", type=Path, default=REPO / "var" / "benchmarks" / "perf")
    for module in SECTIONS.values():
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    report = {"command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), "sections": {}}
    for name in args.section or list(SECTIONS):
        result, table = SECTIONS[name].run(args)
        report["sections"][name] = result
        print(f"\n## {name}\n{table}", flush=True)
    report["machine"]["loadavg_end"] = os.getloadavg()
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"perf-{report['started'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\n{report['machine']['cpu']}, {report['machine']['cores']} cores, load average "
          f"{report['machine']['loadavg_start'][0]:.1f} -> {report['machine']['loadavg_end'][0]:.1f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
