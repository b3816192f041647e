"""The semantic layer: how close a paper is to what a topic is ``about`` and to the papers
its subscriber liked, offline.

Owns ``Semantic``: for one run's papers, a lexical model (BM25 from ``bm25s``, over title and
abstract, Snowball-stemmed) and a static embedding model whose weights ship inside the
``wordllama`` wheel (loaded from the package folder with downloads disabled: nothing is
fetched at run time). Papers are embedded once per run, on first need; each distinct
``about`` sentence once. ``rerank`` orders what the keywords let through by reciprocal rank
fusion (RRF, k = 60) of three rankings: the keyword rank, the embedding similarity to the
topic (its ``about`` and its liked papers) and the BM25 score of ``about``; papers close to a
disliked paper fall back. ``also`` finds the few papers the keywords missed that are very
close to a liked paper. May import ``_forms``; reads its model from an installed package.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from digest.models import Paper
from digest.selection._forms import stem

RRF_K = 60  # the usual reciprocal-rank-fusion constant: no ranking dominates
# Cosine above which a paper counts as "close to your paper": about the 99.5th percentile of
# the similarity between two random papers of a real 734-paper pool (median 0.39, 99th 0.62).
ALSO_MIN = 0.65
ALSO_MAX = 3
DISLIKE_MIN = 0.6  # a paper this close to a disliked one is pushed down


@lru_cache(maxsize=1)
def _model() -> Any:
    import wordllama

    # Weights and tokenizer ship in the wheel; disable_download makes a missing file an
    # error instead of a fetch from the hub.
    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                    disable_download=True)


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit vectors, one row per text; each distinct text embedded once. A batch is padded
    to its longest text: big batches pay off for short sentences, not for abstracts."""
    if not texts:
        return np.zeros((0, 256), dtype=np.float32)
    distinct = list(dict.fromkeys(texts))
    rows = np.asarray(_model().embed(distinct, norm=True, batch_size=batch_size),
                      dtype=np.float32)
    if len(distinct) == len(texts):
        return rows
    where = {text: n for n, text in enumerate(distinct)}
    return rows[[where[t] for t in texts]]


def _stem_all(words: list[str]) -> list[str]:
    return [stem(w) for w in words]


