"""GET /health/live and /health/ready."""

from __future__ import annotations


def test_live(client):
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "live"}


def test_ready_after_the_store_is_loaded(client):
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_empty_store_is_live_but_not_ready(serve, tmp_path, problem):
    store = tmp_path / "store"
    store.mkdir()

    with serve(store, ready=False) as client:
        live = client.get("/health/live")
        ready = client.get("/health/ready")
        listing = client.get("/models")
        predict = client.post("/predict", json={"model": "iris", "features": [1, 2, 3, 4]})

    assert live.status_code == 200
    problem(ready, 503)
    assert listing.status_code == 200
    assert listing.json() == {"models": []}
    problem(predict, 404)


def test_store_of_only_broken_versions_is_not_ready(serve, tmp_path, problem):
    version = tmp_path / "store" / "broken" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"garbage")

    with serve(tmp_path / "store", ready=False) as client:
        ready = client.get("/health/ready")
        listing = client.get("/models")
        predict = client.post("/predict", json={"features": [1, 2, 3]})

    problem(ready, 503)
    assert listing.json()["models"][0]["versions"][0]["state"] == "FAILED"
    problem(predict, 503)


def test_readiness_turns_503_on_shutdown(serve, demo_store, problem):
    with serve(demo_store) as client:
        assert client.get("/health/ready").status_code == 200
    # The lifespan has ended: the app is draining, and readiness says so.
    after = client.get("/health/ready")

    body = problem(after, 503)
    assert "shutting down" in body["detail"]
