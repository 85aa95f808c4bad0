"""The shared space as a search engine: embeddings, recall@k and zero-shot classification.

After training, every text and every image is a unit vector in one space. Cosine
similarity between an image and every text ranks the texts; if the space is aligned, the
post's own text (the *positive*) ranks near the top. Recall@k is the share of queries
whose positive is among the top k. The same similarity against one embedded sentence per
class (e.g. the emoji's name) is a classifier that was never trained on labels: zero-shot,
as in CLIP; against the mean embedding of each class it is a prototype classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emolib.data import BatchIterator, TensorCache
from emolib.model import predict
from emolib.preprocess import Preprocessor


@dataclass
class SplitEmbeddings:
    """Embeddings of one split: ``text``, ``image`` (N, D), L2-normalised; labels (N,)."""

    text: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    logits: np.ndarray


def embed_split(model: torch.nn.Module, cache: TensorCache, split: str,
                batch_size: int = 256, precision: str = "fp32") -> SplitEmbeddings:
    """Text and image embeddings (and logits) of every post of a cached split."""
    if getattr(model, "text_encoder", None) is None or getattr(model, "image_encoder",
                                                                 None) is None:
        raise ValueError("embed_split needs a model with both branches (mode='both')")
    device = next(model.parameters()).device
    batches = BatchIterator(cache, cache.indices(split), batch_size, device=device)
    out = predict(model, batches, precision)
    return SplitEmbeddings(out["text_embed"], out["image_embed"], out["labels"], out["logits"])


@torch.no_grad()
def embed_texts(model: torch.nn.Module, pre: Preprocessor, texts: Sequence[str],
                batch_size: int = 256) -> np.ndarray:
    """(len(texts), D) unit vectors from the text branch, preprocessed as training was."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        ids, mask = pre.tokenize(list(texts[start:start + batch_size]))
        chunks.append(model.encode_text(ids.long().to(device), mask.long().to(device))
                      .float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, G) cosine similarities between the rows of ``queries`` and of ``gallery``."""
    queries, gallery = np.asarray(queries), np.asarray(gallery)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries and gallery must be (Q, D) and (G, D) with the same D; "
                         f"got {queries.shape} and {gallery.shape}")
    return _unit(queries) @ _unit(gallery).T


def _check_k(k: int, n: int) -> None:
    if not 1 <= k:
        raise ValueError(f"k must be at least 1; got {k}")
    if n == 0:
        raise ValueError("the gallery is empty")


def positive_ranks(sim: np.ndarray) -> np.ndarray:
    """0-based rank of the diagonal entry in each row (entries strictly above it, counted)."""
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be square (N, N) with the positives on the diagonal; "
                         f"got shape {sim.shape}")
    diag = np.diagonal(sim)[:, None]
    return (sim > diag).sum(1)


def recall_at_k(sim: np.ndarray, k: int) -> float:
    """Share of rows of a square ``sim`` whose diagonal entry is among the row's top ``k``."""
    ranks = positive_ranks(sim)
    _check_k(k, sim.shape[1])
    return float((ranks < k).mean())


def class_recall_at_k(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray,
                      k: int) -> float:
    """Share of queries with at least one gallery item of their own class in the top ``k``."""
    sim = np.asarray(sim)
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if sim.ndim != 2 or sim.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(f"sim must be (len(query_labels), len(gallery_labels)) = "
                         f"({len(query_labels)}, {len(gallery_labels)}); got {sim.shape}")
    _check_k(k, sim.shape[1])
    k = min(k, sim.shape[1])
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return float((gallery_labels[top] == query_labels[:, None]).any(1).mean())


def chance_recall_at_k(n: int, k: int) -> float:
    """Recall@k of a random ranking of ``n`` items with one positive: k / n."""
    _check_k(k, n)
    return min(k, n) / n


def chance_class_recall_at_k(query_labels: np.ndarray, gallery_labels: np.ndarray,
                             k: int) -> float:
    """Expected class-level recall@k of a random ranking (hypergeometric, exact)."""
    gallery_labels = np.asarray(gallery_labels)
    n = len(gallery_labels)
    _check_k(k, n)
    k = min(k, n)
    classes, counts = np.unique(gallery_labels, return_counts=True)
    size = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    miss = {c: math.comb(n - m, k) / math.comb(n, k) for c, m in size.items()}
    return float(np.mean([1.0 - miss.get(c, 1.0) for c in np.asarray(query_labels).tolist()]))


def class_prototypes(embeddings: np.ndarray, labels: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """(C, D) unit-length mean embedding of each class (a zero row for an absent class)."""
    embeddings, labels = np.asarray(embeddings, dtype=np.float64), np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"embeddings must be (N, D) with N = len(labels) = {len(labels)}; "
                         f"got {embeddings.shape}")
    protos = np.zeros((num_classes, embeddings.shape[1]))
    for c in range(num_classes):
        if np.any(labels == c):
            protos[c] = embeddings[labels == c].mean(0)
    norms = np.linalg.norm(protos, axis=1, keepdims=True)
    return np.divide(protos, norms, out=np.zeros_like(protos), where=norms > 0)


def zero_shot_scores(image_embed: np.ndarray, class_embed: np.ndarray) -> np.ndarray:
    """(N, C) cosine similarity of each image to each class's embedding; argmax = prediction."""
    return cosine_similarity(image_embed, class_embed)


def modality_gap(text: np.ndarray, image: np.ndarray) -> float:
    """Distance between the centroids of the unit text and image embeddings (Liang et al.)."""
    return float(np.linalg.norm(_unit(text).mean(0) - _unit(image).mean(0)))


def nearest_neighbours(embeddings: torch.Tensor, k: int = 1) -> torch.Tensor:
    """(N, D) -> (N, k) indices of each row's k most cosine-similar *other* rows."""
    if not 1 <= k < len(embeddings):
        raise ValueError(f"k must be between 1 and N-1 = {len(embeddings) - 1}; got {k}")
    unit = torch.nn.functional.normalize(torch.as_tensor(embeddings).float(), dim=-1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def neighbour_agreement(embeddings: torch.Tensor, groups, k: int = 1) -> float:
    """Share of (row, neighbour) pairs among the k nearest neighbours that have equal groups.

    With G balanced groups, chance is about 1/G: a score well above it says the embedding
    space groups the rows the way ``groups`` does.
    """
    groups = torch.as_tensor(np.array(groups))  # a copy: pandas arrays may be read-only
    if len(groups) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(groups)} groups")
    nn_idx = nearest_neighbours(embeddings, k)
    return float((groups[nn_idx] == groups.unsqueeze(1)).float().mean())
