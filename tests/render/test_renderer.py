"""Renderer: golden files, structural checks, escaping, overrides, size budget, and the
compile-once fast path checked byte for byte against full compiles of real digests."""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from datetime import date, datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mjml import mjml2html

from digest.errors import TemplateError
from digest.models import (
    Digest,
    DigestItem,
    Paper,
    Pick,
    Rank,
    Reason,
    RenderedEmail,
    Settings,
    Subscriber,
    Summary,
    Topic,
)
from digest.render import Renderer, left_out
from digest.render._record import ascii_text, seven_bit_html
from digest.render._shapes import Shaper, _program, _seven_bit
from digest.render._renderer import context, day, http_url, short_authors, wrap

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
HOSTILE = '<script>alert("x")</script> & Friends'


def _paper(n: int, **kw: object) -> Paper:
    base: dict[str, object] = dict(
        id=f"2411.0{n}123", title=f"Paper {n}", abstract="An abstract.",
        authors=("Ada Lovelace", "Grace Hopper"), url=f"https://arxiv.org/abs/2411.0{n}123")
    base.update(kw)
    return Paper(**base)  # type: ignore[arg-type]


def fixed_digest(**kw: object) -> Digest:
    """Three papers covering every optional part of a card, with a fixed clock."""
    q = Topic(name="Quantization", include=("quantization",))
    moe = Topic(name="MoE", include=("mixture of experts",))
    sub = Subscriber(email="ada@example.org", name="Ada", timezone="UTC",
                     schedule="0 7 * * *", max_papers=10, topics=(q, moe))
    papers = [
        _paper(1, title="Quantized Attention: 4-bit KV Caches for Long Context",
               authors=("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"),
               pdf_url="https://arxiv.org/pdf/2411.01123",
               hf_url="https://huggingface.co/papers/2411.01123",
               code_url="https://github.com/example/qattn", upvotes=42),
        _paper(2, title="Sparse Mixture of Experts at Scale", upvotes=0,
               project_url="https://moe.example.org/"),
        _paper(3, title=HOSTILE, url="javascript:alert(1)", id="title-hostile",
               code_url="ftp://example.org/code", pdf_url="https://example.org/p.pdf?a=1&b=2"),
    ]
    items = tuple(
        DigestItem(
            pick=Pick(paper=p, topics=(topic,), rank=Rank(1, 1, 3 - i),
                      reasons=(Reason(topic, term, "title"),)),
            summary=Summary(paper_id=p.id, title=p.title, headline=f"Headline claim {i + 1}.",
                            results=(f"Result {i + 1} improves accuracy by 3% & more.",)
                            if i < 2 else ()),
        )
        for i, (p, topic, term) in enumerate(zip(
            papers, ("Quantization", "MoE", "Quantization"),
            ("quantization", "mixture of experts", "quantization")))
    )
    digest = Digest(subscriber=sub, edition=date(2026, 11, 25), generated_at=NOW, items=items,
                    more=2, unsubscribe_mailto="mailto:digest@example.org?subject=unsubscribe",
                    publisher="Paper Digest", sender_address="digest@example.org")
    return dataclasses.replace(digest, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture(scope="module")
def rendered(renderer: Renderer) -> RenderedEmail:
    return renderer.render(fixed_digest())


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def _source(html: str) -> str:
    """The rendered HTML as mrml wrote it, before ``seven_bit_html`` made it 7-bit (the
    non-ASCII character references back to characters, the line break after each start
    tag's name back to a space): what the checks on markup below read."""
    html = re.sub(r"(<[A-Za-z][A-Za-z0-9:-]*)\n", r"\1 ", html)
    return re.sub(r"&#(\d+);", lambda m: chr(int(m.group(1))) if int(m.group(1)) > 127
                  else m.group(0), html)


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("part", ["subject.txt", "mjml", "txt", "html"])
def test_golden(part: str, renderer: Renderer, rendered: RenderedEmail,
                update_golden: bool) -> None:
    actual = {
        "subject.txt": rendered.subject + "\n",
        "mjml": renderer.mjml(context(fixed_digest())),
        "txt": rendered.text,
        "html": rendered.html,
    }[part]
    path = GOLDEN / f"digest.{part}"
    if update_golden:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run pytest --update-golden once and review it"
    assert actual == path.read_text(encoding="utf-8"), \
        f"{path.name} changed; if intended, run pytest --update-golden and review the diff"


# --------------------------------------------------------------------------- structure


def test_subject_is_short_and_informative(rendered: RenderedEmail) -> None:
    assert rendered.subject == "3 new papers on Quantization, MoE - Wed 25 Nov"
    assert day(date(2026, 11, 24)) == "Tue 24 Nov"


def test_every_paper_link_is_present(rendered: RenderedEmail) -> None:
    hrefs = _hrefs(rendered.html)
    for url in ("https://arxiv.org/abs/2411.01123", "https://arxiv.org/pdf/2411.01123",
                "https://huggingface.co/papers/2411.01123", "https://github.com/example/qattn",
                "https://arxiv.org/abs/2411.02123", "https://moe.example.org/",
                "https://example.org/p.pdf?a=1&amp;b=2"):
        assert url in hrefs
    # grouped by topic: both Quantization papers first, then the MoE one
    assert rendered.papers == ("2411.01123", "title-hostile", "2411.02123")
    assert "42 upvotes" in rendered.html and "0 upvotes" in rendered.html
    assert "Ada Lovelace, Grace Hopper, Alan Turing et al." in rendered.html
    assert "MoE &#183; in title" in rendered.html  # 7-bit (seven_bit_html)
    assert "MoE \u00b7 in title" in _source(rendered.html)
    assert "matched: mixture of experts in title" in rendered.text
    assert "Headline claim 1." in rendered.text and "Result 2 improves" in rendered.text


def test_exactly_one_unsubscribe_link(renderer: Renderer, rendered: RenderedEmail) -> None:
    assert _hrefs(rendered.html).count("mailto:digest@example.org?subject=unsubscribe") == 1
    assert len(re.findall(r">Unsubscribe<", rendered.html)) == 1
    https = renderer.render(fixed_digest(unsubscribe_url="https://digest.example.org/u/tok"))
    hrefs = _hrefs(https.html)
    assert hrefs.count("https://digest.example.org/u/tok") == 1
    assert not [h for h in hrefs if h.startswith("mailto:")]
    assert "Unsubscribe: https://digest.example.org/u/tok" in https.text


def test_footer_says_why_and_how_to_change_topics(renderer: Renderer,
                                                  rendered: RenderedEmail) -> None:
    assert "ada@example.org subscribed to paper-digest for Quantization, MoE" in rendered.html
    assert "reply to this email" in rendered.html
    managed = renderer.render(fixed_digest(manage_url="https://digest.example.org/topics"))
    assert 'href="https://digest.example.org/topics"' in managed.html
    assert "reply to this email" not in managed.html


def test_no_template_syntax_left(rendered: RenderedEmail) -> None:
    for part in (rendered.subject, rendered.html, rendered.text):
        assert "{{" not in part and "{%" not in part and "}}" not in part


def test_untrusted_values_escaped_in_html_not_in_text(rendered: RenderedEmail) -> None:
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Friends" in rendered.html
    assert HOSTILE in rendered.text  # the text part is not HTML: no entities there


def test_hostile_subscriber_name_escaped(renderer: Renderer) -> None:
    d = fixed_digest()
    d = dataclasses.replace(d, subscriber=dataclasses.replace(d.subscriber, name="<b>Eve</b>"))
    html = renderer.render(d).html
    assert "<b>Eve</b>" not in html and "&lt;b&gt;Eve&lt;/b&gt;, your paper digest" in html


def test_only_http_links(rendered: RenderedEmail) -> None:
    assert "javascript:" not in rendered.html and "ftp:" not in rendered.html
    assert "javascript:" not in rendered.text
    schemes = {h.split(":", 1)[0] for h in _hrefs(rendered.html)}
    assert schemes == {"https", "mailto"}


@pytest.mark.parametrize("url,ok", [
    ("https://arxiv.org/abs/1", True), ("HTTP://x.org", True), ("javascript:alert(1)", False),
    (" JavaScript:alert(1)", False), ("data:text/html,x", False), ("//x.org/a", False),
    ("https://", False), ("https://x.org/a b", False), ('https://x.org/"onmouseover', False),
    (None, False), ("", False)])
def test_http_url(url: str | None, ok: bool) -> None:
    assert (http_url(url) is not None) is ok


def test_short_authors() -> None:
    assert short_authors(["A", "B", "C", "D"]) == "A, B, C et al."
    assert short_authors(["A", "B", "C"]) == "A, B, C"
    assert short_authors([]) == ""


def test_accessibility_basics(rendered: RenderedEmail) -> None:
    html = _source(rendered.html)
    assert '<html lang="en"' in html
    assert "<title>Paper digest - Wed 25 Nov</title>" in html
    assert 'name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html
    assert "Headline claim 1." in html.split("<body", 1)[1][:600]  # the preheader comes first
    assert all(' alt="' in tag for tag in re.findall(r"<img\b[^>]*>", html))
    assert "fonts.googleapis" not in html  # no remote fonts: nothing loads from outside


def test_empty_digest(renderer: Renderer) -> None:
    r = renderer.render(fixed_digest(items=(), more=0))
    assert r.subject == "No new papers - Wed 25 Nov"
    assert r.papers == () and "No new papers matched your topics" in r.html
    assert r.html == Renderer(fast=False).render(fixed_digest(items=(), more=0)).html


# --------------------------------------------------------------------------- size budget


def test_size_budget_drops_lowest_ranked_cards_whole() -> None:
    full = Renderer().render(fixed_digest())
    budget = len(full.html.encode()) - 200
    r = Renderer(max_bytes=budget).render(fixed_digest())
    assert len(r.html.encode()) <= budget
    assert r.dropped == 1 and r.papers == ("2411.01123", "2411.02123")
    assert "&lt;script&gt;" not in r.html  # the third card is gone whole, not cut
    assert "Sparse Mixture of Experts at Scale" in r.html and "Result 2 improves" in r.html
    assert "3 more matched; see them in the next digest." in r.html  # 2 cut + 1 dropped
    assert r.subject.startswith("2 new papers")
    assert "3 more matched" in r.text and HOSTILE not in r.text


def test_size_budget_can_drop_everything() -> None:
    r = Renderer(max_bytes=1000).render(fixed_digest())
    assert r.papers == () and r.dropped == 3


# --------------------------------------------------------------------------- templates


def test_override_extends_stock_and_replaces_one_block(tmp_path: Path) -> None:
    (tmp_path / "digest.mjml").write_text(
        '{% extends "stock/digest.mjml" %}\n{% block footer %}\n'
        '<mj-text>Custom footer for {{ subscriber.email }}: '
        '<a href="{{ unsubscribe_url }}">Leave</a></mj-text>\n{% endblock %}\n')
    r = Renderer(tmp_path).render(fixed_digest())
    assert "Custom footer for ada@example.org" in r.html
    assert "Quantized Attention" in r.html  # the rest of the stock template still renders
    assert "reply to this email" not in r.html
    assert r.html == Renderer(tmp_path, fast=False).render(fixed_digest()).html


def test_override_of_the_paper_partial_is_used(tmp_path: Path) -> None:
    (tmp_path / "_paper.mjml").write_text(
        "<mj-section><mj-column><mj-text>CARD {{ card.rank }}: {{ card.title }}"
        "</mj-text></mj-column></mj-section>\n")
    r = Renderer(tmp_path).render(fixed_digest())
    # the hostile paper is second: grouped under its topic, Quantization
    assert "CARD 1: Quantized Attention" in r.html and "CARD 2: &lt;script&gt;" in r.html


def test_typo_fails_loudly_with_template_name_and_line(tmp_path: Path) -> None:
    (tmp_path / "_paper.mjml").write_text(
        "<mj-section><mj-column>\n<mj-text>{{ card.titel }}</mj-text>\n"
        "</mj-column></mj-section>\n")
    with pytest.raises(TemplateError, match=r"template .*_paper\.mjml:2: .*titel"):
        Renderer(tmp_path).render(fixed_digest())


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("line one\n{% if cards %}unclosed\n")
    with pytest.raises(TemplateError, match=r"subject\.txt:\d+: "):
        Renderer(tmp_path).render(fixed_digest())


def test_mjml_error_is_wrapped(tmp_path: Path) -> None:
    (tmp_path / "digest.mjml").write_text("<mjml><mj-body><mj-section></mjml>\n")
    with pytest.raises(TemplateError, match=r"template digest\.mjml: MJML does not compile"):
        Renderer(tmp_path).render(fixed_digest())


def test_missing_templates_folder(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        Renderer(tmp_path / "nope")


# --------------------------------------------------------------------------- fast path


@functools.lru_cache(maxsize=None)
def real_digests(count: int = 40, seed: int = 7) -> tuple[Digest, ...]:
    """Digests built by the real stages from the bundled seed papers, with varied subscribers
    (names or not, 1-10 papers, unsubscribe URL or mailto, manage URL or not) and papers
    (optional links, authors and upvotes present or not)."""
    from sample_digests import varied_papers

    from digest.compose import build_digest, summarize_all
    from digest.selection import plan

    rnd = random.Random(seed)
    papers = varied_papers(rnd)
    terms = ["quantization", "language model", "diffusion", "reinforcement learning", "agent",
             "vision", "benchmark", "attention", "graph", "speech", "retrieval", "reasoning"]
    subs = [Subscriber(
        email=f"user{i}@example.org", name=rnd.choice([None, "Ada", "Grace <Hopper>", "Zoë"]),
        timezone="UTC", schedule="0 7 * * *", max_papers=rnd.randint(1, 10),
        topics=tuple(Topic(name=t.title(), include=(t,)) for t in rnd.sample(terms, 3)))
        for i in range(count)]
    summaries = summarize_all(papers, 350)
    out = []
    for i, sel in enumerate(plan(papers, subs, {})):
        d = build_digest(sel, summaries, NOW.date(), NOW, Settings(sender="D <d@example.org>"))
        if i % 3 == 0:
            d = dataclasses.replace(d, unsubscribe_url=f"https://example.org/u/{i}?t=a&b",
                                    manage_url="https://example.org/topics")
        out.append(d)
    return tuple(out)


def test_fast_path_equals_full_compile_on_real_digests() -> None:
    digests = real_digests()
    assert len({len(d.items) for d in digests}) >= 5  # varied paper counts
    fast, full = Renderer(), Renderer(fast=False)
    for d in digests:
        a, b = fast.render(d), full.render(d)
        assert a == b, d.subscriber.email
    # MJML compiles do not grow with the number of emails: two per frame (the part around the
    # cards), one per card shape, and a paper's card has one shape whoever gets it
    papers = {item.pick.paper.id for d in digests for item in d.items}
    assert fast.cache.compiles <= 2 * len(fast.cache.frames) + len(papers)
    assert len(fast.cache.frames) <= 8
    before = fast.cache.compiles
    for d in digests:
        fast.render(d)
    assert fast.cache.compiles == before  # everything is cached now


def test_fast_path_survives_templates_that_rewrite_markers(tmp_path: Path) -> None:
    # a filter over a block sees markers, not values: the renderer must notice and compile
    # those emails in full rather than emit wrong HTML
    (tmp_path / "_paper.mjml").write_text(
        "<mj-section><mj-column><mj-text>{% filter upper %}{{ card.title }}{% endfilter %}"
        " <a href=\"{{ card.url }}\">x</a></mj-text></mj-column></mj-section>\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests()[:8]:
        assert fast.render(d).html == full.render(d).html


def test_fast_path_keeps_values_mjml_reads_in_the_shape(tmp_path: Path) -> None:
    # a value inside an <mj-*> attribute is read by mrml (colours, widths): it must be compiled
    (tmp_path / "_paper.mjml").write_text(
        '<mj-section padding="{{ card.rank * 3 }}px"><mj-column>'
        '<mj-text color="{{ "#ff0000" if card.rank == 1 else "#00ff00" }}"> {{ card.title }}'
        "</mj-text></mj-column></mj-section>\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests()[:8]:
        assert fast.render(d).html == full.render(d).html


def test_fast_path_equals_full_compile_for_awkward_values() -> None:
    # values mrml could treat specially (edge whitespace, entities, markup, control and
    # invisible characters, backslashes, marker look-alikes) in every position a value takes
    rnd = random.Random(3)
    alphabet = [" ", "  ", "\n", "\t", "\r", "&", "&amp;", "&nbsp;", "<", ">", '"', "'", "é",
                "e\u0301", "—", "\u00a0", "\u200b", "\u00ad", "😀", "\\", "x", "word", "\x01",
                "\x02", "\x03", "zqpd", "zqpdc0qz", "{{", "%", "</mj-text>", "<!--", "]]>"]

    def s(k: int) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, k)))

    base = fixed_digest()
    fast, full = Renderer(), Renderer(fast=False)
    for _ in range(120):
        items = []
        for item in base.items:
            paper = dataclasses.replace(
                item.pick.paper, authors=tuple(s(3) for _ in range(rnd.randint(0, 4))),
                url=rnd.choice([item.pick.paper.url, "https://x.org/" + s(3)]),
                upvotes=rnd.choice([None, 0, 1, 7]))
            pick = dataclasses.replace(item.pick, paper=paper, topics=(s(2),), reasons=tuple(
                Reason(s(2), s(3), "title") for _ in range(rnd.randint(0, 2))))
            summary = dataclasses.replace(item.summary, title=s(6), headline=s(8),
                                          results=tuple(s(5) for _ in range(rnd.randint(0, 2))))
            items.append(DigestItem(pick, summary))
        d = dataclasses.replace(
            base, items=tuple(items[:rnd.randint(0, 3)]), more=rnd.randint(0, 2),
            subscriber=dataclasses.replace(base.subscriber, name=s(3) or None),
            manage_url=rnd.choice([None, "https://m.example.org/" + s(2)]))
        assert fast.render(d) == full.render(d)


def test_http_url_percent_encodes_non_ascii() -> None:
    assert http_url("https://x.org/é\\q?a=1&b=ü") == "https://x.org/%C3%A9%5Cq?a=1&b=%C3%BC"
    assert http_url("https://x.org/plain?a=1&b=2#f") == "https://x.org/plain?a=1&b=2#f"


def test_one_renderer_shared_by_threads() -> None:
    # the service's sending workers share one Renderer: recording is per thread, the shape
    # cache is locked
    from concurrent.futures import ThreadPoolExecutor

    digests = real_digests()
    expected = [Renderer(fast=False).render(d) for d in digests]
    shared = Renderer()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(shared.render, digests * 2))
    assert got == expected * 2


