"""Prometheus metrics, one registry per app (no module-level globals)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only clutter a scrape
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "attrib_http_requests_total", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "attrib_http_request_duration_seconds", "HTTP request latency by route",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.stages = Histogram(
            "attrib_attribution_stage_seconds", "Time spent in each attribution stage",
            ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.sources = Gauge("attrib_catalog_sources", "Sources in the catalog", registry=self.registry)
        self.concepts = Gauge("attrib_catalog_concepts", "Concepts in the catalog", registry=self.registry)
        self.vectors = Gauge("attrib_space_vectors", "Vectors in each space's index", ["space"], registry=self.registry)
        self.space_head = Gauge("attrib_space_head_info", "The live head of each space (value 1)",
                                ["space", "head_id"], registry=self.registry)
        self.space_built = Gauge("attrib_space_built_timestamp_seconds", "When each space's index was last built",
                                 ["space"], registry=self.registry)
        self.infer_queue = Gauge("attrib_inference_queue_depth", "Requests waiting for a batched forward",
                                 registry=self.registry)
        self.infer_batch = Histogram("attrib_inference_batch_images", "Images per batched forward",
                                     buckets=(1, 2, 4, 8, 12, 16, 24, 32, 64, 128), registry=self.registry)
        self.jobs = Gauge("attrib_jobs", "Ingestion jobs by state", ["state"], registry=self.registry)
        self.cases = Gauge("attrib_cases", "Review cases by status", ["status"], registry=self.registry)
        self.decisions = DecisionCounts()
        self.registry.register(self.decisions)

    def set_desk(self, cases: dict[str, int], decisions: dict[str, int]) -> None:
        """Cases by status and decisions by kind, as counted in the database at this scrape."""
        for status in ("open", "match", "no_match", "escalated"):
            self.cases.labels(status).set(cases.get(status, 0))
        self.decisions.counts = {kind: decisions.get(kind, 0) for kind in ("match", "no_match", "escalate")}

    def set_spaces(self, spaces: dict) -> None:
        self.space_head.clear()
        for name, space in spaces.items():
            self.vectors.labels(name).set(len(space.index))
            self.space_head.labels(name, space.info.head_id).set(1)
            self.space_built.labels(name).set(space.info.built_at.timestamp())

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000)


class DecisionCounts:
    """`attrib_decisions_total{kind}`: decisions are append-only rows, so their count is a counter,
    read from the database at each scrape (it survives restarts and counts every process's)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self):
        family = CounterMetricFamily("attrib_decisions", "Review decisions recorded, by kind", labels=["kind"])
        for kind, count in sorted(self.counts.items()):
            family.add_metric([kind], count)
        yield family


class MetricsMiddleware:
    """Counts and times every request under its route template, not its raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route, scope["method"]).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuses request bodies over a byte limit with 413, by header or while streaming."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen, started = 0, False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        from app.errors import error_response

        response = error_response(413, "request_too_large", f"the request body is over the limit of {self.limit:,} bytes")
        await response({"type": "http"}, None, send)


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {limit:,} bytes")
