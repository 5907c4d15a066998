"""perf.py section `engines`: what runs the backbone fastest on this CPU, and does it agree.

Variants, each pixels (B, 3, 224, 224) -> pooled features, measured on the same real photos:
  torch       the baseline: the eager fp32 backbone as the encoder runs it today (inference_mode)
  torch-cl    eager torch tuned: inference_mode + channels_last weights and input
  torch-1t    eager torch on one thread (on a busy machine two OpenMP threads can be far slower)
  onnx        ONNX Runtime on the cached export (training/engines)
  openvino    OpenVINO on the same export
Preprocessing is done once beforehand and is not timed: it is the same for every variant.
"""

from __future__ import annotations

import copy
import tempfile
import time

import torch
import torch.nn.functional as F
from PIL import Image

VARIANTS = ("torch", "torch-cl", "torch-1t", "onnx", "openvino")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("engines")
    group.add_argument("--images", type=int, default=200, help="real photos for agreement and timing")
    group.add_argument("--batches", default="1,2,4,8,32", help="batch sizes, comma-separated")
    group.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    group.add_argument("--trial-images", type=int, default=64, help="images per timed trial (at least one batch)")
    group.add_argument("--trial-seconds", type=float, default=3.0, help="a trial stops after this long (>= 1 batch)")
    group.add_argument("--variants", default=",".join(VARIANTS), help="variants to run, comma-separated")