def test_any_error_in_a_template_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("{{ cards|length }}\n{{ 1 // (cards|length - 3) }}\n")
    with pytest.raises(TemplateError, match=r"subject\.txt:2: ZeroDivisionError"):
        Renderer(tmp_path).render(fixed_digest())


def test_fast_path_with_cards_inside_one_column(tmp_path: Path) -> None:
    # cards as mj-text elements in a single column: the probe lands between them too
    (tmp_path / "digest.mjml").write_text(
        '{% extends "stock/digest.mjml" %}{% block cards %}<mj-section><mj-column>'
        "{% for card in cards %}{{ card_marker }}{% include '_paper.mjml' %}{% endfor %}"
        "{{ card_marker }}</mj-column></mj-section>{% endblock %}")
    (tmp_path / "_paper.mjml").write_text(
        '<mj-text css-class="card"><b>{{ card.title }}</b>{% for c in card.claims %}'
        "<br>{{ c }}{% endfor %}</mj-text><mj-divider />\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests():
        assert fast.render(d).html == full.render(d).html
    assert fast.cache.compiles < len(real_digests())


def test_fast_path_where_no_probe_fits(tmp_path: Path) -> None:
    # cards as links of an mj-navbar, where mj-raw is not allowed: the probe fails and the
    # renderer finds card units per frame by comparing compiles
    (tmp_path / "digest.mjml").write_text(
        '{% extends "stock/digest.mjml" %}{% block cards %}<mj-section><mj-column><mj-navbar>'
        "{% for card in cards %}{{ card_marker }}{% include '_paper.mjml' %}{% endfor %}"
        "{{ card_marker }}</mj-navbar></mj-column></mj-section>{% endblock %}")
    (tmp_path / "_paper.mjml").write_text(
        '<mj-navbar-link href="https://example.org/">{{ card.title }}</mj-navbar-link>\n')
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests():
        assert fast.render(d).html == full.render(d).html
    assert all(f.boundary is None for f in fast.cache.frames.values())
    assert any(f.units for f in fast.cache.frames.values())


# --------------------------------------------------------------------------- card part memo


@pytest.mark.parametrize(("source", "reads"), [
    ("{{ card.title }} {{ card.reasons|join('; ') }}", ("reasons", "title")),
    ("{% if card.upvotes is not none %}{{ card.upvotes }}{% endif %}", ("upvotes",)),
    ("{{ card.title }} {{ name }}", None),  # another variable: depends on the email
    ("{{ loop.index }} {{ card.title }}", None),
    ("{{ card.item.pick.rank }}", None),  # not a card value the key covers
    ("{{ card|string }}", None),  # the whole card escapes into a filter
    ("{{ card.claims|random }}", None),  # impure
    ("{{ card.title.upper() }}", None),  # calls
    ("{% include 'x.mjml' %}", None),
    ("{{ card.title", None),  # a syntax error: the real render reports it
])
def test_card_reads_accepts_only_partials_that_depend_on_the_card(
        source: str, reads: tuple[str, ...] | None) -> None:
    from digest.render._memo import card_reads

    env = Renderer().fast_env
    allowed = frozenset({"title", "reasons", "upvotes", "claims", "rank"})
    assert card_reads(env, source, allowed) == reads


def test_stock_card_partial_is_replayed_across_emails() -> None:
    digests = real_digests()
    fast, full = Renderer(), Renderer(fast=False)
    for d in digests:
        assert fast.render(d) == full.render(d)
    store = fast.fast_env._memo_store  # type: ignore[attr-defined]
    cards = sum(len(d.items) for d in digests)
    assert 0 < len(store) < cards  # one Jinja render per distinct card, not per email


def test_card_memo_keys_per_subscriber_values(tmp_path: Path) -> None:
    # rank and reasons differ per subscriber for the same paper: they join the memo key
    (tmp_path / "_paper.mjml").write_text(
        "<mj-section><mj-column><mj-text>{{ card.rank }}. {{ card.title }}"
        " ({{ card.reasons|join('; ') }}) {{ card.topics|join(', ') }}</mj-text>"
        "</mj-column></mj-section>\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests():
        assert fast.render(d).html == full.render(d).html
    assert fast.fast_env._memo_store  # type: ignore[attr-defined]


@pytest.mark.parametrize("cards", [
    # the include captured in a {% set %} block, then printed
    "{% for card in cards %}{{ card_marker }}{% set x %}{% include '_paper.mjml' %}"
    "{% endset %}{{ x }}{% endfor %}{{ card_marker }}",
    # inside a macro (its output is a buffer too)
    "{% macro one(card) %}{% include '_paper.mjml' %}{% endmacro %}"
    "{% for card in cards %}{{ card_marker }}{{ one(card) }}{% endfor %}{{ card_marker }}",
    # a name chosen at render time: Jinja's own include code around the memo
    "{% for card in cards %}{{ card_marker }}{% include ['_paper.mjml'] %}{% endfor %}"
    "{{ card_marker }}",
    "{% for card in cards %}{{ card_marker }}{% include '_paper.mjml' ignore missing %}"
    "{% endfor %}{{ card_marker }}",
])
def test_card_memo_replays_wherever_the_include_is_printed(tmp_path: Path, cards: str) -> None:
    (tmp_path / "digest.mjml").write_text(
        '{% extends "stock/digest.mjml" %}{% block cards %}' + cards + "{% endblock %}")
    (tmp_path / "digest.txt").write_text(
        "{% for card in cards %}{% set x %}{% include 'stock/_paper.txt' %}{% endset %}"
        "{{ x }}|{% include '_paper.txt' %}{% endfor %}\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests() * 2:  # the second time round every card is replayed
        assert fast.render(d) == full.render(d)
    assert fast.text_env._memo_store  # type: ignore[attr-defined]
    # a name picked from a list goes to Jinja's select_template, which the memo never sees
    assert bool(fast.fast_env._memo_store) == ("['" not in cards)  # type: ignore[attr-defined]


def test_card_stand_in_no_longer_known_compiles_in_full() -> None:
    # the memo started over after a card was printed as its stand-in: the shaper cannot
    # expand it and the email is compiled in full, with the same output
    fast, full = Renderer(), Renderer(fast=False)
    digests = real_digests()
    for d in digests:
        fast.render(d)
    fast.fast_env._memo_texts.clear()  # type: ignore[attr-defined]
    fast.shaper = Shaper()  # forgets the parts it knew by their stand-ins
    compiles = fast.cache.compiles
    for d in digests:
        assert fast.render(d) == full.render(d)
    assert fast.cache.compiles == compiles  # compile_mjml in full does not count here
    assert fast.fast_env.expand("a\x02m999999999\x03b") is None  # type: ignore[attr-defined]


def test_card_partial_reading_the_email_is_not_memoized(tmp_path: Path) -> None:
    (tmp_path / "_paper.mjml").write_text(
        "<mj-section><mj-column><mj-text>{{ card.title }} for {{ subscriber.email }}"
        "</mj-text></mj-column></mj-section>\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in real_digests()[:10]:
        assert fast.render(d).html == full.render(d).html
    assert not fast.fast_env._memo_store  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the design (issue 13)


def _reasoned(reasons: tuple[Reason, ...], topics: tuple[str, ...]) -> Digest:
    d = fixed_digest()
    first = d.items[0]
    pick = dataclasses.replace(first.pick, reasons=reasons, topics=topics)
    return dataclasses.replace(d, items=(dataclasses.replace(first, pick=pick),))


def test_cards_are_numbered_and_grouped_under_topic_headings(rendered: RenderedEmail) -> None:
    html = _source(rendered.html)
    headings = re.findall(r'<h2 class="section"[^>]*>([^<]*)</h2>', html)
    assert headings == ["Quantization", "MoE"]  # (html is _source(rendered.html))
    ranks = re.findall(r'<span class="badge"[^>]*>(\d+)</span>', html)
    assert ranks == ["1", "2", "3"]
    # reading order: heading, its cards, next heading
    assert html.index(">Quantization</h2>") < html.index("Quantized Attention") \
        < html.index("&lt;script&gt;") < html.index(">MoE</h2>") < html.index("Sparse Mixture")
    assert "== Quantization ==" in rendered.text and "\n 3. Sparse Mixture" in rendered.text


def test_one_topic_gets_no_heading(renderer: Renderer) -> None:
    d = fixed_digest()
    items = tuple(i for i in d.items if i.pick.topics == ("Quantization",))
    r = renderer.render(dataclasses.replace(d, items=items))
    assert 'class="section"' not in r.html and "==" not in r.text


def test_reason_is_a_short_tag_and_the_matched_line_names_each_term_once(
        renderer: Renderer) -> None:
    reasons = (Reason("LLM", "LLM", "title"), Reason("LLM", "LLMs", "title"),
               Reason("LLM", "llms", "abstract"), Reason("LLM", "large language model", "abstract"),
               Reason("Agents", "agent", "abstract"), Reason("Agents", "agents", "abstract"))
    r = renderer.render(_reasoned(reasons, ("LLM", "Agents")))
    assert "LLM \u00b7 in title, Agents \u00b7 in abstract" in _source(r.html)
    assert "matched: LLM in title; large language model, agent in abstract" in r.text
    assert "matched:" not in r.html  # the HTML shows tags, not the debug-style line


def test_the_footer_links_the_web_pages_when_there_are_some(renderer: Renderer) -> None:
    base = "https://digest.example.org"
    web = renderer.render(fixed_digest(view_url=f"{base}/a/tok/2026-11-25",
                                       archive_url=f"{base}/a/tok",
                                       preferences_url=f"{base}/p/tok"))
    hrefs = _hrefs(web.html)
    for url in (f"{base}/a/tok/2026-11-25", f"{base}/a/tok", f"{base}/p/tok"):
        assert hrefs.count(url) == 1, url
    assert ">Past digests</a>" in web.html
    assert f"\nPast digests: {base}/a/tok\n" in web.text
    # "N more matched" promises nothing the archive does not show: it is not a link
    assert "2 more matched; see them in the next digest." in web.html
    assert "2 more matched; see them in the next digest.\n" in web.text
    plain = renderer.render(fixed_digest())
    assert base not in plain.html and "Past digests" not in plain.text


def test_more_matched_links_its_page_only_when_there_is_one(renderer: Renderer) -> None:
    url = "https://digest.example.org/m/" + "t" * 38 + "/2026-11-25"  # a 26-character base
    linked = renderer.render(fixed_digest(more_url=url))
    assert _hrefs(linked.html).count(url) == 1
    assert re.search(r'class="button"[^>]*>2 more matched: see them all</a>', linked.html)
    assert f"\n2 more matched; see them all:\n{url}\n" in linked.text
    assert max(len(line) for line in linked.text.splitlines()) <= 78
    assert linked.html == Renderer(fast=False).render(fixed_digest(more_url=url)).html
    plain = renderer.render(fixed_digest())  # the golden email: no base_url
    assert "see them all" not in plain.html + plain.text
    assert "2 more matched; see them in the next digest.\n" in plain.text
    none_left = renderer.render(fixed_digest(more_url=url, more=0))
    assert url not in none_left.html and url not in none_left.text


def test_left_out_lists_budget_drops_then_the_cut_in_rank_order() -> None:
    digest = fixed_digest()
    kept = {digest.items[0].pick.paper.id}  # the size budget dropped items 2 and 3
    cut_paper = _paper(4, title=r"Fast $\alpha$-Quantization", url="javascript:alert(1)",
                       authors=("A", "B", "C", "D"))
    cut = (Pick(paper=cut_paper, topics=("Quantization",), rank=Rank(0, 1, 1),
                reasons=(Reason("Quantization", "quantization", "abstract"),)),)
    missed = left_out(digest.items, kept, cut)
    assert [m.paper_id for m in missed] == ["2411.02123", "title-hostile", "2411.04123"]
    assert missed[1].url == "https://example.org/p.pdf?a=1&b=2"  # as its card: not javascript:
    assert missed[1].title == HOSTILE  # raw here; every page escapes it
    assert missed[2].title == "Fast α-Quantization"  # cleaned as a summary's title is
    assert missed[2].url == "https://arxiv.org/abs/2411.04123"  # the arXiv page, not javascript:
    assert (missed[2].authors, missed[2].tags) == ("A, B, C et al.",
                                                   ("Quantization \u00b7 in abstract",))
    assert left_out(digest.items, {i.pick.paper.id for i in digest.items}, ()) == ()


def test_masthead_and_footer_name_the_sender(rendered: RenderedEmail) -> None:
    body = _source(rendered.html).split("<body", 1)[1]
    assert body.index("Paper Digest") < body.index("Ada, your paper digest")  # the masthead
    assert "<strong>Paper Digest</strong> \u00b7 digest@example.org" in body  # the footer
    assert rendered.text.startswith("PAPER DIGEST - Wednesday 25 November 2026\n")
    assert "\n-- \nPaper Digest <digest@example.org>\n" in rendered.text


def test_preheader_is_hidden_without_a_colour_of_its_own(rendered: RenderedEmail) -> None:
    # white-on-white hidden text is SpamAssassin's HTML_FONT_LOW_CONTRAST
    tag = re.search(r'<div class="preheader" style="([^"]*)">Headline claim 1\.</div>',
                    _source(rendered.html))
    assert tag and "display:none" in tag.group(1) and "color" not in tag.group(1)
    assert "#ffffff;line-height:1px" not in rendered.html  # mj-preview's white text is gone


_URL = re.compile(r"https?://\S+|mailto:\S+")


@pytest.mark.parametrize("which", ["fixed", "real"])
def test_text_part_fits_78_columns_and_keeps_urls_clean(renderer: Renderer, which: str) -> None:
    digests = [fixed_digest(archive_url="https://digest.example.org/a/" + "t" * 38,
                            manage_url="https://example.org/topics")] \
        if which == "fixed" else list(real_digests())
    for d in digests:
        text = renderer.render(d).text
        for line in text.splitlines():
            # only a URL on a line of its own may be longer: a URL is never broken
            assert len(line) <= 78 or _URL.fullmatch(line.strip()), line
        assert text.count("\n-- \n") == 1  # the RFC 3676 separator, with its space
        for m in _URL.finditer(text):
            assert not re.search(r"[.,;:!?)\]>]$", m.group(0)), m.group(0)
            assert m.end() == len(text) or text[m.end()] in " \n"


def test_a_long_digest_stays_far_below_gmail_clipping(renderer: Renderer) -> None:
    longest = max(real_digests(), key=lambda d: len(d.items))
    r = renderer.render(longest)
    assert len(longest.items) == 10 and r.dropped == 0
    assert len(r.html.encode()) < 60_000  # Gmail clips past 102 KB


def test_you_may_also_like_follows_the_cards_labelled_and_goes_first_when_too_big() -> None:
    base = fixed_digest()
    liked = base.items[0].pick.paper.title
    paper = dataclasses.replace(base.items[1].pick.paper, id="also-1", title="A Close Cousin")
    extra = DigestItem(
        pick=Pick(paper=paper, topics=("Quantization",), rank=Rank(0, 0, 0),
                  reasons=(Reason("Quantization", liked, "abstract", "like"),)),
        summary=Summary(paper_id="also-1", title="A Close Cousin", headline="It is close."))
    digest = dataclasses.replace(base, also=(extra,))
    r = Renderer().render(digest)
    assert r.papers[-1] == "also-1" and len(r.papers) == len(base.items) + 1
    assert "YOU MAY ALSO LIKE" in r.text.upper()
    text = r.text[r.text.upper().index("YOU MAY ALSO LIKE"):]
    assert "A Close Cousin" in text and f"close to your paper «{liked}»" in " ".join(text.split())
    assert "You may also like" in r.html and "A Close Cousin" in r.html
    assert "close to your paper «" in _source(r.html)
    assert r.html == Renderer(fast=False).render(digest).html  # the fast path agrees
    assert Renderer().render(base).html == Renderer().render(dataclasses.replace(base, also=())).html
    # too big: the extra card goes before any paper the terms found
    small = Renderer(max_bytes=len(Renderer().render(base).html.encode()) + 10).render(digest)
    assert "also-1" not in small.papers and len(small.papers) == len(base.items)


# --------------------------------------------------------------------------- 7-bit HTML


class _Tokens(HTMLParser):
    """What an HTML parser reads: tags with their (decoded) attributes, text, comments."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[object] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("startend", tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.events.append(("data", data))

    def handle_comment(self, data: str) -> None:
        if data.startswith("[if ") and "]>" in data:  # markup for Outlook: read it as such
            cond, _, inner = data.partition("]>")
            self.events.append(("if", cond, _Tokens(inner.removesuffix("<![endif]")).events))
        else:
            self.events.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self.events.append(("decl", decl))


def test_seven_bit_html_is_the_same_document_to_a_parser() -> None:
    # mrml's own output for real digests against what the renderer sends: the same tags,
    # attributes, text and comments, in 7-bit ASCII with short lines
    naive = Renderer(fast=False)
    for d in [fixed_digest(), *real_digests()[:40]]:
        raw = mjml2html(naive.mjml(context(d)), disable_comments=True, fonts={})
        sent = naive.render(d).html
        assert sent == seven_bit_html(raw)
        assert sent.isascii() and max(len(line) for line in sent.split("\n")) <= 998
        assert _Tokens(sent).events == _Tokens(raw).events


def test_seven_bit_html_leaves_raw_text_alone_and_references_everything_else() -> None:
    html = ('<html><head><title>Zoë</title><style>p { content: "▲"; }</style></head>'
            '<body><p class="x" title="Zoë">a ▲ b<br /></p><script>if (a <b ) {}</script>'
            "</body></html>")
    out = seven_bit_html(html)
    assert out == ('<html><head><title>Zo&#235;</title><style>p { content: "▲"; }</style>'
                   '</head><body><p\nclass="x" title="Zo&#235;">a &#9650; b<br\n/></p>'
                   "<script>if (a <b ) {}</script></body></html>")
    assert _Tokens(out).events == _Tokens(html).events


def _filled(html: str, values: dict[str, tuple[str, ...]]) -> str:
    """Each hole token of a compiled shape replaced by its value, made 7-bit: the plain
    statement of what a program's fill gives."""
    return re.sub(r"zqpd([hct])(\d+)qz", lambda m: ascii_text(values[m.group(1)][int(m.group(2))]),
                  html)


def test_a_program_fills_its_holes_as_the_tokens_say() -> None:
    rnd = random.Random(5)
    words = ["<p>", "a { b }", "{0[1]}", "%s", "", "\n", "zq", "é ▲ ·", "&#183;"]
    for _ in range(2_000):
        kinds = rnd.choice(["c", "ht", "h", "t"])
        values = {k: tuple(rnd.choice(words) + str(n) for n in range(rnd.randint(1, 6)))
                  for k in "hct"}
        html = "".join(rnd.choice(words) + (f"zqpd{k}{rnd.randrange(len(values[k]))}qz"
                                            if (k := rnd.choice(kinds + "x")) != "x" else "")
                       for _ in range(rnd.randint(0, 12)))
        program = _program(html, kinds)
        assert program is not None
        out: list[str] = []
        program.fill_into(out, (_seven_bit(values["h"]), _seven_bit(values["c"]),
                                _seven_bit(values["t"])))
        assert "".join(out) == _filled(html, values)
    assert _program("<p>zqpdc0qz</p>", "ht") is None  # a card's hole in the frame: refused


# --------------------------------------------------------------------------- card holes (issue 16)


def _varied_cards() -> tuple[Digest, ...]:
    """Digests where the same paper comes at different ranks, with different tags and matched
    lines, under different section headings (each subscriber has their own topic mix)."""
    digests = real_digests(80, seed=11)
    seen: dict[str, set[tuple[object, ...]]] = {}
    for d in digests:
        for card in context(d)["cards"]:
            seen.setdefault(card.paper_id, set()).add(
                (card.rank, card.tags, card.matched, card.section))
    for n in range(4):  # rank, tags, matched, section each vary for some paper
        assert any(len({v[n] for v in values}) > 1 for values in seen.values())
    return digests


def _memo_entries(env: object) -> int:
    return len(env._memo_store)  # type: ignore[attr-defined]


def _skeletons(env: object) -> int:
    """Jinja renders of a card partial with holes or tests: one per paper (and truths)."""
    return len(env._memo_skeletons)  # type: ignore[attr-defined]


def test_stock_cards_render_once_per_paper_whoever_gets_them() -> None:
    digests = _varied_cards()
    fast, full = Renderer(), Renderer(fast=False)
    for d in digests * 2:  # the second time round every card is replayed
        assert fast.render(d) == full.render(d), d.subscriber.email
    papers = {item.pick.paper.id for d in digests for item in d.items}
    cards = sum(len(d.items) for d in digests)
    # the HTML card's key is the paper and whether it has tags; the text card's the paper
    assert _skeletons(fast.fast_env) <= 2 * len(papers) < cards
    assert _skeletons(fast.text_env) == len(papers)


@pytest.mark.parametrize("partial", [
    # per-card values in control flow, filters and attributes
    '{% if card.rank > 3 %}<b class="late">{% endif %}{{ card.title }}'
    '{% if card.rank > 3 %}</b>{% endif %} <span class="r{{ card.rank }}">{{ card.tags|join }}'
    "</span>",
    "{{ card.tags|join(' / ')|upper }} {{ card.matched|wrap(20, 2) }} {{ card.topics|length }}"
    "{{ ' first' if card.rank == 1 else '' }}{% if not card.tags %} untagged{% endif %}",
    "{% if card.section %}<i>{{ card.section }}</i>{% elif card.rank is even %}even"
    "{% else %}{{ card.reasons|first if card.reasons else '-' }}{% endif %}",
    # read in a loop or beside a per-paper value: keyed by value, as before
    "{% for t in card.tags %}<u>{{ t }}</u>{% endfor %}{{ card.rank ~ card.title }}"
    "{% if card.upvotes and card.rank < 3 %} hot{% endif %}",
    "{% for c in card.claims %}{{ loop.index }}{{ card.rank }}{{ c }}{% endfor %}"
    "{{ card.tags[0] if card.tags else '' }}{{ card.matched[:12] }}",
    # no holes: a filter block sees the printed text
    "{% filter upper %}{{ card.rank }} {{ card.title }}{% endfilter %} {{ card.tags|join }}",
])
def test_card_holes_give_the_same_emails_for_overriding_partials(tmp_path: Path,
                                                                 partial: str) -> None:
    (tmp_path / "_paper.mjml").write_text(
        f"<mj-section><mj-column><mj-text>{partial}</mj-text></mj-column></mj-section>\n")
    (tmp_path / "_paper.txt").write_text(partial + "\n")  # the same, unescaped
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    digests = _varied_cards()
    for d in digests * 2:
        assert fast.render(d) == full.render(d), d.subscriber.email
    assert _memo_entries(fast.text_env)  # memoized, holes or not


def test_card_holes_inside_mjml_attributes_are_shape(tmp_path: Path) -> None:
    # a hole mrml reads (an <mj-*> attribute) goes back into the card's shape, per card
    (tmp_path / "_paper.mjml").write_text(
        '<mj-section padding="{{ card.rank * 2 }}px"><mj-column><mj-text '
        'color="{{ "#ff0000" if card.tags else "#000000" }}">{{ card.title }}</mj-text>'
        "</mj-column></mj-section>\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in _varied_cards():
        assert fast.render(d).html == full.render(d).html


def test_a_hole_that_raises_for_some_cards_raises_as_the_partial_does(tmp_path: Path) -> None:
    (tmp_path / "_paper.txt").write_text("{{ card.title }} {{ 12 // (card.rank - 2) }}\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    raised = 0
    for d in _varied_cards():
        try:
            expected = full.render(d)
        except TemplateError as exc:
            raised += 1
            with pytest.raises(TemplateError) as got:
                fast.render(d)
            assert str(got.value) == str(exc)
            assert "_paper.txt:1: ZeroDivisionError" in str(exc)
        else:
            assert fast.render(d) == expected
    assert raised


@pytest.mark.parametrize(("source", "reads", "tests", "holes"), [
    ("{{ card.rank }}. {{ card.title }}", ("title",), (), (("rank",),)),
    ("{% if card.tags %}{{ card.tags|join(', ') }}{% endif %}", (), (("tags",),), (("tags",),)),
    ("{{ 'a' if card.rank == 1 else card.title }}", ("title",), (("rank",),), ()),
    ("{% for t in card.tags %}{{ t }}{{ card.rank }}{% endfor %}", ("tags",), (), (("rank",),)),
    ("{{ card.rank ~ card.title }}", ("rank", "title"), (), ()),  # beside a per-paper value
    ("{{ card.section.upper }}", ("section",), (), ()),  # an attribute of a value
    ("{{ card.section['upper'] }}", ("section",), (), ()),  # a name: getattr's fallback
    ("{{ card.tags|map('upper')|join }}", ("tags",), (), ()),  # attributes by name
    ("{{ card.tags|sort(attribute='x')|join }}", ("tags",), (), ()),
    ("{% set x %}{{ card.rank }}{% endset %}{{ x }}", ("rank",), (), ()),  # text captured
    ("{% filter upper %}{{ card.rank }}{% endfilter %}", ("rank",), (), ()),
    ("\x02h0\x03{{ card.rank }}", ("rank",), (), ()),  # a hole's text in the source
])
def test_card_plan_takes_holes_and_tests_only_where_they_are_safe(
        source: str, reads: tuple[str, ...], tests: tuple[tuple[str, ...], ...],
        holes: tuple[tuple[str, ...], ...]) -> None:
    from digest.render._memo import card_plan
    from digest.render._renderer import _CARD_READS, _PER_CARD

    plan = card_plan(Renderer().fast_env, source, _CARD_READS, _PER_CARD)
    assert plan is not None
    assert (plan.reads, tuple(t[1] for t in plan.tests), tuple(h[1] for h in plan.holes)) \
        == (reads, tests, holes)
    assert (plan.skeleton is not None) == bool(holes)


def test_unsafe_card_partial_falls_back_to_a_full_render(tmp_path: Path) -> None:
    # card_plan refuses it (another variable): no memo, every card rendered in full
    (tmp_path / "_paper.txt").write_text("{{ card.rank }} {{ card.title }} {{ name }}\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    for d in _varied_cards()[:20]:
        assert fast.render(d) == full.render(d)
    assert not _memo_entries(fast.text_env)


def _greedy_wrap(text: str, width: int, indent: int) -> str:
    """The word-by-word greedy wrap ``wrap`` must equal: a word goes on the current line
    when it fits within ``width``, else starts the next one (a longer word stands alone)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def test_wrap_is_the_word_by_word_greedy_wrap() -> None:
    rnd = random.Random(16)
    words = ["a", "bb", "ccc", "é", "https://example.org/a/long/path", " ", "\t", "\n",
             "\u3000", "x" * 12]
    for _ in range(20_000):
        text = rnd.choice(["", " ", "  "]).join(rnd.choice(words)
                                                 for _ in range(rnd.randint(0, 25)))
        width, indent = rnd.randint(1, 30), rnd.randint(0, 6)
        assert wrap.__wrapped__(text, width, indent) == _greedy_wrap(text, width, indent), (
            text, width)


@pytest.mark.parametrize("fast", [True, False])
def test_subject_whitespace_is_one_space_between_words(tmp_path: Path, fast: bool) -> None:
    # every kind of whitespace a template or a value can hold (tab, form feed, the file
    # separators, NBSP, ideographic space) becomes one space, none at the ends
    odd = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u2000\u2028\u3000"
    (tmp_path / "subject.txt").write_text(
        f"{{{{ publisher }}}}{odd}{{{{ cards|length }}}}\n\n  papers{odd}\n", encoding="utf-8")
    digest = dataclasses.replace(fixed_digest(), publisher=f"{odd}My{odd}Digest{odd}")
    subject = Renderer(tmp_path, fast=fast).render(digest).subject
    assert subject == re.sub(r"\s+", " ", f"{odd}My{odd}Digest{odd}{odd}3\n\n  papers{odd}"
                             ).strip() == "My Digest 3 papers"