class Semantic:
    """Embeddings and a BM25 index over one run's papers (positions as in ``papers``)."""

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.papers = tuple(papers)
        self._position = {p.id: i for i, p in enumerate(self.papers)}
        self._others: dict[str, np.ndarray] = {}  # liked papers not in this run, by id
        self._vectors: np.ndarray | None = None
        self._bm25: Any = None
        self._about: dict[str, np.ndarray] = {}
        self._lexical: dict[str, np.ndarray] = {}
        self._close: dict[str, np.ndarray] = {}  # about -> similarity of every paper

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = embed([f"{p.title}. {p.abstract}" for p in self.papers])
        return self._vectors

    def paper_vector(self, paper: Paper) -> np.ndarray:
        """A paper's vector: today's from the run's matrix, another (a liked paper from an
        earlier day) embedded once."""
        i = self._position.get(paper.id)
        if i is not None:
            row: np.ndarray = self.vectors[i]
            return row
        found = self._others.get(paper.id)
        if found is None:
            found = self._others[paper.id] = embed([f"{paper.title}. {paper.abstract}"])[0]
        return found

    def prepare(self, abouts: Sequence[str]) -> None:
        """Embed and tokenize these sentences in one batch each (a plan with ``about`` on
        thousands of topics would otherwise pay both libraries' per-call cost each time)."""
        todo = [a for a in dict.fromkeys(abouts) if a not in self._about]
        if not todo:
            return
        vectors = embed(todo, batch_size=256)
        close = vectors @ self.vectors.T  # one matrix product for every sentence
        for about, vector, row in zip(todo, vectors, close):
            self._about[about] = vector
            self._close[about] = row
        import bm25s

        bm25 = self._index()
        for about, words in zip(todo, bm25s.tokenize(todo, stopwords="en", stemmer=_stem_all,
                                                     return_ids=False, show_progress=False)):
            scores = bm25.get_scores(words) if words else np.zeros(len(self.papers))
            self._lexical[about] = np.asarray(scores, dtype=np.float32)

    def _index(self) -> Any:
        if self._bm25 is None:
            import bm25s

            corpus = bm25s.tokenize([f"{p.title}. {p.abstract}" for p in self.papers],
                                    stopwords="en", stemmer=_stem_all, show_progress=False)
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)
        return self._bm25

    def about_vector(self, about: str) -> np.ndarray:
        found = self._about.get(about)
        if found is None:
            found = self._about[about] = embed([about])[0]
        return found

    def lexical(self, about: str) -> np.ndarray:
        """BM25 score of every paper for the words of ``about``."""
        found = self._lexical.get(about)
        if found is None:
            self.prepare([about])
            found = self._lexical[about]
        return found

    def closeness(self, about: str) -> np.ndarray:
        """Cosine of every paper with the sentence ``about``."""
        found = self._close.get(about)
        if found is None:
            found = self._close[about] = self.vectors @ self.about_vector(about)
        return found

    def topic_vector(self, about: str | None, liked: Sequence[np.ndarray]) -> np.ndarray | None:
        """What a topic is about, as one unit vector: its sentence and its liked papers."""
        parts = []
        if about:
            parts.append(self.about_vector(about))
        if liked:
            parts.append(np.mean(np.vstack(liked), axis=0))
        if not parts:
            return None
        v = np.mean(parts, axis=0)
        norm = float(np.linalg.norm(v))
        return v / norm if norm else None

    def rerank(self, candidates: np.ndarray, keyword_order: np.ndarray,
               topics: Sequence[tuple[str | None, Sequence[np.ndarray]]],
               disliked: Sequence[np.ndarray] = ()) -> list[int]:
        """``candidates`` (paper positions, ascending) best first. ``keyword_order`` is them
        in keyword rank order; ``topics`` the (about, liked papers' vectors) of each topic
        with any."""
        cand = np.asarray(candidates, dtype=np.int64)
        n = len(cand)
        if n == 0:
            return []
        # candidates are in ascending order (bits of a mask): their ranks by search
        kw_rank = np.empty(n, dtype=np.float64)
        kw_rank[np.searchsorted(cand, keyword_order)] = np.arange(n)
        fused = 1.0 / (RRF_K + 1 + kw_rank)
        sims = []
        lexical = []
        for about, liked in topics:
            if about and not liked:
                sims.append(self.closeness(about)[cand])  # the common case: cached per sentence
            else:
                v = self.topic_vector(about, liked)
                if v is not None:
                    sims.append(self.vectors[cand] @ v)
            if about:
                lexical.append(self.lexical(about)[cand])
        for scores in (sims, lexical):
            if scores:
                best = scores[0] if len(scores) == 1 else np.max(np.vstack(scores), axis=0)
                fused += 1.0 / (RRF_K + 1 + _ranks(best))
        if disliked:
            close = np.max(self.vectors[cand] @ np.vstack(disliked).T, axis=1)
            fused -= np.where(close >= DISLIKE_MIN, 1.0 / (RRF_K + 1 + _ranks(close)), 0.0)
        order = np.lexsort((kw_rank, -fused))  # ties: the keyword order
        return [int(c) for c in cand[order]]

    def also(self, liked: Sequence[np.ndarray], exclude: int, limit: int = ALSO_MAX
             ) -> list[tuple[int, int]]:
        """Up to ``limit`` (paper position, index of the liked paper it is closest to) among
        the papers not in the mask ``exclude``, with a cosine of at least ``ALSO_MIN``,
        closest first (``exclude`` should hold the liked papers themselves)."""
        if not liked:
            return []
        sims = self.vectors @ np.vstack(liked).T  # papers x liked
        best = sims.max(axis=1)
        which = sims.argmax(axis=1)
        out: list[tuple[int, int]] = []
        for i in np.argsort(-best, kind="stable"):
            i = int(i)
            if best[i] < ALSO_MIN or len(out) >= limit:
                break
            if exclude >> i & 1:
                continue
            out.append((i, int(which[i])))
        return out


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0 for the highest score, 1 for the next, ... (stable for ties)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(len(scores))
    return ranks
