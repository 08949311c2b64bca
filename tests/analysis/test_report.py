"""The report writes its figures, tables and HTML; the CLI makes one from saved embeddings."""

from __future__ import annotations

import json

import cv2
import numpy as np

from iznet.cli import main
from tests.analysis.conftest import clusters, random_centres
from training.analysis import analyze, write_report
from training.analysis.inputs import load_embeddings, save_embeddings
from training.analysis.tsne import effective_perplexity, run_tsne


def _png_ok(path) -> None:
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 5  # not a blank canvas


def test_report_writes_figures_tables_and_html(overlapping, tmp_path):
    x, labels = overlapping
    r = analyze(x, labels, perplexity=30, iterations=250)
    card = {"name": "tiny-test-model", "architecture": {"name": "small"}}
    index = write_report(r, tmp_path / "rep", model_card=card, source={"data": "synthetic"})
    out = tmp_path / "rep"
    for name in ("tsne.png", "boxplot.png", "medoids.png"):
        _png_ok(out / name)
    page = index.read_text()
    for name in ("tsne.png", "boxplot.png", "medoids.png"):
        assert f"src='{name}'" in page or f'src="{name}"' in page
    assert "eunbi and minju overlap" in page  # the warning is in the page, not only in the data
    assert "tiny-test-model" in page
    rows = (out / "medoids.csv").read_text().splitlines()
    assert rows[0].split(",")[1:] == r.people and len(rows) == 1 + len(r.people)
    rec = json.loads((out / "result.json").read_text())
    assert rec["summary"]["overlaps"] >= 2 and rec["tsne"]["perplexity"] == 30
    assert {w["kind"] for w in rec["warnings"]} == {"overlap"}


def test_quiet_report_says_no_warnings(separated, tmp_path):
    x, labels = separated
    index = write_report(analyze(x, labels, tsne=False), tmp_path)
    page = index.read_text()
    assert "No warnings" in page and "t-SNE was not run" in page
    assert not (tmp_path / "tsne.png").exists()


def test_tsne_perplexity_is_capped_for_small_sets():
    assert effective_perplexity(1000, 150) == 150
    assert effective_perplexity(61, 150) == 20
    x, _ = clusters(random_centres(3, seed=7), 10, 0.05)
    ts = run_tsne(x, perplexity=150, iterations=250)
    assert ts.points.shape == (30, 2) and np.isfinite(ts.points).all()
    assert ts.perplexity == 29 / 3 and ts.requested_perplexity == 150


def test_cli_report_from_saved_embeddings(overlapping, tmp_path, capsys):
    x, labels = overlapping
    npz = save_embeddings(tmp_path / "emb.npz", x, labels, card={"name": "saved-model"})
    e2, l2, paths, card = load_embeddings(npz)
    assert np.array_equal(e2, x) and list(l2) == list(labels) and paths is None and card["name"] == "saved-model"
    out = tmp_path / "report"
    rc = main(["analyze", "--embeddings", str(npz), "--out", str(out), "--tsne-iter", "250",
               "--tsne-perplexity", "20", "--quiet"])
    assert rc == 0
    assert (out / "index.html").is_file() and (out / "tsne.png").is_file()
    said = capsys.readouterr().out
    assert "overlap" in said and "index.html" in said
    # choosing people from the saved set
    rc = main(["analyze", "--embeddings", str(npz), "--out", str(tmp_path / "r2"), "--no-tsne", "--people", "2",
               "--quiet"])
    assert rc == 0
    assert json.loads((tmp_path / "r2" / "result.json").read_text())["summary"]["people"] == 2


def test_cli_user_errors_exit_2_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["analyze", "--embeddings", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    np.savez(tmp_path / "nolabels.npz", embeddings=np.zeros((3, 4)))
    assert main(["analyze", "--embeddings", str(tmp_path / "nolabels.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "labels" in capsys.readouterr().err
    assert main(["analyze", "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "people" / "a").mkdir(parents=True)
    assert main(["analyze", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "people"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
