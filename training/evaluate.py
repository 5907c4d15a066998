"""`attrib eval`: attribution metrics (mAP, R@K) of encoders on benchmark manifests and on AbC.

Metrics follow the AbC evaluation code (Wang et al., ICCV 2023): the gallery is ranked by cosine
similarity of L2-normalised embeddings (a FAISS inner-product index, as the catalog searches);
AP = mean over positives of (rank among positives / overall rank); R@K = positives in the top K /
positives; mAP and R@K are means over queries, in percent. Ties are broken by gallery order (a
stable sort): a gallery item listed earlier ranks first.

Protocols: `full` ranks each query against every source and distractor of its benchmark; `abc`
ranks it against the distractors plus its own concept's sources only. A gallery image that is the
query's own file is never ranked for that query.

Usage:
  attrib eval MANIFEST... [--encoder CKPT|default|LABEL=CKPT ...] [--protocol full|abc] [--json]
  attrib eval --abc-root DIR --split test_bamfg --prompt gpt [--pool laion_subset] [--encoder ...]
  attrib eval --compare MANIFEST... --encoder raw=default --encoder ad=runs/ad.pt ...
  attrib eval MANIFEST... --encoder copy=sscd_distilled   (a copy backbone: SSCD's plain cosine)
  attrib eval MANIFEST... --service [--head CKPT] [--json]  (the service's answers: every space and the
      verdict, with calibrated probabilities and the ECE; app/cli/eval_service.py)

Every manifest also gets the copy-detection figures of DISC21 (training/copy_metrics.py): µAP and
recall at 90 % precision over every query's top-1 prediction, and the AUROC of 1 - top-1 score
for telling sourceless queries (whose concept has no source in the gallery) from the rest.

A supervised-baseline checkpoint (see `training.train`) embeds queries with its query mapper,
found through the `query_encoder` entry of its `<ckpt>.config.json`, or given by --query-encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.benchmarks import Benchmark, abc_benchmark, manifest_benchmark
from training.config import AugmentConfig, default_cache_dir
from training.copy_metrics import COPY_METRICS, copy_detection_of_scores
from training.data import DataError, FeatureCache, FeatureExtractor, backbone_key
from training.errors import AttribError, run_as_script
from training.images import ImageError, decode_image
from training.query_views import average_view_embeddings
from training.sscd import CopyBackbone
from training.ranking import KS, METRICS, average_precision, positive_ranks, recall_at, score_matrix
from training.views import recipe_key

def evaluate_scores(bench: Benchmark, scores: np.ndarray) -> dict:
    """Per-benchmark metrics (percent) from the (Q, G) score matrix."""
    gallery_concepts = np.array([c if c is not None else "" for c in bench.gallery_concepts], dtype=object)
    is_source = np.array([c is not None for c in bench.gallery_concepts])
    gallery_index = {p.resolve(): i for i, p in enumerate(bench.gallery)}
    aps, recalls, skipped = [], {k: [] for k in KS}, 0
    for i, concept in enumerate(bench.query_concepts):
        positive = is_source & (gallery_concepts == concept)
        if not positive.any():
            skipped += 1
            continue
        valid = ~is_source | positive if bench.protocol == "abc" else np.ones(len(positive), dtype=bool)
        own = gallery_index.get(bench.queries[i].resolve())
        if own is not None:
            valid = valid.copy()
            valid[own] = False
        ranks = positive_ranks(scores[i], positive, valid)
        if not len(ranks):
            skipped += 1
            continue
        aps.append(average_precision(ranks))
        for k in KS:
            recalls[k].append(recall_at(ranks, k))
    if not aps:
        raise DataError(f"{bench.name}: no query has a positive source in the gallery")
    result = {"mAP": 100 * float(np.mean(aps))} | {f"R@{k}": 100 * float(np.mean(recalls[k])) for k in KS}
    result |= copy_detection_of_scores(scores, bench.query_concepts, bench.gallery_concepts, _not_own(bench))
    return result | {"queries": len(aps), "gallery": len(bench.gallery), "skipped_queries": skipped, "protocol": bench.protocol}


def _not_own(bench: Benchmark) -> np.ndarray:
    """(Q, G): False where a gallery image is the query's own file."""
    gallery_index = {p.resolve(): i for i, p in enumerate(bench.gallery)}
    valid = np.ones((len(bench.queries), len(bench.gallery)), dtype=bool)
    for i, query in enumerate(bench.queries):
        own = gallery_index.get(query.resolve())
        if own is not None:
            valid[i, own] = False
    return valid


# -- encoders ----------------------------------------------------------------------------------


@dataclass
class EncoderPair:
    """What embeds a benchmark: one encoder for the gallery, maybe another for the queries."""

    label: str
    gallery: object
    query: object


