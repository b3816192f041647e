"""Seed papers dressed as a live feed would give them, shared by the renderer tests and
``bench/bench_render.py`` so both exercise the same variety of card shapes."""

from __future__ import annotations

import dataclasses
import random

import paths

from digest.feeds import load_papers
from digest.models import Paper


def varied_papers(rnd: random.Random) -> tuple[Paper, ...]:
    """The seed papers (titles and abstracts only, ``tests/fixtures/seed_papers.json``) with what a live feed adds (authors,
    links, upvotes), each present or not at random, so card shapes vary as they will in use."""
    return tuple(dataclasses.replace(
        p, authors=tuple(f"Author {j}" for j in range(rnd.randint(0, 6))),
        url=rnd.choice([None, f"https://arxiv.org/abs/2411.{i:05d}"]),
        pdf_url=rnd.choice([None, f"https://arxiv.org/pdf/2411.{i:05d}"]),
        hf_url=rnd.choice([None, f"https://huggingface.co/papers/2411.{i:05d}"]),
        code_url=rnd.choice([None, None, f"https://github.com/example/repo{i}"]),
        upvotes=rnd.choice([None, 0, 1, rnd.randint(2, 300)]))
        for i, p in enumerate(load_papers(paths.SEED)))
