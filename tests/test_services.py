"""The shared services load the classifier on first use, once, whichever thread asks."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gateway.classification import Classifier


def test_threads_asking_at_once_share_one_classifier_loaded_on_first_use(services):
    assert services._classifier is None  # nothing loaded by Services.create
    with ThreadPoolExecutor(8) as pool:  # content steps run in threads
        got = list(pool.map(lambda _: services.classifier, range(8)))
    assert isinstance(got[0], Classifier)
    assert all(c is got[0] for c in got)  # each load makes a new one: this was one load
    assert services.classifier is got[0]


def test_reload_swaps_in_a_new_classifier(services):
    before = services.classifier
    services.reload()
    assert services.classifier is not before
