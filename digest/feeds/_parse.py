"""Papers from files and feeds: format detection, parsers, dedupe, the bundled sample.

Owns: turning any supported payload into ``tuple[Paper, ...]`` — our JSON list (the seed file's
``{title, abstract}`` objects, or the normalized output of ``digest fetch`` with every ``Paper``
field), the Hugging Face Daily Papers API JSON (2024 and 2026 shapes), the arXiv API Atom XML,
arXiv RSS, and, because it is cheap, Semantic Scholar search/batch JSON. The format is detected
from the content, never the file name. Also owns merging papers across sources (dedupe by arXiv
id without version, keeping the richer record), the normalized JSON writer (atomic), the bundled
offline sample, and ``papers_for`` — the one call commands make to get the run's papers.

May import: ``digest.models``, ``digest.errors`` and the standard library. Live HTTP lives in
``digest.feeds._http`` (imported lazily by ``papers_for`` so file-only commands never load httpx).

Text is kept as the feed gave it, with whitespace folded (hard-wrapped titles unwrapped);
LaTeX and accents are the summarizer's business. One bad item is skipped with a warning on the
``digest.feeds`` logger naming the item index; a payload that cannot be read at all, or whose
items are all bad, raises ``FeedError`` naming the file or URL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from digest.errors import FeedError
from digest.feeds._rxiv import latest, parse_details
from digest.models import Paper
from digest.text import scrub_surrogates

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"

# New-style ids (2606.13677, 0704.0001) and old-style ids (astro-ph/0601001, math.GT/0309136),
# optionally prefixed "arXiv:" or given as an abs/pdf URL, optionally with a version.
_ARXIV_ID = re.compile(
    r"^(?:arxiv:|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)?"
    r"(\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[a-z]{2})?/\d{7})(?:v\d+)?(?:\.pdf)?$",
    re.IGNORECASE)
_RSS_PREFIX = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*\S+\s*(?:Abstract:\s*)?", re.IGNORECASE)
_GITHUB = re.compile(r"https?://github\.com/[\w.-]+/[\w.-]+[\w-]")
_PROJECT = re.compile(r"project\s+page:?\s*(https?://\S+[\w/])", re.IGNORECASE)


class _BadItem(Exception):
    """One item of a feed cannot be used; the parser skips it with a warning."""


# --------------------------------------------------------------------------- small helpers


# JSON can escape half of a surrogate pair ("\ud800"); Python then holds a str that no
# encoder accepts (a title without an id would crash hashing it into the id, an email
# building it). Only such escapes can bring one in: raw bytes are decoded as strict UTF-8.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _without_surrogates(data: Any) -> Any:
    """``data`` (parsed JSON) with every lone surrogate in its strings, keys included, made
    U+FFFD; iterative, so a deep document cannot exhaust the stack."""
    def fix(value: Any) -> Any:
        return scrub_surrogates(value) if isinstance(value, str) else value

    root = [fix(data)]
    stack: list[Any] = [root[0]]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                node[i] = fix(item)
                stack.append(node[i])
        elif isinstance(node, dict):
            for key in list(node):
                value = fix(node.pop(key))
                node[fix(key)] = value
                stack.append(value)
    return root[0]


def fold_ws(text: str) -> str:
    """Whitespace folded to single spaces: unwraps hard-wrapped titles and arXiv's ``\\n  ``."""
    return " ".join(text.split())


def arxiv_id(value: str) -> str | None:
    """The bare arXiv id (no version, no prefix) if ``value`` is one, else None."""
    m = _ARXIV_ID.match(value.strip())
    return m.group(1) if m else None


def title_id(title: str) -> str:
    """A stable id for a paper without an arXiv id: ``t-`` + 12 hex digits of the SHA-1 of the
    NFKC-normalized, case-folded, whitespace-folded title (so re-wrapping or re-casing a title
    does not change it)."""
    return "t-" + hashlib.sha1(_title_key(title).encode("utf-8")).hexdigest()[:12]


