"""The Ray Serve deployment answers with the same API, and the same scores, as the library."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from crossrank import Reranker
from crossrank.core.settings import ModelSettings, ServerSettings
from crossrank.ray.serve import ReplicaOptions, build_deployment, settings_from_args
from crossrank.testing import generated_sentences

PASSAGES = list(generated_sentences(25, seed=5))


def test_replica_options_map_to_serve_options() -> None:
    fixed = ReplicaOptions(replicas=2, gpus_per_replica=1).deployment_options()
    assert fixed["num_replicas"] == 2 and fixed["ray_actor_options"]["num_gpus"] == 1
    assert "autoscaling_config" not in fixed
    scaled = ReplicaOptions(replicas=1, max_replicas=4, target_ongoing_requests=16).deployment_options()
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16}
    assert "num_replicas" not in scaled


def test_build_app_arguments_from_the_command_line() -> None:
    server, replicas = settings_from_args({"model": "m", "max_length": "256", "api_key": "k", "max_replicas": "3",
                                           "gpus_per_replica": "0.5", "cors_origins": "http://a,http://b"})
    assert server.model == ModelSettings(model="m", max_length=256)
    assert server.api_key == "k" and server.cors_origins == ("http://a", "http://b")
    assert replicas == ReplicaOptions(max_replicas=3, gpus_per_replica=0.5)
    with pytest.raises(ValueError, match="unknown"):
        settings_from_args({"modle": "m"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # ~25 s on 2 cores: Serve controller, proxy and a replica start
def test_serve_deployment_answers_like_the_library(ray_local, tiny_model_dir: Path, tiny_reranker: Reranker) -> None:
    from ray import serve

    port = _free_port()
    settings = ServerSettings(model=ModelSettings(model=str(tiny_model_dir), device="cpu"), api_key="secret")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_deployment(settings, ReplicaOptions(cpus_per_replica=0.5)), name="crossrank-test",
                  route_prefix="/")
        headers = {"Authorization": "Bearer secret"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get("/health").status_code == 200
            assert client.post("/v2/rerank", json={"query": "q", "documents": ["a"]}).status_code == 401
            v2 = client.post("/v2/rerank", headers=headers,
                             json={"model": "tiny-reranker", "query": "which city is the capital",
                                   "documents": PASSAGES, "top_n": 5})
            tei = client.post("/rerank", headers=headers, json={"query": "which city is the capital",
                                                                "texts": PASSAGES})
            info = client.get("/info", headers=headers)
    finally:
        serve.shutdown()
    expected = tiny_reranker.rerank("which city is the capital", PASSAGES)
    assert v2.status_code == 200, v2.text
    assert [r["index"] for r in v2.json()["results"]] == [r.index for r in expected[:5]]
    assert [r["relevance_score"] for r in v2.json()["results"]] == pytest.approx([r.score for r in expected[:5]],
                                                                                abs=1e-6)
    assert [r["index"] for r in tei.json()] == [r.index for r in expected]
    assert info.json()["model_id"] == str(tiny_model_dir)


def test_the_serve_deploy_example_builds() -> None:
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "ray-serve.yaml").read_text())
    app = config["applications"][0]
    assert app["import_path"] == "crossrank.ray.serve:build_app"
    server, replicas = settings_from_args(app["args"])
    assert server.model.model == app["args"]["model"]
    assert replicas.deployment_options()["autoscaling_config"]["max_replicas"] == app["args"]["max_replicas"]
