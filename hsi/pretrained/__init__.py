"""Shipped pretrained weights: list, resolve, verify, load, export and re-evaluate them.

Weights live in the top-level ``checkpoints/`` folder (packaged as ``hsi._checkpoints``),
one ``.pt`` file per weight plus a model card (``<file stem>.md``), all listed in
``checkpoints/index.yaml`` with their sha256 and the metrics measured with the shipped
file. A weight is named ``<model>/<tag>`` (``hybridsn/indian_pines``); the bare tag works
wherever it is unambiguous::

    model = hsi.create_model("hybridsn", pretrained="indian_pines")
    hsi predict --ckpt indian_pines --input scene.tif --output map.tif

Why a separate format from Lightning's ``.ckpt``: a ``.ckpt`` carries the optimizer state
(three times the weights) and the task's class path; a shipped weight needs only what
inference needs, as a plain dict of tensors, strings and numbers, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs) and can be stored in
float16 to stay under the 20 MB a git repository should carry. The dict holds: the model
name and constructor kwargs, the state dict, the fitted preprocessing (z-score + PCA
state, fitted on the training pixels, never refitted on a new scene), the data facts the
task recorded (class names, wavelengths, patch size, pad mode, protocol, split summary).
Restoration weights (``"task": "restoration"``, e.g. ``hsdt_s/salinas_a_gaussian50``) hold
the [0, 1] scaling and training degradation instead of the preprocessing; ``hsi predict
--ckpt NAME`` takes the restoration path for them, and :mod:`hsi.pretrained.restoration`
measures them on the test region their run held out.

Command line (``python -m hsi.pretrained ...``):

- ``list``: the shipped weights;
- ``export --ckpt RUN.ckpt --tag TAG``: write ``checkpoints/<model>_<tag>.pt`` from a
  ``hsi fit`` checkpoint, measure it (and the fp32 source) on the split's test pixels and
  record both in ``index.yaml``;
- ``evaluate NAME``: re-measure a weight's test metrics on its split (a denoiser: on its
  held-out test region, or with ``--dataset`` on a whole registered scene);
- ``verify``: check every listed file's sha256.
"""

from hsi.pretrained.export import evaluate_weights, export_weights
from hsi.pretrained.index import (
    MAX_GIT_BYTES,
    REPO_ROOT,
    PretrainedEntry,
    checkpoints_dir,
    list_pretrained,
    load_index,
    looks_like_name,
    resolve,
    sha256_of,
)
from hsi.pretrained.weights import (
    PretrainedWeights,
    build_pretrained,
    is_weight_file,
    load_weights,
    pretrained_task,
)

__all__ = [
    "MAX_GIT_BYTES",
    "REPO_ROOT",
    "PretrainedEntry",
    "PretrainedWeights",
    "build_pretrained",
    "checkpoints_dir",
    "evaluate_weights",
    "export_weights",
    "is_weight_file",
    "list_pretrained",
    "load_index",
    "load_weights",
    "looks_like_name",
    "pretrained_task",
    "resolve",
    "sha256_of",
]
