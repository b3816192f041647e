"""The HTML pages of ``digest serve``: the unsubscribe confirm page, the preferences page, the
archive list, the "N more matched" page and the error pages. Pure: values in, an HTML string
out; every value is escaped.

Forms post back to the page's own URL (``action=""``): the signed token in the path is the
only credential (no cookie, no login, no JavaScript), which is also what makes them CSRF-safe:
another site cannot know the token. May import models and the ledger's row types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from urllib.parse import urlsplit

from digest.ledger import ArchivedEdition
from digest.models import LeftOut, Preferences
from digest.web._feedback import RatedEdition

MAX_PAPERS_LIMIT = 50  # the most papers a subscriber may ask for on the preferences page

_STYLE = """
:root{color-scheme:light dark;--fg:#1f2328;--muted:#57606a;--bg:#fff;--card:#f6f8fa;
--line:#d0d7de;--accent:#0969da;--danger:#cf222e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;
--card:#161b22;--line:#30363d;--accent:#4493f8;--danger:#f85149}}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);max-width:40rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.1rem;margin:0 0 .5rem}
p{margin:.5rem 0}.muted{color:var(--muted)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;
margin:1rem 0}
form{margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
label{font-weight:600}
input{font:inherit;min-height:44px;padding:.4rem .6rem;border:1px solid var(--line);
border-radius:6px;background:var(--bg);color:var(--fg)}
input[type=number]{width:6rem}
button{font:inherit;min-height:44px;min-width:44px;padding:.5rem 1rem;border-radius:6px;
border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:transparent;color:var(--accent)}
button.danger{border-color:var(--danger);background:var(--danger)}
.notice{border-left:4px solid var(--accent);padding:.5rem 1rem;background:var(--card)}
.error{border-left:4px solid var(--danger);padding:.5rem 1rem;background:var(--card)}
a{color:var(--accent)}ul{padding-left:1.2rem}li{margin:.3rem 0}
ol.rate{list-style:none;padding:0;margin:.5rem 0}ol.rate li{border-top:1px solid var(--line);
padding:.6rem 0}ol.rate li:first-child{border-top:0}.said{font-weight:600}
.verdicts{display:flex;flex-wrap:wrap;gap:0 .5rem}
ol.papers{list-style:none;padding:0;margin:1rem 0}
ol.papers li{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:.75rem 1rem;margin:.75rem 0;overflow-wrap:anywhere}
.tag{margin:0;font-size:.8rem;font-weight:600;letter-spacing:.04em;text-transform:uppercase;
color:var(--muted)}
.paper{display:block;margin:.2rem 0;font-size:1.05rem;font-weight:600;line-height:1.35}
a.paper{display:inline-block;min-height:24px}
"""


def page(title: str, body: str, *, feed_url: str | None = None) -> str:
    """A whole HTML document around ``body`` (already escaped HTML)."""
    feed = (f'<link rel="alternate" type="application/atom+xml" title="Your digests" '
            f'href="{escape(feed_url)}">' if feed_url else "")
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex, nofollow">'
            f"<title>{escape(title)}</title>{feed}<style>{_STYLE}</style></head>"
            f"<body><main>{body}</main></body></html>")


def not_found() -> str:
    return page("Link not valid", "<h1>This link is not valid</h1><p>It may be incomplete: "
                "open it again from the email, or reply to the email to reach us.</p>")


def bad_request(message: str) -> str:
    return page("Not understood", f"<h1>Not understood</h1><p>{escape(message)}</p>")


def _one_click_form(label: str) -> str:
    # The hidden field makes the browser's POST the very request RFC 8058 describes.
    return ('<form method="post" action="">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit" class="danger">{escape(label)}</button></form>')


def confirm_unsubscribe(email: str, list_name: str, preferences_url: str,
                        already: bool) -> str:
    """GET of the List-Unsubscribe URL: a question and a button, never an unsubscribe."""
    if already:
        return page("Unsubscribed", f"<h1>You are unsubscribed</h1><p>{escape(email)} gets no "
                    f"more digests from {escape(list_name)}.</p><p><a href=\""
                    f"{escape(preferences_url)}\">Your preferences</a></p>")
    return page(f"Unsubscribe from {list_name}?",
                f"<h1>Unsubscribe from {escape(list_name)}?</h1>"
                f"<p>{escape(email)} will get no more digests.</p>"
                f"{_one_click_form('Unsubscribe')}"
                f'<p class="muted">Only want fewer? <a href="{escape(preferences_url)}">Pause '
                "your digest or change how many papers it has</a>.</p>")


def unsubscribed(email: str, list_name: str, preferences_url: str) -> str:
    """The answer to the one-click POST (a mail client or the confirm page's button)."""
    return page("Unsubscribed", f"<h1>You are unsubscribed</h1><p>{escape(email)} gets no more "
                f"digests from {escape(list_name)}.</p><p class=\"muted\">Changed your mind? "
                f'<a href="{escape(preferences_url)}">Subscribe again</a>.</p>')


@dataclass(frozen=True)
class PreferencesView:
    """What the preferences page shows for one subscriber."""

    email: str
    list_name: str
    yaml_max_papers: int | None  # None: the YAML no longer lists this address
    chosen: Preferences | None
    today: date  # in the subscriber's timezone
    suppressed_by: str | None  # 'web', 'cli', ... when unsubscribed
    archive_url: str
    feed_url: str
    notice: str | None = None
    error: str | None = None
    rated: tuple[RatedEdition, ...] = ()  # recent editions' papers, for the feedback buttons
    edition_urls: tuple[str, ...] = ()  # each rated edition's "view in browser" path


def _button(action: str, label: str, cls: str = "") -> str:
    css = f' class="{cls}"' if cls else ""
    return (f'<form method="post" action=""><input type="hidden" name="action" value="{action}">'
            f"<button type=\"submit\"{css}>{escape(label)}</button></form>")


def preferences(v: PreferencesView) -> str:
    parts = [f"<h1>Your {escape(v.list_name)}</h1><p class=\"muted\">for {escape(v.email)}</p>"]
    if v.notice:
        parts.append(f'<p class="notice" role="status">{escape(v.notice)}</p>')
    if v.error:
        parts.append(f'<p class="error" role="alert">{escape(v.error)}</p>')
    if v.suppressed_by is not None:
        again = (_button("resubscribe", "Subscribe again") if v.suppressed_by == "web" else
                 "<p>To get digests again, reply to any of them.</p>")
        parts.append(f"<section><h2>You are unsubscribed</h2><p>No digests are sent to this "
                     f"address.</p>{again}</section>")
    elif v.yaml_max_papers is None:
        parts.append("<section><h2>Not subscribed</h2><p>This address is no longer on the list."
                     "</p></section>")
    else:
        chosen = v.chosen or Preferences(email=v.email)
        paused = chosen.paused_until if chosen.paused_on(v.today) else None
        if paused is not None:
            parts.append(f"<section><h2>Paused</h2><p>Your next digest comes on or after "
                         f"<strong>{paused.isoformat()}</strong>.</p>"
                         f"{_button('resume', 'Resume now')}</section>")
        else:
            first = date.fromordinal(v.today.toordinal() + 1).isoformat()
            last = date.fromordinal(v.today.toordinal() + 366).isoformat()
            parts.append(
                '<section><h2>Pause</h2><form method="post" action="">'
                '<input type="hidden" name="action" value="pause">'
                '<label for="until">No digests until</label>'
                f'<input type="date" id="until" name="until" required min="{first}" '
                f'max="{last}"><button type="submit">Pause</button></form></section>')
        count = chosen.max_papers or v.yaml_max_papers
        reset = (_button("max_papers_default", f"Back to the default ({v.yaml_max_papers})",
                         "secondary") if chosen.max_papers is not None else "")
        parts.append(
            '<section><h2>Papers per digest</h2><form method="post" action="">'
            '<input type="hidden" name="action" value="max_papers">'
            '<label for="max_papers">At most</label>'
            f'<input type="number" id="max_papers" name="max_papers" min="1" '
            f'max="{MAX_PAPERS_LIMIT}" value="{count}" required>'
            f'<button type="submit">Save</button></form>{reset}</section>')
        parts.append(_feedback(v))
        parts.append(f"<section><h2>Unsubscribe</h2><p>Stop all digests to this address.</p>"
                     f"{_button('unsubscribe', 'Unsubscribe', 'danger')}</section>")
    parts.append(f'<p><a href="{escape(v.archive_url)}">Past digests</a> · '
                 f'<a href="{escape(v.feed_url)}">Atom feed</a></p>')
    return page(f"Your {v.list_name}", "".join(parts), feed_url=v.feed_url)


_SAID = {"more": "You asked for more like this.", "less": "You asked for less like this."}


def _verdict_button(paper_id: str, verdict: str, label: str, said: str | None) -> str:
    pressed = "true" if said == verdict else "false"
    cls = "" if said == verdict else ' class="secondary"'  # the chosen one is filled
    return (f'<form method="post" action=""><input type="hidden" name="action" '
            f'value="{verdict}"><input type="hidden" name="paper" value="{escape(paper_id)}">'
            f'<button type="submit"{cls} aria-pressed="{pressed}">{escape(label)}</button>'
            "</form>")


def _feedback(v: PreferencesView) -> str:
    """The papers of the recent editions, each with "More like this" / "Less like this"."""
    if not v.rated:
        return ""
    items = []
    for edition, url in zip(v.rated, v.edition_urls, strict=True):
        for rated in edition.papers:
            paper = rated.paper
            said = (f'<p class="said" role="status">{escape(_SAID[rated.verdict])}</p>'
                    if rated.verdict in _SAID else "")
            more = _verdict_button(paper.id, "more", "More like this", rated.verdict)
            less = _verdict_button(paper.id, "less", "Less like this", rated.verdict)
            items.append(
                f'<li id="paper-{escape(paper.id)}"><strong>{escape(paper.title or paper.id)}'
                f'</strong> <span class="muted">(<a href="{escape(url)}">'
                f"{edition.edition.isoformat()}</a>)</span>{said}"
                f'<div class="verdicts">{more}{less}</div></li>')
    return ('<section id="rate"><h2>Recent papers</h2><p class="muted">Liked papers bring '
            "similar ones up in your next digests; papers like a disliked one rank lower. "
            f"The last choice on a paper counts.</p><ol class=\"rate\">{''.join(items)}</ol>"
            "</section>")


def archive(email: str, list_name: str, editions: Sequence[tuple[ArchivedEdition, str, str]],
            feed_url: str, preferences_url: str) -> str:
    """The list of past digests: (edition, subject, its URL) newest first."""
    if editions:
        items = "".join(f'<li><a href="{escape(url)}">{escape(subject)}</a> '
                        f'<span class="muted">{e.edition.isoformat()}</span></li>'
                        for e, subject, url in editions)
        body = f"<ul>{items}</ul>"
    else:
        body = "<p>No digest has been archived yet.</p>"
    return page(f"Past digests - {list_name}",
                f"<h1>Past digests</h1><p class=\"muted\">for {escape(email)}</p>{body}"
                f'<p><a href="{escape(feed_url)}">Atom feed</a> · '
                f'<a href="{escape(preferences_url)}">Preferences</a></p>', feed_url=feed_url)


def _link(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL (the ledger stores only those, through the
    renderer's check; checked again here, since this page writes it into an ``href``)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def left_out(email: str, list_name: str, sent: date, matches: Sequence[LeftOut],
             edition_url: str, archive_url: str, preferences_url: str) -> str:
    """"N more matched": the matches the edition of ``sent`` left out, as frozen when it was
    sent (title linked to the paper's page, authors, the reason tags)."""
    items = []
    for m in matches:
        url = _link(m.url)
        title = (f'<a class="paper" href="{escape(url)}">{escape(m.title)}</a>' if url else
                 f'<span class="paper">{escape(m.title)}</span>')
        tags = f'<p class="tag">{escape(", ".join(m.tags))}</p>' if m.tags else ""
        authors = f'<p class="muted">{escape(m.authors)}</p>' if m.authors else ""
        items.append(f"<li>{tags}{title}{authors}</li>")
    count = len(matches)
    day = f"{sent.strftime('%A')} {sent.day} {sent.strftime('%B')} {sent.year}"
    return page(
        f"{count} more matched - {list_name}",
        f"<h1>{count} more matched</h1>"
        f'<p class="muted">Papers that matched your topics on {escape(day)} but did not fit '
        f"in that digest, for {escape(email)}.</p>"
        f'<ol class="papers">{"".join(items)}</ol>'
        f'<p><a href="{escape(edition_url)}">That digest</a> · '
        f'<a href="{escape(archive_url)}">Past digests</a> · '
        f'<a href="{escape(preferences_url)}">More papers per digest</a></p>')
