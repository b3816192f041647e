"""Build the vocabulary the selector ships (digest/data/vocabulary.json).

Two sources:

1. ``scripts/vocabulary_reviewed.yaml``: concepts written and reviewed by hand (spellings
   that are the same thing, and narrower kinds), see its header;
2. abbreviations mined with the Schwartz-Hearst method ("long form (SF)",
   ``digest.selection._abbreviations``) from the abstracts in ../shared/data: SciTLDR-A
   train and dev, CSAbstruct train, the seed papers and the recorded feed fixtures. Not from
   the relevance sets (those are for measuring).

A mined short form whose long forms all name one thing (``same_long_form``) and that was
defined in at least ``MIN_DEFINED`` abstracts joins the concept of either spelling (or
becomes a concept of its own); every mined long form is kept under its short form, with how
often it was seen, so the selector can tell an ambiguous acronym (MT: machine translation,
magnetotelluric). Deterministic: the same inputs give byte-identical JSON.

    .venv/bin/python scripts/build_vocabulary.py [--data DIR] [--check]   # or DIGEST_DATA=DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.feeds import load_papers  # noqa: E402
from digest.selection._abbreviations import definitions  # noqa: E402
from digest.selection._terms import compile_term  # noqa: E402
from digest.selection._vocabulary import VOCABULARY_FILE, same_long_form, spelling_key  # noqa: E402
from digest.text import fold  # noqa: E402

REVIEWED = ROOT / "scripts" / "vocabulary_reviewed.yaml"
OUT = ROOT / "digest" / "data" / VOCABULARY_FILE
MIN_DEFINED = 2  # a pair defined in one abstract only may be a one-off or a parse slip


def abstracts(data: Path) -> Iterator[str]:
    for name in ("scitldr_a_train.jsonl", "scitldr_a_dev.jsonl"):
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            yield f"{row['title']}. {row['abstract']}"
    for line in (data / "csabstruct_train.jsonl").read_text(encoding="utf-8").splitlines():
        yield " ".join(json.loads(line)["sentences"])
    for paper in json.loads((data / "seed_papers.json").read_text(encoding="utf-8")):
        yield f"{paper['title']}. {paper['abstract']}"
    for path in sorted((data / "fixtures").iterdir()):
        if path.suffix in (".json", ".xml"):
            try:
                papers = load_papers(path)
            except Exception:  # the recorded error payloads are meant to fail
                continue
            for p in papers:
                yield f"{p.title}. {p.abstract}"


def clean_long_form(text: str) -> str | None:
    words = compile_term(fold(text)).words
    if not words or any(w.isdigit() for w in words[:1]):
        return None
    return " ".join(words)


def mine(data: Path) -> tuple[dict[str, Counter[str]], dict[str, str]]:
    """short form key -> Counter(long form -> abstracts defining it so), and the short
    form's most common spelling."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    written: dict[str, Counter[str]] = defaultdict(Counter)
    seen_texts: set[str] = set()
    for text in abstracts(data):
        if text in seen_texts:
            continue
        seen_texts.add(text)
        for short, long_form in set(definitions(text)):
            lf = clean_long_form(long_form)
            if lf is None or len(lf) > 80:
                continue
            key = spelling_key(short)
            found[key][lf] += 1
            written[key][short] += 1
    return found, {k: sorted(c.items(), key=lambda e: (-e[1], e[0]))[0][0]
                   for k, c in written.items()}


def build(data: Path) -> dict[str, Any]:
    reviewed = yaml.safe_load(REVIEWED.read_text(encoding="utf-8"))
    concepts: list[dict[str, list[str]]] = [
        {"same": list(c["same"]), "kinds": list(c.get("kinds") or [])} for c in reviewed]
    mined, written = mine(data)
    by_key: dict[str, list[int]] = defaultdict(list)
    for n, concept in enumerate(concepts):
        for spelling in concept["same"]:
            by_key[spelling_key(spelling)].append(n)
    added = 0
    for key in sorted(mined):
        forms = mined[key]
        top, count = sorted(forms.items(), key=lambda e: (-e[1], e[0]))[0]
        if sum(forms.values()) < MIN_DEFINED or count < MIN_DEFINED:
            continue
        if any(not same_long_form(top, lf) for lf in forms):
            continue  # ambiguous: the reviewed list decides, the selector checks per paper
        short = written[key]
        homes = by_key.get(key) or by_key.get(spelling_key(top)) or []
        if homes:
            for n in homes:
                same = concepts[n]["same"]
                keys = {spelling_key(s) for s in same}
                for spelling in (short, top):
                    if spelling_key(spelling) not in keys:
                        same.append(spelling)
                        keys.add(spelling_key(spelling))
        else:
            concepts.append({"same": [short, top], "kinds": []})
            for spelling in (short, top):
                by_key[spelling_key(spelling)].append(len(concepts) - 1)
        added += 1
    abbreviations = {key: sorted(forms.items(), key=lambda e: (-e[1], e[0]))
                     for key, forms in sorted(mined.items())}
    return {
        "about": ("Built by scripts/build_vocabulary.py: the reviewed concepts of "
                  "scripts/vocabulary_reviewed.yaml, plus abbreviations mined (Schwartz-Hearst) "
                  "from SciTLDR-A train/dev, CSAbstruct train (AllenAI, Apache-2.0), the seed "
                  "papers and the recorded feed fixtures."),
        "reviewed": len(reviewed),
        "mined_concepts": added,
        "concepts": [{k: v for k, v in c.items() if v} for c in concepts],
        "abbreviations": abbreviations,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DIGEST_DATA") or
                                                      ROOT.parent / "shared" / "data"),
                    help="the shared data folder (default: $DIGEST_DATA or ../shared/data)")
    ap.add_argument("--check", action="store_true", help="fail if the shipped file differs")
    args = ap.parse_args()
    text = json.dumps(build(args.data), ensure_ascii=False, indent=0, sort_keys=True) + "\n"
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            sys.exit(f"{OUT} is not what this script builds: run it")
        print(f"{OUT}: up to date")
        return
    OUT.write_text(text, encoding="utf-8")
    data = json.loads(text)
    print(f"wrote {OUT}: {len(data['concepts'])} concepts ({data['reviewed']} reviewed, "
          f"{data['mined_concepts']} mined pairs merged or added), "
          f"{len(data['abbreviations'])} short forms seen")


if __name__ == "__main__":
    main()