def load_encoder_pair(spec: str, query_spec: str | None = None, weights: str | None = None) -> EncoderPair:
    from training.encoders import load_encoder
    from training.sscd import COPY_BACKBONES, load_copy_backbone

    label, sep, name = spec.partition("=")
    if not sep or "/" in label or label.endswith((".pt", ".pth", ".ckpt")):
        label, name = spec, spec
    if name in COPY_BACKBONES:  # a copy backbone: raw descriptors, no head
        copy = load_copy_backbone(name)
        return EncoderPair(label, copy, copy)
    gallery = load_encoder(name, weights=weights)
    sidecar = Path(f"{name}.config.json")
    if query_spec is None and sidecar.is_file():
        query_name = json.loads(sidecar.read_text()).get("query_encoder")
        if query_name:
            query_spec = str(sidecar.parent / query_name)
    query = load_encoder(query_spec) if query_spec else gallery
    return EncoderPair(label, gallery, query)


class Embedder:
    """Embeds image paths with an encoder, reusing cached clean backbone features."""

    def __init__(self, cache_dir: str | Path | None, batch_size: int = 32):
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self._features: dict[tuple[str, Path], np.ndarray] = {}
        self._views: dict[tuple[tuple[str, str], Path], np.ndarray] = {}

    def features(self, encoder, paths: list[Path], desc: str) -> np.ndarray:
        if isinstance(encoder, CopyBackbone):
            return self._copy_features(encoder, paths)
        key = backbone_key(encoder)
        todo = [p for p in dict.fromkeys(paths) if (key, p) not in self._features]
        if todo:
            extractor = FeatureExtractor(encoder, FeatureCache(self.cache_dir, key), AugmentConfig(), self.batch_size)
            found = extractor.extract(todo, views=0, desc=desc)
            if len(found.paths) != len(todo):
                raise DataError(f"{len(todo) - len(found.paths)} evaluation image(s) could not be read")
            self._features.update({(key, p): row for p, row in zip(found.paths, found.clean)})
        return np.stack([self._features[(key, p)] for p in paths])

    def _copy_features(self, backbone: CopyBackbone, paths: list[Path]) -> np.ndarray:
        """A copy backbone's descriptors (fast enough not to need the disk cache), from the one decoder."""
        key = backbone.backbone_id
        todo = [p for p in dict.fromkeys(paths) if (key, p) not in self._features]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            try:
                images = [decode_image(p.read_bytes()).image for p in chunk]
            except (OSError, ImageError) as exc:
                raise DataError(f"an evaluation image could not be read: {exc}") from exc
            self._features.update({(key, p): row for p, row in zip(chunk, backbone.embed_features(images))})
        return np.stack([self._features[(key, p)] for p in paths])

    def view_features(self, encoder, paths: list[Path], count: int, augment: AugmentConfig, desc: str) -> np.ndarray:
        """(N, count, D) backbone features of the query views a head asks for (cached like training's)."""
        key = (backbone_key(encoder), recipe_key(augment))
        todo = [p for p in dict.fromkeys(paths) if len(self._views.get((key, p), ())) < count]
        if todo:
            extractor = FeatureExtractor(encoder, FeatureCache(self.cache_dir, key[0]), augment, self.batch_size)
            found = extractor.extract(todo, views=count, desc=desc)
            if len(found.paths) != len(todo):
                raise DataError(f"{len(todo) - len(found.paths)} evaluation image(s) could not be read")
            self._views.update({(key, p): row for p, row in zip(found.paths, found.views)})
        return np.stack([self._views[(key, p)][:count] for p in paths])

    def embed(self, encoder, paths: list[Path], desc: str) -> np.ndarray:
        return self._project(encoder, self.features(encoder, paths, desc))

    def embed_queries(self, encoder, paths: list[Path], desc: str) -> np.ndarray:
        """Queries: through the query head if any (one forward), else averaged over the head's query views."""
        count, augment = getattr(encoder, "query_views", (0, None))
        clean = self._project(encoder, self.features(encoder, paths, desc), query=True)
        if not count:
            return clean
        views = self.view_features(encoder, paths, count, augment, f"{desc} (views)")
        projected = self._project(encoder, views.reshape(-1, views.shape[-1])).reshape(len(paths), count, -1)
        return average_view_embeddings(clean, projected)

    @torch.inference_mode()
    def _project(self, encoder, features: np.ndarray, query: bool = False) -> np.ndarray:
        if isinstance(encoder, CopyBackbone):  # plain cosine of the descriptors
            return (features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        feats = torch.from_numpy(np.ascontiguousarray(features)).to(encoder.device)
        project = encoder.project_query if query else encoder.project
        chunks = [project(feats[s : s + 1024]).float().cpu().numpy() for s in range(0, len(feats), 1024)]
        return np.concatenate(chunks).astype(np.float32, copy=False)


def evaluate_benchmark(pair: EncoderPair, bench: Benchmark, embedder: Embedder) -> dict:
    queries = embedder.embed_queries(pair.query, bench.queries, f"{bench.name} queries")
    gallery = embedder.embed(pair.gallery, bench.gallery, f"{bench.name} gallery")
    return evaluate_scores(bench, score_matrix(queries, gallery))


# -- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrib eval", description="Attribution metrics of encoders on benchmarks.")
    parser.add_argument("manifests", nargs="*", type=Path, metavar="MANIFEST", help="path,role,concept CSV files")
    parser.add_argument("--encoder", action="append", metavar="[LABEL=]CKPT|default|BACKBONE",
                        help="encoder to evaluate (repeatable; default: the default encoder)")
    parser.add_argument("--query-encoder", metavar="CKPT", help="separate encoder for queries (supervised baseline)")
    parser.add_argument("--weights", help="local backbone weights for a backbone-name encoder")
    parser.add_argument("--protocol", choices=("full", "abc"), default="full", help="gallery protocol for manifests")
    parser.add_argument("--abc-root", type=Path, help="AbC data root (PeterWang512/GenDataAttribution layout)")
    parser.add_argument("--split", action="append", help="AbC split name, e.g. test_bamfg (repeatable)")
    parser.add_argument("--prompt", action="append", help="AbC prompt type: gpt or object (repeatable)")
    parser.add_argument("--pool", default="laion_subset", help="AbC distractor folder under --abc-root")
    parser.add_argument("--compare", action="store_true", help="one table: every encoder x every benchmark")
    parser.add_argument("--cache-dir", type=Path, help="backbone feature cache (default $ATTRIB_HOME/feature-cache)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument("--batch-size", type=int, default=32, help="images per backbone forward pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def collect_benchmarks(args) -> list[Benchmark]:
    benches = [manifest_benchmark(m, args.protocol) for m in args.manifests]
    if args.abc_root is not None:
        if not args.split or not args.prompt:
            raise AttribError("--abc-root needs --split and --prompt", code="bad_arguments")
        benches += [abc_benchmark(args.abc_root, s, p, args.pool) for s in args.split for p in args.prompt]
    elif args.split or args.prompt:
        raise AttribError("--split and --prompt need --abc-root", code="bad_arguments")
    if not benches:
        raise AttribError("nothing to evaluate: give MANIFEST files or --abc-root", code="bad_arguments")
    return benches


def run(args) -> dict:
    benches = collect_benchmarks(args)
    specs = args.encoder or ["default"]
    if args.query_encoder and len(specs) > 1:
        raise AttribError("--query-encoder applies to a single --encoder", code="bad_arguments")
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    embedder = Embedder(cache_dir, args.batch_size)
    results: dict = {}
    for spec in specs:
        pair = load_encoder_pair(spec, args.query_encoder, args.weights)
        results[pair.label] = {
            "encoder_id": getattr(pair.gallery, "encoder_id", None) or pair.gallery.backbone_id,
            **({"query_encoder_id": pair.query.encoder_id} if pair.query is not pair.gallery else {}),
            "benchmarks": {b.name: evaluate_benchmark(pair, b, embedder) for b in benches},
        }
    return results


def format_table(results: dict) -> str:
    """Rows: encoder x benchmark; columns: the metrics, in percent."""
    label_width = max(len("encoder"), *(len(k) for k in results))
    names = {b for r in results.values() for b in r["benchmarks"]}
    bench_width = max(len("benchmark"), *(len(n) for n in names))
    columns = METRICS + COPY_METRICS
    header = (f"{'encoder':<{label_width}}  {'benchmark':<{bench_width}}  " + "  ".join(f"{m:>6}" for m in columns)
              + "  none AUROC")
    lines = [header, "-" * len(header)]
    for label, result in results.items():
        for name, metrics in result["benchmarks"].items():
            none = metrics.get("none_AUROC")
            cells = "  ".join(f"{metrics[m]:6.1f}" for m in columns) + (f"  {none:10.3f}" if none is not None else
                                                                         f"  {'-':>10}")
            lines.append(f"{label:<{label_width}}  {name:<{bench_width}}  {cells}")
    return "\n".join(lines)


def format_compare(results: dict, metrics: tuple[str, ...] = METRICS) -> str:
    """One markdown table: a row per encoder, a column group per benchmark."""
    names = list(dict.fromkeys(b for r in results.values() for b in r["benchmarks"]))
    header = ["encoder"] + [f"{Path(n).stem} {m}" for n in names for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, result in results.items():
        cells = [label] + [
            f"{result['benchmarks'][n][m]:.1f}" if n in result["benchmarks"] else "" for n in names for m in metrics
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.compare:
        print(format_compare(results))
    else:
        for label, result in results.items():
            print(f"# {label}: encoder {result['encoder_id']}")
        print(format_table(results))
    return 0


if __name__ == "__main__":
    run_as_script(main)
