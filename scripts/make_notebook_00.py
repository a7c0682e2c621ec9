"""Writes notebooks/00_datasets.ipynb (kept as the notebook's authoring source)."""
import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
COLAB = ("https://colab.research.google.com/github/tl-medical-book/tl-medical-book/blob/main/"
         "notebooks/00_datasets.ipynb")
cells = [
    md(f"""# A tour of the five datasets

[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB})

Every chapter of this book trains on one public medical-imaging dataset from Kaggle. Before
any model sees them, we look at them: how the files are laid out, how many images each
class holds, what sizes and colour modes they come in, and what the labels look like.
Most of the articles' mistakes that later chapters correct start here, with data that was
not looked at closely enough: patients on both sides of a split, a class imbalance that
makes accuracy flatter, duplicate images.

By default (the `smoke` profile) the notebook runs on **synthetic look-alike data** that
`tl_helpers` draws in the exact Kaggle layouts, so it runs anywhere, offline, in seconds.
Those pictures are cartoons, not medical images, and every output made from them says so.
Set `SYNTHETIC = False` and point `DATA_DIR` (or the `TL_DATA_DIR` environment variable)
at a folder holding the real datasets to tour the real thing."""),
    code("""# Setup: in Colab, fetch the book's helper package; elsewhere it is already installed.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("tl_helpers") is None:
    if "google.colab" not in sys.modules:
        raise ModuleNotFoundError("tl_helpers is missing: run `pip install -e .` in the book's folder")
    subprocess.run(["git", "clone", "-q", "--depth", "1",
                    "https://github.com/tl-medical-book/tl-medical-book", "/content/book"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "/content/book/requirements-colab.txt",
                    "-e", "/content/book"], check=True)
    sys.path.insert(0, "/content/book")
    os.chdir("/content/book/notebooks")"""),
    code("""# Parameters (papermill reads this cell; the runner sets them from profiles/<name>.yml)
PROFILE = "smoke"        # smoke | cpu | paper
SYNTHETIC = True         # True: synthetic look-alike data made offline; False: the real datasets
DATA_DIR = None          # folder holding the datasets; None: $TL_DATA_DIR, else the project's data/
SEED = 0                 # seed of the synthetic data and of the random samples shown
SAMPLES_PER_CLASS = 4    # images shown per class
OUTPUT_DIR = None        # where the run card goes; None: runs/<PROFILE>/
OVERWRITE = False        # allow replacing a committed run card""", metadata={"tags": ["parameters"]}),
    code("""import tl_helpers as tl
from tl_helpers.images import read_image

card = tl.notebook.start(globals(), "00_datasets")  # profile from $TL_PROFILE if set, seeds, run card"""),
    md("""Each dataset is described once in `tl.data.DATASETS`: its Kaggle reference, the layout
the code expects and the counts of the full release. The rest of this tour is the same
three steps per dataset: find it (`dataset_root`), check it (`verify` opens every image
and names every problem with its path), and look at a few samples."""),
    code("""import pandas as pd
pd.DataFrame([{"dataset": s.name, "chapter": s.chapter, "kaggle": s.kaggle_ref, "layout": s.layout}
              for s in tl.data.DATASETS.values()])"""),
    md("""## 1. Brain MRI, tumour yes / no (chapter 1)

253 axial MRI slices sorted into `yes/` and `no/`. They were gathered from several
sources: JPEG and PNG with upper- and lower-case endings, grayscale, RGB and even palette
images, from 150 to almost 2000 pixels wide, and the head often sits in a wide black
border. A loader has to cope with all of it; `tl.images.read_image` turns each into the
same RGB array."""),
    code("""root = tl.data.dataset_root("brain_mri_yes_no", synthetic=SYNTHETIC, data_dir=DATA_DIR, seed=SEED)
report = tl.data.require("brain_mri_yes_no", root)
card.data("brain_mri_yes_no", report.source, counts=report.counts)
print(report)"""),
    code("""table = tl.data.class_folder_table(root)
samples = tl.data.sample_per_class(table, SAMPLES_PER_CLASS, seed=SEED)
tl.plotting.plot_image_grid([read_image(p) for p in samples.path], labels=list(samples.label),
                            ncols=SAMPLES_PER_CLASS, suptitle=report.source.split(";")[0])"""),
    md("""Sixty percent of the images are tumours, so always answering "yes" already scores 0.61:
accuracy has to be read against that. With 253 images, a test split of 20 (the article's)
gives an accuracy interval about 0.2 wide; chapter 1 keeps a larger stratified test split.

## 2. Brain tumour MRI, four classes (chapter 2)

Glioma, meningioma, pituitary tumour and no tumour, in `Training/` and `Testing/` folders.
The copy used for development here holds only `Training/`, so chapter 2 carves its own
held-out split from it."""),
    code("""root = tl.data.dataset_root("brain_tumor_mri_4class", synthetic=SYNTHETIC, data_dir=DATA_DIR, seed=SEED)
report = tl.data.require("brain_tumor_mri_4class", root)
card.data("brain_tumor_mri_4class", report.source, counts=report.counts)
print(report)"""),
    code("""table = tl.data.class_folder_table(root)
samples = tl.data.sample_per_class(table[table.split == table.split.iloc[0]], SAMPLES_PER_CLASS, seed=SEED)
tl.plotting.plot_image_grid([read_image(p) for p in samples.path], labels=list(samples.label),
                            ncols=SAMPLES_PER_CLASS, suptitle=report.source.split(";")[0])"""),
    md("""## 3. Chest X-rays, normal / pneumonia (chapter 3)

Kermany's paediatric chest X-rays in `train/`, `val/` and `test/`, each with `NORMAL/` and
`PNEUMONIA/`. Two things matter for chapter 3. The classes are imbalanced, about one normal
film for three with pneumonia. And one child can have several films: the file name carries
the patient (`person12_bacteria_48.jpeg` is patient `person12`), so a split by file puts the
same child on both sides. We count patients as well as images."""),
    code("""root = tl.data.dataset_root("chest_xray", synthetic=SYNTHETIC, data_dir=DATA_DIR, seed=SEED)
report = tl.data.require("chest_xray", root)
table = tl.data.class_folder_table(root)
table["patient"] = table.path.map(tl.data.xray_patient_id)
patients = table.groupby(["split", "label"]).agg(images=("path", "size"), patients=("patient", "nunique"))
card.data("chest_xray", report.source, counts=report.counts,
          patients={f"{s}/{c}": int(n) for (s, c), n in patients.patients.items()})
print(report)
patients"""),
    code("""samples = tl.data.sample_per_class(table[table.split == "train"], SAMPLES_PER_CLASS, seed=SEED)
tl.plotting.plot_image_grid([read_image(p) for p in samples.path], labels=list(samples.label),
                            titles=list(samples.patient), ncols=SAMPLES_PER_CLASS,
                            suptitle=report.source.split(";")[0])"""),
    md("""## 4. LGG brain MRI with tumour masks (chapter 4)

The Kaggle `kaggle_3m` folder holds one folder per patient (`TCGA_<site>_<id>_<date>`), each
with the patient's axial slices as 256x256 three-channel TIFFs (pre-contrast, FLAIR,
post-contrast) and, beside each slice, a mask `..._<N>_mask.tif` that is 255 on the
tumour and 0 elsewhere. Most slices show no tumour: the mask is empty. A slice's label for
the classifier of chapter 4 comes from its mask."""),
    code("""root = tl.data.dataset_root("lgg_mri_segmentation", synthetic=SYNTHETIC, data_dir=DATA_DIR, seed=SEED)
report = tl.data.require("lgg_mri_segmentation", root)
slices = tl.data.lgg_slice_table(root)
card.data("lgg_mri_segmentation", report.source, counts=report.counts)
print(report)
slices.groupby("patient").agg(slices=("slice", "size"), with_tumour=("has_tumour", "sum")).head(8)"""),
    code("""shown = slices[slices.has_tumour].sample(SAMPLES_PER_CLASS, random_state=SEED)
tl.plotting.plot_mask_overlay([read_image(p) for p in shown.image_path],
                              [read_image(p, channels=1) for p in shown.mask_path],
                              titles=[f"{p} slice {s}" for p, s in zip(shown.patient, shown.slice)])"""),
    md("""## 5. Histopathology patches, PCam (chapter 5)

96x96 pixel patches of lymph-node sections, named by an id, with labels in
`train_labels.csv`. A patch is labelled 1 when the centre 32x32 pixels hold tumour tissue;
tumour elsewhere in the patch does not count, which is why chapter 5's article crops the
centre. Kaggle ships the patches as `.tif`; the development copy here holds JPEGs, and the
same code reads both."""),
    code("""root = tl.data.dataset_root("pcam", synthetic=SYNTHETIC, data_dir=DATA_DIR, seed=SEED)
report = tl.data.require("pcam", root)
patches = tl.data.pcam_table(root)
card.data("pcam", report.source, counts=report.counts)
print(report)"""),
    code("""samples = tl.data.sample_per_class(patches, SAMPLES_PER_CLASS, seed=SEED)
tl.plotting.plot_image_grid([read_image(p) for p in samples.path],
                            labels=["tumour in centre" if y else "no tumour in centre" for y in samples.label],
                            ncols=SAMPLES_PER_CLASS, suptitle=report.source.split(";")[0])"""),
    md("""## Where the files come from

The datasets keep their original terms; cite the authors as their Kaggle pages ask. None of
the images may be used for diagnosis."""),
    code("""for s in tl.data.DATASETS.values():
    print(f"{s.name}: {s.kaggle_url}\\n    {s.citation}")"""),
    md("""## Run card

What this run was: profile, where each dataset came from and its counts, the machine and
the library versions. The same record is written as JSON beside the executed notebook."""),
    code("""tl.notebook.finish(card, OUTPUT_DIR, OVERWRITE);""", metadata={"tags": ["nbval-ignore-output"]}),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"}})
nbf.write(nb, "notebooks/00_datasets.ipynb")
