"""Build the bundled sample (``digest/data/sample_papers.json``) from the enriched seed papers.

The input is ``seed_papers_enriched.json`` from the project's shared data (the 81 papers of the
page this project started from, with their real arXiv ids, authors and, where known, primary
category and date; every value's provenance is in ``seed_papers_enriched.provenance.json``
beside it, copied to ``digest/data/``). It is looked up in ``--data DIR``, else ``$DIGEST_DATA``,
else ``../shared/data`` beside the checkout. The output is our normalized paper list, with the
arXiv, PDF and Hugging Face links every arXiv paper has, so the quick-start email looks like the
real thing.

    python scripts/build_sample.py [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "digest" / "data" / "sample_papers.json"
NAME = "seed_papers_enriched.json"


def data_dir(option: str | None) -> Path:
    return Path(option or os.environ.get("DIGEST_DATA") or REPO.parent / "shared" / "data")


def convert(item: dict[str, object]) -> dict[str, object]:
    pid = str(item["arxiv_id"])
    out: dict[str, object] = {
        "id": pid, "title": item["title"], "abstract": item["abstract"],
        "authors": list(item.get("authors") or []),  # type: ignore[call-overload]
        "url": f"https://arxiv.org/abs/{pid}", "pdf_url": f"https://arxiv.org/pdf/{pid}",
        "hf_url": f"https://huggingface.co/papers/{pid}", "source": "sample",
    }
    if item.get("published"):
        out["published"] = f"{item['published']}T00:00:00Z"
    if item.get("primary_category"):
        out["categories"] = [item["primary_category"]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder holding seed_papers_enriched.json")
    args = parser.parse_args()
    source = data_dir(args.data) / NAME
    if not source.exists():
        print(f"build_sample: {source} not found: pass --data DIR or set DIGEST_DATA to the "
              f"folder holding {NAME} (the project's shared data)", file=sys.stderr)
        return 1
    papers = [convert(p) for p in json.loads(source.read_text(encoding="utf-8"))]
    OUT.write_text(json.dumps(papers, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(source.with_name("seed_papers_enriched.provenance.json"),
                    OUT.with_name("sample_papers.provenance.json"))
    print(f"wrote {len(papers)} papers to {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