def run(args) -> tuple[dict, str]:
    from training.encoders import load_encoder

    encoder = load_encoder("default", device="cpu")
    paths = sorted(args.data.glob("*.jpg"))[: args.images]
    pixels = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])
    variants, setup = build_variants(encoder, args.variants.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    agreement = measure_agreement(variants, pixels)
    speed = measure_speed(variants, pixels, batches, args.rounds, args.trial_images, args.trial_seconds)
    head_ms = measure_head(encoder)
    result = summarise(speed, batches)
    result |= {"images": len(paths), "rounds": args.rounds, "trial_images": args.trial_images,
               "trial_seconds": args.trial_seconds,
               "setup_s": setup, "agreement": agreement, "head_ms_per_image": head_ms,
               "threads": torch.get_num_threads(), "versions": versions()}
    return result, table(result, batches)


def build_variants(encoder, names: list[str]) -> tuple[dict, dict]:
    from training.engines.build import build_engine

    variants, setup = {}, {}
    backbone = encoder.backbone
    variants["torch"] = lambda x: backbone(x).float()
    if "torch-cl" in names:
        tuned = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
        variants["torch-cl"] = lambda x: tuned(x.contiguous(memory_format=torch.channels_last)).float()
    if "torch-1t" in names:
        variants["torch-1t"] = lambda x: one_thread(backbone, x)
    cache = tempfile.mkdtemp(prefix="perf-engines-")
    for name in ("onnx", "openvino"):
        if name in names:
            started = time.perf_counter()  # the first one includes the export
            engine = build_engine(name, backbone, encoder.spec.input_size, encoder.backbone_id, cache)
            setup[name] = round(time.perf_counter() - started, 2)
            if engine.name == name:
                variants[name] = engine
            else:
                print(f"warning: {name} fell back to torch; not measured")
    return variants, setup


def one_thread(backbone, pixels: torch.Tensor) -> torch.Tensor:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return backbone(pixels).float()
    finally:
        torch.set_num_threads(threads)


@torch.inference_mode()
def measure_agreement(variants: dict, pixels: torch.Tensor, batch: int = 32) -> dict:
    """Cosine of each variant's features with eager torch's, per photo. Torch runs on one thread
    here (the same arithmetic; much faster on a busy machine); the engines keep their threads."""
    def features(forward):
        return torch.cat([forward(pixels[s : s + batch]) for s in range(0, len(pixels), batch)])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = features(variants["torch"])
        out = {}
        for name, forward in variants.items():
            if name != "torch":
                cos = F.cosine_similarity(features(forward), reference, dim=-1)
                out[name] = {"min": float(cos.min()), "mean": float(cos.mean())}
    finally:
        torch.set_num_threads(threads)
    return out


@torch.inference_mode()
def measure_speed(variants: dict, pixels: torch.Tensor, batches: list[int], rounds: int, trial: int,
                  seconds: float) -> dict:
    """img/s per (variant, batch): every round times every variant at every batch size, the
    variants in a rotated order each time, so load changes hit them alike. A trial runs
    `trial` images or `seconds`, whichever comes first, and at least one batch."""
    names = list(variants)
    runs = {(n, b): [] for n in names for b in batches}
    for b in batches:  # warm-up: first calls at a new shape allocate and plan
        for name in names:
            variants[name](pixels[:b])
    for r in range(rounds):
        for b in batches:
            calls = max(1, trial // b)
            for name in names[r % len(names):] + names[: r % len(names)]:
                started, done = time.perf_counter(), 0
                while done < calls and (done == 0 or time.perf_counter() - started < seconds):
                    start = (done * b) % max(1, len(pixels) - b + 1)
                    variants[name](pixels[start : start + b])
                    done += 1
                runs[(name, b)].append(done * b / (time.perf_counter() - started))
    return {name: {b: runs[(name, b)] for b in batches} for name in names}


@torch.inference_mode()
def measure_head(encoder, batch: int = 32) -> float:
    """ms per image of an MLP head (the largest kind) on pooled features: what exporting it would save."""
    from training.projection import build_head, project_features

    head = build_head({"type": "mlp", "in_dim": encoder.feature_dim, "out_dim": encoder.feature_dim}).eval()
    features, center = torch.randn(batch, encoder.feature_dim), torch.zeros(encoder.feature_dim)
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        project_features(features, head, center)
        best = min(best, time.perf_counter() - started)
    return round(best * 1000 / batch, 4)


def summarise(speed: dict, batches: list[int]) -> dict:
    best = {name: {b: max(v) for b, v in per.items()} for name, per in speed.items()}
    base = best["torch"]
    best_batch = {name: max(per, key=per.get) for name, per in best.items()}
    base_best = base[best_batch["torch"]]
    return {
        "img_per_s": best,
        "img_per_s_runs": speed,
        "ratio_vs_torch": {n: {b: per[b] / base[b] for b in batches} for n, per in best.items()},
        "best_batch": best_batch,
        "ratio_best_vs_torch_best": {n: best[n][best_batch[n]] / base_best for n in best},
    }


def versions() -> dict:
    out = {"torch": torch.__version__}
    for module in ("onnxruntime", "openvino"):
        try:
            out[module] = __import__(module).__version__
        except ImportError:
            pass
    return out


def table(result: dict, batches: list[int]) -> str:
    names = list(result["img_per_s"])
    others = [n for n in names if n != "torch"]
    head = ["batch"] + [f"{n} img/s" for n in names] + [f"{n} ×" for n in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for b in batches:
        cells = [str(b)] + [f"{result['img_per_s'][n][b]:.1f}" for n in names]
        cells += [f"{result['ratio_vs_torch'][n][b]:.2f}" for n in others]
        lines.append("| " + " | ".join(cells) + " |")
    best = ", ".join(f"{n} {result['best_batch'][n]} ({result['img_per_s'][n][result['best_batch'][n]]:.1f} img/s, "
                     f"{result['ratio_best_vs_torch_best'][n]:.2f}×)" for n in names)
    agree = ", ".join(f"{n} min {a['min']:.7f} mean {a['mean']:.7f}" for n, a in result["agreement"].items())
    lines += ["", f"best batch: {best}", f"cosine vs torch on {result['images']} photos: {agree}",
              f"MLP head: {result['head_ms_per_image']} ms/image; setup s (export + load): {result['setup_s']}"]
    return "\n".join(lines)
