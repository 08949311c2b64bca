"""Serving the current version of an artifact (no processes): switch on publish, keep the old one pinnable,
survive a broken new version; `iznet up` refuses a store without the gallery."""

from __future__ import annotations

import json

from iznet.cli import main
from iznet.registry import create_embedder
from iznet.serving import Current, load_model_version, publish_model
from iznet.store import ArtifactStore


def test_current_switches_on_publish_and_keeps_the_previous_version(tmp_path):
    store = ArtifactStore(tmp_path)
    publish_model(store, "m", "baseline-lbp")
    cur = Current(store, "models", "m", load_model_version, poll_s=0)
    first = cur.get()
    assert first.version == 1 and first.obj.version["name"] == "baseline-lbp"
    assert cur.refresh() is False  # nothing new
    publish_model(store, "m", "baseline-pixels")
    assert cur.refresh() is True and cur.get().version == 2
    assert cur.get().obj.version["digest"] == create_embedder("baseline-pixels").version["digest"]
    # a request that took the old snapshot still holds it, and the old model can still be found by digest
    assert first.obj.version["name"] == "baseline-lbp"
    old_digest = first.obj.version["digest"]
    assert cur.find(lambda e: e.version["digest"] == old_digest).version == 1


def test_a_broken_new_version_keeps_the_old_one_served(tmp_path):
    store = ArtifactStore(tmp_path)
    publish_model(store, "m", "baseline-lbp")
    cur = Current(store, "models", "m", load_model_version, poll_s=0)
    staged = store.stage("models", "m")
    (staged / "model.json").write_text(json.dumps({"kind": "embedder", "spec": "no-such-model"}))
    store.publish("models", "m", staged)
    assert cur.refresh() is False and cur.get().version == 1


def test_up_refuses_a_store_without_the_gallery(tmp_path, capsys):
    assert main(["up", "--store", str(tmp_path), "--gallery", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_kuberay_app_builder_types_its_args_and_takes_keys_from_the_environment(monkeypatch):
    import pytest

    from services.gateway import app_builder

    monkeypatch.setenv("IZNET_GATEWAY_API_KEYS", "k1 k2")
    app = app_builder({"detection": "d:1", "embedding": "e:2", "gallery": "g:3", "max_message_mb": "16"})
    (cfg,) = app._bound_deployment.init_args
    assert cfg["max_message_mb"] == 16 and cfg["api_keys"] == ["k1", "k2"] and cfg["gallery"] == "g:3"
    with pytest.raises(ValueError, match="bogus"):
        app_builder({"detection": "d", "embedding": "e", "gallery": "g", "bogus": 1})