def _title_key(title: str) -> str:
    return fold_ws(unicodedata.normalize("NFKC", title).casefold())


def _req_text(obj: Mapping[str, Any], *keys: str) -> str:
    """The first of ``keys`` holding a non-blank string, whitespace-folded; else a bad item."""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return fold_ws(value)
        if value is not None and not isinstance(value, str):
            raise _BadItem(f"{key!r} must be a string, got {type(value).__name__}")
    raise _BadItem(f"missing {keys[0]!r}")


def _opt(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is None or (kind is str and isinstance(value, str) and not value.strip()):
        return None
    # bool is an int subclass; a JSON true is never a count
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadItem(f"{key!r} must be {kind.__name__}, got {json.dumps(value)[:40]}")
    return value.strip() if isinstance(value, str) else value


def _str_list(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadItem(f"{key!r} must be a list of strings")
    return tuple(fold_ws(v) for v in value if v.strip())


def _parse_dt(value: str, key: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _BadItem(f"{key!r} is not an ISO 8601 date: {value!r}") from None
    return (dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt).astimezone(timezone.utc)


def _opt_dt(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = _opt(obj, key, str)
    return None if value is None else _parse_dt(value, key)


def _abs_url(pid: str | None) -> str | None:
    return f"https://arxiv.org/abs/{pid}" if pid else None


def _pdf_url(pid: str | None) -> str | None:
    return f"https://arxiv.org/pdf/{pid}" if pid else None


def _obj(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _items(source: str, items: Iterable[Any], parse: Callable[[Any], Paper]) -> tuple[Paper, ...]:
    """Parse each item, skipping bad ones with a warning; all bad -> FeedError."""
    papers: list[Paper] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        try:
            papers.append(parse(item))
        except _BadItem as exc:
            problems.append(f"item [{index}]: {exc}")
            log.warning("%s: item [%d] skipped: %s", source, index, exc)
    if problems and not papers:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FeedError(source, f"no usable papers: {problems[0]}{more}")
    return merge_papers(papers)


# --------------------------------------------------------------------------- JSON formats


def _ours(item: Any, default_source: str) -> Paper:
    """Our JSON list: ``{title, abstract}`` at least; every other Paper field optional."""
    if not isinstance(item, dict):
        raise _BadItem(f"expected an object, got {type(item).__name__}")
    title, abstract = _req_text(item, "title"), _req_text(item, "abstract")
    raw_id = _opt(item, "id", str)
    pid = (arxiv_id(raw_id) or raw_id) if raw_id else title_id(title)
    listed = _opt(item, "listed", str)
    try:
        listed_day = date.fromisoformat(listed[:10]) if listed else None
    except ValueError:
        raise _BadItem(f"'listed' is not an ISO 8601 date: {listed!r}") from None
    return Paper(
        id=pid, title=title, abstract=abstract, authors=_str_list(item, "authors"),
        url=_opt(item, "url", str), published=_opt_dt(item, "published"), listed=listed_day,
        categories=_str_list(item, "categories"), upvotes=_opt(item, "upvotes", int),
        source=_opt(item, "source", str) or default_source, pdf_url=_opt(item, "pdf_url", str),
        hf_url=_opt(item, "hf_url", str), code_url=_opt(item, "code_url", str),
        project_url=_opt(item, "project_url", str), ai_summary=_opt(item, "ai_summary", str),
        ai_keywords=_str_list(item, "ai_keywords"), comments=_opt(item, "comments", int),
        feeds=_str_list(item, "feeds"))


def _huggingface(item: Any, listed_default: date | None) -> Paper:
    """One HF Daily Papers item ``{paper: {...}, ...}``. Per the fixtures README: the date is
    ``paper.submittedOnDailyAt`` (never the shifted top-level ``publishedAt``), upvotes are
    ``paper.upvotes``, comments are top-level ``numComments``, AI fields are often absent."""
    if not isinstance(item, dict) or not isinstance(item.get("paper"), dict):
        raise _BadItem("expected an object with a 'paper' object")
    paper: dict[str, Any] = item["paper"]
    raw_id = _opt(paper, "id", str)
    if not raw_id:
        raise _BadItem("missing 'paper.id'")
    pid = arxiv_id(raw_id)
    # paper.* first; the top-level copies (2025+) only fill in
    title = _req_text(paper if _opt(paper, "title", str) else item, "title")
    abstract = _req_text(paper if _opt(paper, "summary", str) else item, "summary")
    authors = paper.get("authors") or []
    if not isinstance(authors, list):
        raise _BadItem("'paper.authors' must be a list")
    # "hidden" only hides the paper from that author's HF profile: they are still an author.
    names = tuple(fold_ws(a["name"]) for a in authors
                  if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"].strip())
    daily = _opt_dt(paper, "submittedOnDailyAt")
    return Paper(
        id=pid or raw_id, title=title, abstract=abstract, authors=names,
        url=_abs_url(pid), pdf_url=_pdf_url(pid), published=_opt_dt(paper, "publishedAt"),
        listed=daily.date() if daily else listed_default,
        upvotes=_opt(paper, "upvotes", int), source="huggingface",
        hf_url=f"https://huggingface.co/papers/{pid or raw_id}",
        code_url=_opt(paper, "githubRepo", str), project_url=_opt(paper, "projectPage", str),
        ai_summary=_opt(paper, "ai_summary", str),
        ai_keywords=_str_list(paper, "ai_keywords"), comments=_opt(item, "numComments", int))


def _semantic_scholar(item: Any) -> Paper:
    if not isinstance(item, dict):
        raise _BadItem("unknown paper (null)" if item is None else "expected an object")
    title, abstract = _req_text(item, "title"), _req_text(item, "abstract")
    pid = arxiv_id(str(_obj(item, "externalIds").get("ArXiv") or ""))
    authors = item.get("authors") if isinstance(item.get("authors"), list) else None
    s2_page = (f"https://www.semanticscholar.org/paper/{item['paperId']}"
               if isinstance(item.get("paperId"), str) else None)
    return Paper(
        id=pid or title_id(title), title=title, abstract=abstract,
        authors=tuple(a["name"] for a in authors or () if isinstance(a, dict) and a.get("name")),
        url=_abs_url(pid) or _opt(item, "url", str) or s2_page,
        published=_opt_dt(item, "publicationDate"), source="semantic-scholar",
        pdf_url=_pdf_url(pid) or _opt(_obj(item, "openAccessPdf"), "url", str),
        ai_summary=_opt(_obj(item, "tldr"), "text", str))


def parse_json(data: Any, source: str, *, listed: date | None = None,
               default_source: str = "file") -> tuple[Paper, ...]:
    """Papers from decoded JSON of any supported shape (detected from the items)."""
    if isinstance(data, dict):
        if isinstance(data.get("error"), str):  # the HF API's error body
            raise FeedError(source, f"the feed returned an error: {data['error']}")
        if isinstance(data.get("data"), list) and "total" in data:
            return _items(source, data["data"], _semantic_scholar)
        if isinstance(data.get("collection"), list) and isinstance(data.get("messages"), list):
            # a saved bioRxiv/medRxiv details answer: one paper per DOI, latest version
            return latest(parse_details(data, source).records)
        if isinstance(data.get("papers"), list):
            data = data["papers"]
        else:
            raise FeedError(source, "unrecognized format: expected a JSON list of papers "
                                    f"(got an object with keys {', '.join(sorted(data))[:120]})")
    if not isinstance(data, list):
        raise FeedError(source, f"unrecognized format: expected a JSON list of papers, got "
                                f"{type(data).__name__}")
    first = next((x for x in data if isinstance(x, dict)), None)
    if first is not None and isinstance(first.get("paper"), dict):
        return _items(source, data, lambda x: _huggingface(x, listed))
    if first is not None and "paperId" in first:
        return _items(source, data, _semantic_scholar)
    return _items(source, data, lambda x: _ours(x, default_source))


# --------------------------------------------------------------------------- XML formats


def _text(el: ET.Element | None) -> str:
    return (el.text or "") if el is not None else ""


def _atom_entry(entry: ET.Element) -> Paper:
    raw_id = _text(entry.find(f"{ATOM}id")).strip()
    pid = arxiv_id(raw_id)
    if not pid:
        raise _BadItem(f"not an arXiv id: {raw_id!r}")
    title = fold_ws(_text(entry.find(f"{ATOM}title")))
    abstract = fold_ws(_text(entry.find(f"{ATOM}summary")))
    if not title or not abstract:
        raise _BadItem(f"{pid}: missing {'title' if not title else 'summary'}")
    primary = entry.find(f"{ARXIV}primary_category")
    cats = [primary.get("term", "")] if primary is not None else []
    cats += [c.get("term", "") for c in entry.findall(f"{ATOM}category")]
    comment = _text(entry.find(f"{ARXIV}comment"))
    code, project = _GITHUB.search(comment), _PROJECT.search(comment)
    published = _text(entry.find(f"{ATOM}published"))
    authors = (fold_ws(_text(a.find(f"{ATOM}name"))) for a in entry.findall(f"{ATOM}author"))
    return Paper(
        id=pid, title=title, abstract=abstract, authors=tuple(a for a in authors if a),
        url=_abs_url(pid), pdf_url=_pdf_url(pid),
        categories=tuple(dict.fromkeys(c for c in cats if c)),
        published=_parse_dt(published, "published") if published.strip() else None,
        source="arxiv", code_url=code.group(0) if code else None,
        project_url=project.group(1) if project else None)


def _rss_item(item: ET.Element) -> Paper:
    guid, link = _text(item.find("guid")).strip(), _text(item.find("link")).strip()
    pid = arxiv_id(guid.removeprefix("oai:arXiv.org:")) or arxiv_id(link)
    title = fold_ws(_text(item.find("title")))
    abstract = fold_ws(_RSS_PREFIX.sub("", _text(item.find("description"))))
    if not title or not abstract:
        raise _BadItem(f"missing {'title' if not title else 'description'}")
    creators = " , ".join(_text(c) for c in item.findall(f"{DC}creator"))
    authors = tuple(a for a in (fold_ws(x) for x in re.split(r",|\s+and\s+", creators)) if a)
    listed: date | None = None
    if pub := _text(item.find("pubDate")).strip():
        try:  # the announcement day, in arXiv's own (US Eastern) offset
            listed = parsedate_to_datetime(pub).date()
        except (TypeError, ValueError):
            raise _BadItem(f"bad pubDate {pub!r}") from None
    return Paper(
        id=pid or title_id(title), title=title, abstract=abstract, authors=authors,
        url=_abs_url(pid) or link or None, listed=listed,
        categories=tuple(dict.fromkeys(fold_ws(_text(c)) for c in item.findall("category"))),
        source="arxiv-rss", pdf_url=_pdf_url(pid))


def rss_item(item: ET.Element) -> Paper:
    """One arXiv RSS ``<item>`` as a paper (``ValueError`` when it cannot be used)."""
    try:
        return _rss_item(item)
    except _BadItem as exc:
        raise ValueError(str(exc)) from None


def parse_xml(payload: bytes, source: str) -> tuple[Paper, ...]:
    """Papers from arXiv API Atom or arXiv RSS bytes. The arXiv API's error entry (served with
    HTTP 400) raises ``FeedError`` with arXiv's own message; an empty feed is zero papers."""
    try:
        # expat resolves no external entities and (>= 2.4.1) refuses entity-expansion bombs
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        line, col = exc.position
        raise FeedError(source, f"malformed XML at line {line}, column {col + 1}: "
                                f"{str(exc).split(':')[0]}") from None
    if root.tag == f"{ATOM}feed":
        entries = root.findall(f"{ATOM}entry")
        for entry in entries:
            if "/api/errors" in _text(entry.find(f"{ATOM}id")):
                message = fold_ws(_text(entry.find(f"{ATOM}summary"))) or "unknown error"
                raise FeedError(source, f"arXiv API error: {message}")
        return _items(source, entries, _atom_entry)
    if root.tag == "rss" and root.find("channel") is not None:
        return _items(source, root.iter("item"), _rss_item)
    raise FeedError(source, f"unrecognized format: XML root <{root.tag}> is neither an "
                            "arXiv Atom feed nor RSS")


# --------------------------------------------------------------------------- entry points


def parse_payload(payload: bytes, source: str, *, listed: date | None = None,
                  default_source: str = "file") -> tuple[Paper, ...]:
    """Papers from raw bytes of any supported format, detected from the content.

    ``source`` names the file or URL in errors and warnings; ``listed`` is the daily-list date
    to assume for HF items that lack ``submittedOnDailyAt`` (the 2024 shape)."""
    head = payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"[", b"{"):
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise FeedError(source, f"malformed JSON at line {exc.lineno}, column {exc.colno}: "
                                    f"{exc.msg}") from None
        except UnicodeDecodeError as exc:
            raise FeedError(source, f"not UTF-8 text: {exc.reason}") from None
        except RecursionError:
            raise FeedError(source, "malformed JSON: nested too deeply (no feed nests its "
                                    "papers more than a few levels)") from None
        if _ESCAPED_SURROGATE.search(payload):
            data = _without_surrogates(data)
        return parse_json(data, source, listed=listed, default_source=default_source)
    if head == b"<":
        return parse_xml(payload, source)
    if not head:
        raise FeedError(source, "empty file: expected a JSON list of papers, HF Daily Papers "
                                "JSON, arXiv Atom or arXiv RSS")
    raise FeedError(source, "unrecognized format: expected JSON (our paper list, HF Daily "
                            "Papers) or XML (arXiv Atom, arXiv RSS)")


def merge_papers(*groups: Iterable[Paper]) -> tuple[Paper, ...]:
    """Dedupe papers across sources, first-seen order. Same arXiv id -> one record; a paper
    with only a title id merges into the record with an arXiv id and the same normalized title.
    Merged records keep the richer one and fill its empty fields from the other."""
    papers = [p for group in groups for p in group]
    by_title = {_title_key(p.title): p.id for p in papers if not p.id.startswith("t-")}
    merged: dict[str, Paper] = {}
    for p in papers:
        key = by_title.get(_title_key(p.title), p.id) if p.id.startswith("t-") else p.id
        merged[key] = _merge(merged[key], p) if key in merged else p
    return tuple(merged.values())


def _empty(value: object) -> bool:
    return value is None or value == () or value == ""


def _richness(p: Paper) -> int:
    return sum(1 for f in dataclasses.fields(p) if not _empty(getattr(p, f.name)))


def _merge(a: Paper, b: Paper) -> Paper:
    base, other = (a, b) if _richness(a) >= _richness(b) else (b, a)
    filled = {f.name: getattr(other, f.name) for f in dataclasses.fields(base)
              if _empty(getattr(base, f.name)) and not _empty(getattr(other, f.name))}
    if base.id.startswith("t-") and not other.id.startswith("t-"):
        filled["id"] = other.id
    # HF truncates publishedAt to midnight; arXiv's own timestamp is the precise one
    if (other.published and base.published and other.published.date() == base.published.date()
            and base.published.time() == datetime.min.time()):
        filled["published"] = other.published
    # the same paper in two configured feeds is read by the subscribers of either
    if other.feeds and other.feeds != base.feeds:
        filled["feeds"] = tuple(dict.fromkeys(base.feeds + other.feeds))
    return dataclasses.replace(base, **filled)
