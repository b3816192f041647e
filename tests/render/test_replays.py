"""The fast path's per-email savings checked byte for byte against full renders: templates
replayed by the plain values they read (the subject), the frame's parts shaped without the
card memo, a card's values read once, record_finalize's one-lookup strings."""

from __future__ import annotations

import dataclasses
import functools
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.compose import build_digest, edition_for, summarize_all
from digest.errors import TemplateError
from digest.feeds import sample_papers
from digest.models import Digest, Settings, Subscriber, Topic
from digest.render import Renderer
from digest.render._keyed import KeyedOutputs, template_reads
from digest.render._renderer import Card, context
from digest.render._record import compile_mjml, render_recorded
from digest.render._shapes import _all_holes, _is_hole, _written
from digest.selection import Selector

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
TERMS = ["diffusion", "language model", "transformer", "reinforcement learning", "video",
         "attention", "benchmark", "agent", "reasoning", "quantization", "robot", "3D",
         "speech", "retrieval", "multimodal", "segmentation", "LLM", "efficient", "vision"]


@functools.lru_cache(maxsize=None)
def send_digests(count: int = 150) -> tuple[Digest, ...]:
    """Digests as a send builds them (the bundled sample papers, subscribers with 1-3 topics
    and 3-10 papers, as bench/bench_send.py's), with names unique, absent or hostile and some
    unsubscribe, manage and web-page links."""
    rnd = random.Random(20261125)
    papers = sample_papers()
    summaries = summarize_all(papers, 350)
    selector = Selector(papers)
    settings = Settings(sender="Paper Digest <digest@example.org>")
    out = []
    for i in range(count):
        topics = tuple(Topic(name=f"topic {k}", include=tuple(rnd.sample(TERMS, rnd.randint(1, 3))))
                       for k in range(rnd.randint(1, 3)))
        name = rnd.choice([f"Reader {i}", None, "Grace <Hopper> & Co", "Zoë\r\nX"])
        sub = Subscriber(email=f"reader{i:05d}@example.org", name=name, timezone="UTC",
                         schedule="0 7 * * *", max_papers=rnd.randint(3, 10), topics=topics)
        d = build_digest(selector.select(sub), summaries, edition_for(sub, NOW), NOW, settings)
        if i % 3 == 0:
            d = dataclasses.replace(d, unsubscribe_url=f"https://example.org/u/{i}?a=1&b=<2>",
                                    manage_url="https://example.org/topics",
                                    view_url=f"https://example.org/v/{i}",
                                    preferences_url=f"https://example.org/p/{i}")
        out.append(d)
    assert len({len(d.items) for d in out}) >= 4
    return tuple(out)


def _same(fast: Renderer, full: Renderer, digests: tuple[Digest, ...]) -> None:
    for d in digests:
        try:
            expected = full.render(d)
        except TemplateError as exc:
            with pytest.raises(TemplateError) as got:
                fast.render(d)
            assert str(got.value) == str(exc)
        else:
            assert fast.render(d) == expected, d.subscriber.email


def test_stock_templates_give_the_full_renders_emails_on_a_send() -> None:
    digests = send_digests()
    fast, full = Renderer(), Renderer(fast=False)
    _same(fast, full, digests * 2)  # the second time round, subjects and cards are replayed
    # the subject is rendered once per distinct count, topics and day, not once per email
    kept = len(fast._keyed._outputs)
    assert 0 < kept < len(digests) / 2
    assert len({fast.render(d).subject for d in digests}) == kept


def test_a_forgotten_card_stand_in_is_still_known_to_the_shaper() -> None:
    # the card memo started over but the shaper knows the printed parts: no expansion
    # needed, the same emails, no compile
    digests = send_digests()[:60]
    fast, full = Renderer(), Renderer(fast=False)
    for d in digests:
        fast.render(d)
    fast.fast_env._memo_texts.clear()  # type: ignore[attr-defined]
    compiles = fast.cache.compiles
    _same(fast, full, digests)
    assert fast.cache.compiles == compiles


