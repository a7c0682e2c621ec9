"""The plumbing the chapters call instead of writing it (issue 23): reading a dataset onto the
run card, a sample grid per class, Kaggle's .tif examples, the model card's fields taken from
the run card. Each on real files made here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tl_helpers as tl
from tl_helpers.serve import exports


def test_recording_a_dataset_again_adds_its_new_details():
    card = tl.runcard.RunCard("00_x", "smoke")
    card.data("pcam", "synthetic", counts={"train": {"0": 3}})
    card.data("pcam", "synthetic", splits={"train": 2, "test": 1})
    assert card.record["data"]["pcam"] == {"source": "synthetic", "counts": {"train": {"0": 3}},
                                           "splits": {"train": 2, "test": 1}}
    card.data("pcam", "real data", splits={"train": 3})  # a later value wins
    assert card.record["data"]["pcam"]["splits"] == {"train": 3}
    assert card.record["data"]["pcam"]["source"] == "real data"
    card.data("pcam", patients={"train": 2})  # once recorded, the source may be left out
    assert card.record["data"]["pcam"]["source"] == "real data"
    with pytest.raises(ValueError, match="first time"):
        card.data("lgg", splits={"train": 2})  # a first record without a source


def test_load_data_records_the_source_and_counts_and_says_what_it_found(tmp_path, capsys):
    card = tl.runcard.RunCard("00_x", "smoke")
    report = tl.notebook.load_data(card, "brain_mri_yes_no", True, tmp_path, seed=0)
    recorded = card.record["data"]["brain_mri_yes_no"]
    assert recorded == {"source": report.source, "counts": report.counts}
    assert sum(report.counts[next(iter(report.counts))].values()) > 0
    assert str(report) in capsys.readouterr().out


def _class_folders(root, counts):
    rng = np.random.default_rng(0)
    rows = []
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for k in range(n):
            path = root / label / f"{label}{k}.png"
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)
            rows.append({"path": str(path), "label": label, "patient": f"p{k}"})
    return pd.DataFrame(rows)


def test_plot_class_samples_draws_each_class_with_its_words(tmp_path):
    table = _class_folders(tmp_path, {"no": 5, "yes": 3})
    figure = tl.plotting.plot_class_samples(table, 2, seed=1, titles_col="patient",
                                            labels=lambda y: f"class {y}")
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 4
    titles = [ax.get_title() for ax in shown]
    assert sum("class no" in t for t in titles) == 2 and sum("class yes" in t for t in titles) == 2
    assert all(t.startswith("p") for t in titles)
    again = tl.plotting.plot_class_samples(table, 2, seed=1, titles_col="patient")
    assert [ax.get_title() for ax in again.axes if ax.images][0].endswith(("no", "yes"))


def test_pcam_tif_files_prefers_the_kept_samples_then_the_table(tmp_path):
    tifs = []
    for k in range(3):
        path = tmp_path / "train" / f"{k}.tif"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
        tifs.append(str(path))
    paths = tifs + [str(tmp_path / "train" / "x.jpg")]
    assert [p.name for p in tl.data.pcam_tif_files(tmp_path, paths, 2)] == ["0.tif", "1.tif"]
    kept = tmp_path / "kaggle_tif_samples"
    kept.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(kept / "k.tif")
    assert [p.name for p in tl.data.pcam_tif_files(tmp_path, paths)] == ["k.tif"]


@pytest.fixture
def captured_export(monkeypatch, tmp_path):
    """export_and_check with the model card captured instead of a model written."""
    seen = {}

    class Predictor:
        def predict_proba(self, files):
            return np.zeros((len(files), 2))

    def export_model(model, folder, card, segmenter=None):
        seen.update(card)
        return tmp_path / "m.card.json"

    monkeypatch.setattr(exports, "export_model", export_model)
    monkeypatch.setattr(exports, "load_model", lambda path, device=None: Predictor())
    return seen


def test_the_model_card_takes_profile_and_source_from_the_run_card(captured_export, tmp_path):
    card = tl.runcard.RunCard("05_x", "cpu")
    card.data("pcam", "real data (../shared/data)")
    exports.export_and_check(object(), {"task": "binary"}, ["a"], np.zeros(1), columns=1,
                             run_card=card, model_dir=tmp_path)
    assert captured_export == {"profile": "cpu", "data_source": "real data (../shared/data)",
                               "task": "binary"}
    captured_export.clear()
    card.data("other", "synthetic")  # two datasets: no single source to name
    exports.export_and_check(object(), {"task": "binary", "profile": "smoke"}, ["a"],
                             np.zeros(1), columns=1, run_card=card, model_dir=tmp_path)
    assert captured_export == {"profile": "smoke", "task": "binary"}
