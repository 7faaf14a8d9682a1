"""vertex: the Vertex AI endpoint of a location."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "location, host",
    [
        ("global", "aiplatform.googleapis.com"),
        ("us-central1", "us-central1-aiplatform.googleapis.com"),
        ("europe-west4", "europe-west4-aiplatform.googleapis.com"),
    ],
)
def test_vertex_endpoint_for_a_location(location, host):
    """Google's newer notebooks default to location=global, served by aiplatform.googleapis.com."""
    from dropbatch import vertex

    assert vertex.api_endpoint(location) == host
