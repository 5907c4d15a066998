"""The supervised baseline (Wang et al., ICCV 2023), for comparison only: identity-initialised
linear query and source mappers trained on a labelled manifest's (query, source) pairs.

The checkpoint holds the source mapper (what the catalog would index with); `<stem>.query.pt`
holds the query mapper, and `<ckpt>.config.json` names it, so `attrib eval --encoder CKPT` embeds
queries with it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.config import ConfigError, TrainConfig
from training.data import DataError, FeatureExtractor, read_manifest
from training.loop import History, extractor_for, lr_at, make_encoder, make_optimizer, normalised_mean, sample_rows, training_device
from training.losses import SupervisedContrastiveLoss
from training.outputs import save_outputs


@dataclass
class LabelledFeatures:
    queries: np.ndarray  # (Q, D)
    query_concepts: np.ndarray  # (Q,) concept index
    sources: np.ndarray  # (S, D)
    source_concepts: np.ndarray  # (S,)
    negatives: np.ndarray | None


def train_supervised(config: TrainConfig, manifests: list[Path], output: Path) -> dict:
    if not manifests or any(p.suffix.lower() != ".csv" for p in manifests):
        raise DataError("--supervised trains on labelled benchmark manifests (.csv): give at least one")
    if config.unfreeze_blocks:
        raise ConfigError("the supervised baseline trains linear mappers on frozen features; use unfreeze_blocks 0")
    device = training_device(config)
    source_enc, query_enc = make_encoder(config, "linear"), make_encoder(config, "linear")
    started = time.perf_counter()
    data = labelled_features(extractor_for(source_enc, config), manifests)
    extract_s = time.perf_counter() - started
    center = normalised_mean(data.queries, data.sources, *([data.negatives] if data.negatives is not None else []))
    for enc in (source_enc, query_enc):
        enc.center.copy_(center)
    started = time.perf_counter()
    history = fit_mappers(query_enc, source_enc, data, config, device)
    summary = {
        "queries": len(data.queries), "sources": len(data.sources),
        "negatives": 0 if data.negatives is None else len(data.negatives),
        "feature_seconds": round(extract_s, 1), "train_seconds": round(time.perf_counter() - started, 1),
        "final_terms": history.last(),
    }
    query_path = output.with_name(f"{output.stem}.query{output.suffix or '.pt'}")
    query_enc.cpu().save(query_path)
    summary["query_encoder"] = query_path.name
    return save_outputs(source_enc.cpu(), config, history, output, summary)


def labelled_features(extractor: FeatureExtractor, manifests: list[Path]) -> LabelledFeatures:
    rows = [row for m in manifests for row in read_manifest(m)]
    source_concepts = sorted({r.concept for r in rows if r.role == "source"})
    index = {c: i for i, c in enumerate(source_concepts)}
    queries = [r for r in rows if r.role == "query" and r.concept in index]
    sources = [r for r in rows if r.role == "source"]
    if not queries:
        raise DataError("the supervised baseline needs query rows whose concept has source rows")
    negatives = [r.path for r in rows if r.role == "distractor"]
    q = extractor.extract([r.path for r in queries], desc="query features")
    s = extractor.extract([r.path for r in sources], desc="source features")
    if len(q.paths) != len(queries) or len(s.paths) != len(sources):
        raise DataError("some labelled images could not be read")
    n = extractor.extract(negatives, desc="negative features").clean if negatives else None
    return LabelledFeatures(
        q.clean, np.array([index[r.concept] for r in queries]), s.clean, np.array([index[r.concept] for r in sources]), n,
    )


def fit_mappers(query_enc, source_enc, data: LabelledFeatures, config: TrainConfig, device) -> History:
    """Contrastive training of both linear mappers: each query against the batch's sources
    (positives: its concept's sources) plus sampled negatives."""
    generator = torch.Generator().manual_seed(config.seed)
    q_all, s_all = torch.from_numpy(data.queries).float(), torch.from_numpy(data.sources).float()
    q_concepts, s_concepts = torch.from_numpy(data.query_concepts), torch.from_numpy(data.source_concepts)
    neg_all = torch.from_numpy(data.negatives).float() if data.negatives is not None else None
    for enc in (query_enc, source_enc):
        enc.to(device).train()
    criterion = SupervisedContrastiveLoss(config.loss.temperature)
    optimizer = make_optimizer([*query_enc.head.parameters(), *source_enc.head.parameters()], config)
    history = History()
    for step in tqdm(range(config.steps), desc="training mappers", unit="step", file=sys.stderr, dynamic_ncols=True):
        qi = torch.randint(len(q_all), (min(config.batch_size, len(q_all)),), generator=generator)
        positive = q_concepts[qi][:, None] == s_concepts[None, :]
        neg = sample_rows(neg_all, config.negatives, generator)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        queries = query_enc.project(q_all[qi].to(device))
        gallery = source_enc.project(torch.cat([s_all] + ([neg] if neg is not None else [])).to(device))
        loss = criterion(queries, gallery[: len(s_all)], positive.to(device), gallery[len(s_all):] if neg is not None else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.add(step, {"supervised_loss": loss, "loss": loss})
    for enc in (query_enc, source_enc):
        enc.eval()
        enc.invalidate_id()
    return history