@pytest.mark.parametrize(("subject", "memoized"), [
    ("{{ cards|length }} new on {{ topics[:2]|join(', ') }} - {{ edition|day }}", True),
    ("{{ name or 'Reader' }}: {% if cards %}{{ cards|length }}{% else %}no{% endif %} papers"
     "{{ ' (' ~ more ~ ' more)' if more }}", True),
    ("{{ (name ~ ' ' ~ topics|length)|upper|wrap(20) }} {{ edition|long_date }}", True),
    # an attribute, a loop, an assignment: refused, rendered per email
    ("{{ subscriber.email }}: {{ cards|length }}", False),
    ("{% for t in topics %}{{ t }} {% endfor %}", False),
    ("{% set n = cards|length %}{{ n }} papers", False),
    ("{{ topics|reverse|join(', ') }}", False),  # reverse gives an iterator: not listed
    ("{{ topics|join(', ', attribute='upper') }}", False),  # fetched by name
    ("{{ range(3)|list }} {{ cards|length }}", False),  # a call
    # proven, but a value is not plain when the email is rendered: rendered
    ("{{ digest|string|length }} characters", False),
    ("{{ card_marker }}{{ cards|length }}", False),
])
def test_overriding_subjects_give_the_full_renders_subjects(tmp_path: Path, subject: str,
                                                            memoized: bool) -> None:
    (tmp_path / "subject.txt").write_text(subject + "\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    _same(fast, full, send_digests()[:80] * 2)
    assert bool(fast._keyed._outputs) == memoized


def test_a_memoized_subject_that_raises_for_some_values_raises_every_time(
        tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("{{ 12 // (cards|length - 3) }} papers\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    digests = send_digests()[:80]
    assert any(len(context(d)["cards"]) == 3 for d in digests)
    _same(fast, full, digests * 2)
    assert fast._keyed._outputs  # the others are replayed
    with pytest.raises(TemplateError, match=r"subject\.txt:1: ZeroDivisionError"):
        fast.render(next(d for d in digests if len(context(d)["cards"]) == 3))


def test_an_overriding_text_part_that_reads_plain_values_is_replayed(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text(
        "{{ publisher|upper }}\n{{ cards|length }} papers on {{ topics|join(', ') }}\n"
        "{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}{% endif %}\n")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    _same(fast, full, send_digests() * 2)
    texts = {fast.render(d).text for d in send_digests()}
    assert len(fast._keyed._outputs) >= len(texts) > 1


@pytest.mark.parametrize(("source", "reads"), [
    ("{% if cards %}{{ cards|length }} on {{ topics|join }}{% endif %} {{ edition|day }}",
     (("bool", "cards"), ("len", "cards"), ("value", "edition"), ("value", "topics"))),
    ("{{ 'a' if name else 'b' }}{{ topics[0] }}{{ topics[1:] }}",
     (("bool", "name"), ("value", "topics"))),
    ("{{ name is none }} {{ more > 3 and more_url }}", (
        ("value", "more"), ("value", "more_url"), ("value", "name"))),
    ("plain text only", ()),
    ("{{ subscriber.email }}", None),  # an attribute
    ("{{ topics['count'] }}", None),  # a name: getattr's fallback prints a bound method
    ("{{ topics[:more] }}", None),
    ("{{ topics|batch(2) }}", None),  # a generator prints its address
    ("{{ topics|random }}", None),
    ("{{ topics|map('upper')|join }}", None),
    ("{{ topics|sort(false, false, 'x')|join }}", None),  # attribute, positionally
    ("{{ topics|join(*more) }}", None),
    ("{{ name is sameas more }}", None),  # identity, not value
    ("{{ lipsum() }}", None),
    ("{{ self }}", None),
    ("{% for t in topics %}{{ loop.index }}{% endfor %}", None),
    ("{% extends 'stock/subject.txt' %}", None),
    ("{% include 'stock/subject.txt' %}", None),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", None),
    ("{% filter upper %}{{ name }}{% endfilter %}", None),
    ("{% if %}", None),  # a syntax error: the real render reports it
])
def test_template_reads_vouches_only_for_plain_projections(
        source: str, reads: tuple[tuple[str, str], ...] | None) -> None:
    assert template_reads(Renderer().text_env, source) == reads


def test_keyed_outputs_are_bounded() -> None:
    keyed = KeyedOutputs()
    keyed.MAX_ENTRIES, keyed.MAX_CHARS = 3, 50  # type: ignore[misc]
    for n in range(10):
        keyed.keep(("t", n), "x" * 10)
        assert len(keyed._outputs) <= 3
    for n in range(10):
        keyed.keep(("u", n), "y" * 30)
        assert sum(map(len, keyed._outputs.values())) <= 50


@pytest.mark.parametrize("values", [
    ("a", "b c"), ("a", ""), ("a", " \t\n"), ("\u3000",), ("\u00a0x",), ("a<b",), ("a>",),
    ("zqpd",), ("zq", "pd"), ("a\x00", "zqpd"), ("x\x00",), ("\x1c",), ("\u2028",), (),
    ("&amp;", "Zoë"),
])
def test_all_holes_is_all_of_is_hole(values: tuple[str, ...]) -> None:
    assert _all_holes(values) == all(map(_is_hole, values))
    assert _all_holes(list(values)) == all(map(_is_hole, values))
    assert _all_holes(values, "\x00".join(values)) == all(map(_is_hole, values))


def test_card_values_are_read_once_and_cards_stay_plain_values() -> None:
    d = next(d for d in send_digests() if d.items)
    card = context(d)["cards"][0]
    same = Card(card.item, card.rank, card.section)
    assert card.tags is card.tags and card.matched is card.matched  # worked out once
    assert card.reasons == same.reasons and card.url == same.url
    assert card == same and repr(card) == repr(same) and hash(card) == hash(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.rank = 2  # type: ignore[misc]
    assert Card.tags.__doc__ and "topic" in Card.tags.__doc__


# --------------------------------------------------------------------------- the frame's trace


def _traced_everywhere(fast: Renderer, digests: tuple[Digest, ...]) -> bool:
    """Every email's HTML frame taken from its trace (none rendered by the template itself)."""
    template = fast._template(fast.fast_env, "digest.mjml")
    frame = fast._frame(template)
    if frame is None:
        return False
    for d in digests:
        ctx = context(d)
        traced = frame.trace(lambda values: fast._run(values, ctx))
        if traced is None or frame.texts(traced) is None:
            return False
    return True


_FOOTER = ('{% block footer %}<mj-text><p>{{ publisher }}{% if sender_address %} at '
           '{{ sender_address }}{% endif %} to {{ subscriber.email }}</p>'
           '{% if unsubscribe_url %}<p><a href="{{ unsubscribe_url }}">Leave</a></p>{% elif '
           'manage_url %}<p>{{ manage_url }}</p>{% else %}<p>Reply.</p>{% endif %}</mj-text>'
           '{% endblock %}')
_CARDS = ('{% block cards %}{% for card in cards %}{{ card_marker }}{% include "_paper.mjml" %}'
          '{% endfor %}{{ card_marker }}{% endblock %}')


@pytest.mark.parametrize("override", [
    None,
    f'{{% extends "stock/digest.mjml" %}}\n{_FOOTER}\n',
    f'{{% extends "stock/digest.mjml" %}}\n{_CARDS}\n{_FOOTER}\n',
    # branches in the head (elif) and in the tail
    '{% extends "stock/digest.mjml" %}{% block more %}{% if more %}<mj-text>{{ more }} / '
    "{{ title }}</mj-text>{% endif %}{% endblock %}{% block header %}<mj-section><mj-column>"
    "{% if name %}<mj-text>{{ name|upper }}</mj-text>{% elif cards|length > 3 %}<mj-text>"
    "Many</mj-text>{% endif %}</mj-column></mj-section>{% endblock %}",
])
def test_the_html_frame_is_taken_from_its_trace(tmp_path: Path, override: str | None) -> None:
    if override is not None:
        (tmp_path / "digest.mjml").write_text(override, encoding="utf-8")
    folder = tmp_path if override is not None else None
    fast, full = Renderer(folder), Renderer(folder, fast=False)
    digests = send_digests()[:60]
    _same(fast, full, digests * 2)
    assert _traced_everywhere(fast, digests)


@pytest.mark.parametrize("block", [
    "{% block footer %}{% set x = subscriber.email %}<mj-text>{{ x }}</mj-text>{% endblock %}",
    "{% block footer %}{{ super() }}<mj-text>more</mj-text>{% endblock %}",
    "{% block header %}{{ card_marker }}{% endblock %}",  # a second card marker
    "{% block more %}<mj-text>{% for t in topics %}{{ t }} {% endfor %}</mj-text>{% endblock %}",
    "{% block cards %}{% for card in cards %}{{ card_marker }}{% include '_paper.mjml' %}"
    "{% else %}<mj-text>none</mj-text>{% endfor %}{{ card_marker }}{% endblock %}",
    "{% block footer %}{% macro m(x) %}{{ x }}{% endmacro %}<mj-text>{{ m(publisher) }}"
    "</mj-text>{% endblock %}",
    "{% block footer %}<mj-text>{{ self.more() }}</mj-text>{% endblock %}",
    "{% block footer %}<mj-text>{{ [publisher]|random }}</mj-text>{% endblock %}",
    "{% block footer %}<mj-text>\x04 0\x05{{ publisher }}</mj-text>{% endblock %}",
])
def test_a_frame_the_trace_cannot_stand_for_renders_as_it_is(tmp_path: Path, block: str) -> None:
    (tmp_path / "digest.mjml").write_text(f'{{% extends "stock/digest.mjml" %}}\n{block}\n',
                                          encoding="utf-8")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    digests = send_digests()[:12]
    if "random" not in block:
        _same(fast, full, digests)
    assert not _traced_everywhere(fast, digests)


def test_text_between_the_loop_and_its_card_marker_is_not_traced(tmp_path: Path) -> None:
    # it belongs to the last card's part, which the trace takes from the loop alone
    (tmp_path / "digest.mjml").write_text(
        '{% extends "stock/digest.mjml" %}{% block cards %}{% for card in cards %}'
        "{{ card_marker }}{% include '_paper.mjml' %}{% endfor %}<mj-section><mj-column>"
        "<mj-text>after</mj-text></mj-column></mj-section>{{ card_marker }}{% endblock %}",
        encoding="utf-8")
    assert not _traced_everywhere(Renderer(tmp_path), send_digests()[:4])


@pytest.mark.parametrize("safe", [False, True])
def test_a_value_that_looks_like_a_trace_is_not_taken_for_one(tmp_path: Path, safe: bool) -> None:
    # printed text holding markers passes through as it is (record_finalize): a trace that
    # holds it must not be read as the tokens and markers it imitates
    if safe:
        (tmp_path / "digest.mjml").write_text(
            '{% extends "stock/digest.mjml" %}{% block header %}<mj-text>{{ name|safe }}'
            "{{ publisher }}</mj-text>{% endblock %}", encoding="utf-8")
    folder = tmp_path if safe else None
    fast, full = Renderer(folder), Renderer(folder, fast=False)
    names = ["\x020\x03", "\x04 0\x05\x020\x03", "\x04s\x05", "a\x01b", "\x021\x03\x04 3\x05",
             "\x02m0\x03", None, "Ada"]
    digests = tuple(
        dataclasses.replace(d, subscriber=dataclasses.replace(d.subscriber, name=name))
        for d in send_digests()[:24] for name in names)
    _same(fast, full, digests * 2)


# --------------------------------------------------------------------------- cards side by side

_SECTION = "<mj-section><mj-column><mj-text>{}</mj-text></mj-column></mj-section>"
_INCLUDE = "{{ card_marker }}{% include '_paper.mjml' %}"


def _orders(digests: tuple[Digest, ...]) -> tuple[Digest, ...]:
    """The digests, and some of them with their cards reversed, cut to one or to none."""
    out = []
    for i, d in enumerate(digests):
        out.append(d)
        if i % 3 == 1:
            out.append(dataclasses.replace(d, items=d.items[::-1]))
        if i % 4 == 2:
            out.append(dataclasses.replace(d, items=d.items[:1]))
        if i % 5 == 3:
            out.append(dataclasses.replace(d, items=()))
    return tuple(out)


@pytest.mark.parametrize("cards", [
    # text after the loop, before its card marker: it ends the last card's part
    f"{{% for card in cards %}}{_INCLUDE}{{% endfor %}}{_SECTION.format('after')}"
    "{{ card_marker }}",
    # ... and with an else
    f"{{% for card in cards %}}{_INCLUDE}{{% else %}}{_SECTION.format('none')}{{% endfor %}}"
    f"{_SECTION.format('after {{ cards|length }}')}{{{{ card_marker }}}}",
    # printed inside the loop after the include: every card's part ends without a line break
    f"{{% for card in cards %}}{_INCLUDE}{_SECTION.format('{{ card.rank }} of {{ cards|length }}')}"
    "{% endfor %}{{ card_marker }}",
    # ... after some cards only
    f"{{% for card in cards %}}{_INCLUDE}{{% if loop.index is even %}}{_SECTION.format('even')}"
    "{% endif %}{% endfor %}{{ card_marker }}",
    # before the first card inside the loop (the head's part), an else of the loop
    f"{{% for card in cards %}}{{% if loop.first %}}{_SECTION.format('first')}{{% endif %}}"
    f"{_INCLUDE}{{% else %}}{_SECTION.format('none')}{{% endfor %}}{{{{ card_marker }}}}",
])
def test_text_around_the_cards_gives_the_full_renders_emails(tmp_path: Path, cards: str) -> None:
    (tmp_path / "digest.mjml").write_text(
        f'{{% extends "stock/digest.mjml" %}}{{% block cards %}}{cards}{{% endblock %}}',
        encoding="utf-8")
    digests = _orders(send_digests()[:24])
    assert len({len(d.items) for d in digests}) >= 5
    # a new renderer: the first emails are the ones a card new to the frame can move
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    _same(fast, full, digests)
    fast = Renderer(tmp_path)
    _same(fast, full, digests[::-1] * 2)


@pytest.mark.parametrize("run", ["", " ", "  ", "\t", "\n", "\n    ", "\n\t \n", " \n", "\t\n  "])
def test_mrml_writes_whitespace_between_parts_as_the_join_rule_says(run: str) -> None:
    # _joins reads what mrml writes for a whitespace-only text node from the node alone:
    # nothing when it starts with a line break, else the node as it is; between sections,
    # between a column's children and in mj-text alike
    def body(inner: str) -> str:
        html = compile_mjml(f"<mjml><mj-body>{inner}</mj-body></mjml>", "test")
        return html[html.index("<body"):]
    for a, b, wrap in [(_SECTION.format("a"), _SECTION.format("b"), "{}"),
                       ("<mj-text>a</mj-text>", "<mj-text>b</mj-text>",
                        "<mj-section><mj-column>{}</mj-column></mj-section>"),
                       ("<p>a</p>", "<p>b</p>", _SECTION)]:
        apart, together = body(wrap.format(a + run + b)), body(wrap.format(a + b))
        written = _written(run)
        assert written == ("" if run.startswith("\n") or not run else run)
        at = next((i for i, (x, y) in enumerate(zip(apart, together)) if x != y), len(together))
        assert apart == together[:at] + written + together[at:]


def _composed(fast: Renderer, d: Digest) -> bool:
    """The email's HTML made of its card units (not compiled in full), and the full render's."""
    template = fast._template(fast.fast_env, "digest.mjml")
    recorded = render_recorded(lambda: fast._run(template, context(d)))
    assert recorded is not None
    parts = fast.shaper.parts(recorded[0], recorded[1], fast._expand)
    html = None if parts is None else fast.cache.html(parts)
    if html is not None:
        assert html == fast.html(context(d))
    return html is not None


def test_stock_cards_are_joined_on_the_fast_path() -> None:
    # every stock part starts and ends with nothing or a line break: no email is refused
    fast, full = Renderer(), Renderer(fast=False)
    digests = [d for d in send_digests()[:40] if len(d.items) > 1]
    for d in digests:
        assert _composed(fast, d)
        assert fast.render(d) == full.render(d)


_COLUMN = "<mj-column><mj-text>{{ card.title }}</mj-text></mj-column>\n"


@pytest.mark.parametrize("cards", [
    # columns of one section share its width: never composed from units
    f"<mj-section>{{% for card in cards %}}{{{{ card_marker }}}}{_COLUMN}{{% endfor %}}"
    "{{ card_marker }}</mj-section>\n",
    f"<mj-section><mj-group>{{% for card in cards %}}{{{{ card_marker }}}}{_COLUMN}"
    "{% endfor %}{{ card_marker }}</mj-group></mj-section>\n",
    # a card that ends its column and starts the next
    "<mj-section><mj-column>{% for card in cards %}{{ card_marker }}<mj-text>{{ card.title }}"
    "</mj-text></mj-column><mj-column>\n{% endfor %}{{ card_marker }}</mj-column></mj-section>\n",
    # a wrapper's sections, a column's children: composed
    '<mj-wrapper padding="4px">{% for card in cards %}{{ card_marker }}'
    "{% include '_paper.mjml' %}{% endfor %}{{ card_marker }}</mj-wrapper>\n",
    "<mj-section><mj-column>{% for card in cards %}{{ card_marker }}<mj-text>{{ card.title }}"
    "</mj-text>\n<mj-divider />\n{% endfor %}{{ card_marker }}</mj-column></mj-section>\n",
], ids=["columns", "group", "unbalanced", "wrapper", "column-children"])
def test_cards_compose_only_where_each_compiles_alone(tmp_path: Path, cards: str) -> None:
    (tmp_path / "digest.mjml").write_text(
        f'{{% extends "stock/digest.mjml" %}}{{% block cards %}}{cards}{{% endblock %}}',
        encoding="utf-8")
    fast, full = Renderer(tmp_path), Renderer(tmp_path, fast=False)
    digests = _orders(send_digests()[:20])
    _same(fast, full, digests)
    several = [d for d in digests if len(d.items) > 1]
    assert [_composed(fast, d) for d in several] == [
        "wrapper" in cards or "divider" in cards] * len(several)
