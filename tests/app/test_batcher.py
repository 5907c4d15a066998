"""The inference worker: concurrent requests share forwards, a full queue refuses at once."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from app.batcher import ForwardBatcher, Overloaded


def pixels_of(encoder, path):
    return encoder.preprocess(Image.open(path).convert("RGB"))[None]


def test_concurrent_requests_share_forwards_and_get_their_own_rows(encoder, photos):
    sizes = []
    batcher = ForwardBatcher(encoder.features, max_images=16, max_wait_ms=300, on_batch=sizes.append)
    try:
        inputs = [pixels_of(encoder, path) for path in photos[:6]] + [torch.cat([pixels_of(encoder, photos[6])] * 3)]
        with ThreadPoolExecutor(len(inputs)) as pool:
            results = list(pool.map(batcher, inputs))
    finally:
        batcher.close()
    with torch.inference_mode():
        expected = [encoder.features(pixels).numpy() for pixels in inputs]
    for got, want in zip(results, expected):
        assert got.shape == want.shape
        assert np.allclose(got, want, atol=1e-3)
    assert sum(sizes) == 9 and max(sizes) > 1  # fewer forwards than requests


def test_a_full_queue_is_refused_at_once_with_retry_after():
    gate, started = threading.Event(), threading.Event()

    def held_forward(pixels):
        started.set()
        gate.wait(10)
        return torch.zeros(len(pixels), 4)

    batcher = ForwardBatcher(held_forward, max_images=1, max_wait_ms=0, max_queue=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher, torch.zeros(1, 3, 8, 8))
        assert started.wait(10)  # the worker holds the first request
        second = pool.submit(batcher, torch.zeros(1, 3, 8, 8))
        while batcher.depth() < 1:
            pass
        with pytest.raises(Overloaded) as refused:
            batcher(torch.zeros(1, 3, 8, 8))
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
        gate.set()
        assert first.result(10).shape == (1, 4) and second.result(10).shape == (1, 4)
    batcher.close()


def test_a_failed_forward_fails_its_requests_and_the_worker_goes_on():
    calls = []

    def flaky(pixels):
        calls.append(len(pixels))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return torch.ones(len(pixels), 2)

    batcher = ForwardBatcher(flaky, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher(torch.zeros(1, 3, 8, 8))
    assert batcher(torch.zeros(2, 3, 8, 8)).tolist() == [[1, 1], [1, 1]]
    batcher.close()
    with pytest.raises(Overloaded):
        batcher(torch.zeros(1, 3, 8, 8))


def test_requests_of_different_input_sizes_share_the_worker_and_get_their_own_rows(copy_backbone, photos):
    """A rendered head's renderings are smaller than the clean crop: requests of several sizes
    gathered into one batch run one forward per size, and each gets the rows its pixels give alone."""
    image = Image.open(photos[0]).convert("RGB")
    inputs = [np.asarray(image.resize((160, 160)), np.uint8)[None], copy_backbone.crop(image)[None],
              copy_backbone.crop(Image.open(photos[1]).convert("RGB"))[None],
              np.stack([np.asarray(image.resize((128, 128)), np.uint8)] * 2)]
    gate, started, shapes = threading.Event(), threading.Event(), []

    def forward(pixels):
        started.set()
        gate.wait(10)  # the first forward waits until every other request is queued behind it
        shapes.append(pixels.shape)
        return copy_backbone.features_of_pixels(pixels)

    batcher = ForwardBatcher(forward, max_images=16, max_wait_ms=0)
    try:
        with ThreadPoolExecutor(len(inputs)) as pool:
            first = pool.submit(batcher, inputs[0])
            assert started.wait(10)
            rest = [pool.submit(batcher, pixels) for pixels in inputs[1:]]
            while batcher.depth() < len(rest):
                pass
            gate.set()
            results = [first.result(10)] + [f.result(10) for f in rest]
    finally:
        batcher.close()
    for got, pixels in zip(results, inputs):
        assert np.allclose(got, copy_backbone.features_of_pixels(pixels), atol=1e-3)
    assert sorted(shapes) == [(1, 160, 160, 3), (2, 128, 128, 3), (2, 256, 256, 3)]
