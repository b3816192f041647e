"""Benchmark message building: the stock ``EmailMessage`` path next to ``digest.mailer``.

    .venv/bin/python bench/bench_mime.py [--n 1000]      (also: what DKIM signing adds)

Inputs: a real digest rendered by the project's own pipeline from the bundled sample papers
(selector, summarizer, MJML renderer), and a synthetic CJK digest of the same shape (to exercise
the base64 path and encoded-word headers). Both builders produce the same headers and parts.
Each is timed building and serializing messages (stock ``--n``/10, ours ``--n``; best of 3
rounds, CPU time), and our bytes are checked to parse back (``email.message_from_bytes``,
policy=default) to the same subject and parts. Prints one table, then the outbox's fsync'd
Maildir write rate with one writer and with the pool the outbox asks for.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402

from digest.delivery import OutgoingMessage, build_message, generate_key
from digest.delivery._dkim import SIGNED_HEADERS
from digest.delivery._message import make_message_id, parse_sender
from digest.delivery._transports import OUTBOX_WRITERS, MaildirOutbox
from digest.models import (  # noqa: E402
    Digest,
    DkimKey,
    DkimSettings,
    RenderedEmail,
    Settings,
    Subscriber,
    Topic,
)

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
SETTINGS = Settings(sender="Paper Digest <digest@example.org>", list_id="papers.example.org")


def real_digest() -> tuple[RenderedEmail, Digest, str]:
    """One subscriber's edition through the real pipeline (falls back to a synthetic one)."""
    sub = Subscriber(email="ana.mueller@example.org", name="Ana Müller", timezone="UTC",
                     schedule="0 7 * * *", max_papers=8,
                     topics=(Topic(name="LLMs", include=("language model", "llm",
                                                         "reasoning", "diffusion")),))
    try:
        from digest.compose import build_digest, summarize_all
        from digest.feeds import sample_papers
        from digest.render import Renderer
        from digest.selection import Selector

        papers = sample_papers()
        selection = Selector(papers).select(sub)
        summaries = summarize_all([p.paper for p in selection.picks], SETTINGS.summary_chars)
        digest = build_digest(selection, summaries, date(2026, 11, 25), NOW, SETTINGS)
        return Renderer().render(digest), digest, f"real digest ({len(digest.items)} papers)"
    except Exception as exc:  # another stage mid-edit: still measure the writer
        print(f"(pipeline unavailable: {exc!r}; using a synthetic digest)", file=sys.stderr)
        rendered = RenderedEmail(
            subject="Your papers for Wed 25 Nov: 8 new on LLMs",
            html="<html><body>" + "<table><tr><td style=\"padding:8px\">A paper título "
                 "with a summary of its key claims and results.</td></tr></table>" * 200
                 + "</body></html>",
            text="A paper title\n  Key claim: it works better.\n" * 40, papers=())
        digest = Digest(subscriber=sub, edition=date(2026, 11, 25), generated_at=NOW, items=())
        return rendered, digest, "synthetic digest"


def cjk_digest(template: RenderedEmail, digest: Digest) -> tuple[RenderedEmail, Digest, str]:
    sub = Subscriber(email="tanaka@example.jp", name="田中 太郎", timezone="Asia/Tokyo",
                     schedule="0 7 * * *", max_papers=8, topics=())
    phrase = "大規模言語モデルの推論能力に関する研究。"
    rendered = RenderedEmail(
        subject="本日の論文ダイジェスト: 大規模言語モデル 8件",
        html=("<p>" + phrase * 4 + "</p>\n") * (len(template.html) // 250),
        text=(phrase * 3 + "\n") * (len(template.text) // 100 + 1), papers=())
    return rendered, Digest(subscriber=sub, edition=digest.edition, generated_at=NOW,
                            items=()), "synthetic CJK digest"


def stock_build(rendered: RenderedEmail, digest: Digest, settings: Settings) -> bytes:
    """The same message with the standard library's EmailMessage (policy=SMTP)."""
    sub = digest.subscriber
    _, sender_addr = parse_sender(settings.sender)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = settings.sender
    msg["To"] = Address(display_name=sub.name or "", addr_spec=sub.email)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(NOW)
    msg["Message-ID"] = make_message_id(sub.email, digest.edition, "example.org")
    msg["List-Id"] = f"<{settings.list_id}>"
    msg["List-Unsubscribe"] = f"<mailto:{sender_addr}?subject=unsubscribe>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg.as_bytes()


def ours_build(rendered: RenderedEmail, digest: Digest, settings: Settings) -> bytes:
    return build_message(rendered, digest, settings, now=NOW).data


def best_of(fn: Callable[[], object], n: int, rounds: int = 3) -> float:
    """Best CPU seconds per call over ``rounds`` rounds of ``n`` calls. CPU time, not wall
    time: building is single-threaded and CPU-bound, and on a shared machine the wall clock
    mostly measures the neighbours."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n)
    return best


def outbox_rate(msg: OutgoingMessage, writers: int, count: int, where: str | None
                ) -> tuple[int, float]:
    """(messages written, seconds) for ``writers`` threads sharing one MaildirOutbox."""
    each = max(1, count // writers)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        outbox = MaildirOutbox(Path(tmp))
        threads = [threading.Thread(target=lambda: [outbox.send(msg) for _ in range(each)])
                   for _ in range(writers)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return each * writers, time.perf_counter() - start


def round_trips(data: bytes, rendered: RenderedEmail) -> bool:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    parts = [p.get_content().replace("\r\n", "\n") for p in msg.iter_parts()]
    want = [s.replace("\r\n", "\n") for s in (rendered.text, rendered.html)]
    return bool(msg["Subject"] == rendered.subject and parts == want)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="messages per round (ours)")
    parser.add_argument("--outbox-dir", default=None,
                        help="where to time Maildir writes (default: the temp dir)")
    args = parser.parse_args()
    real = real_digest()
    cases = [real, cjk_digest(real[0], real[1])]
    rows = []
    for rendered, digest, label in cases:
        stock = best_of(lambda: stock_build(rendered, digest, SETTINGS), max(1, args.n // 10))
        ours = best_of(lambda: ours_build(rendered, digest, SETTINGS), args.n)
        data = ours_build(rendered, digest, SETTINGS)
        rows.append((label, len(rendered.html) + len(rendered.text), stock, ours,
                     len(stock_build(rendered, digest, SETTINGS)), len(data),
                     round_trips(data, rendered)))
    header = ("input", "chars", "stock CPU ms", "stock msg/s", "ours CPU ms", "ours msg/s",
              "speed-up", "stock bytes", "ours bytes", "parses back")
    table = [header] + [
        (label, f"{chars:,}", f"{stock * 1e3:.3f}", f"{1 / stock:,.0f}", f"{ours * 1e3:.3f}",
         f"{1 / ours:,.0f}", f"{stock / ours:.1f}x", f"{sb:,}", f"{ob:,}", "yes" if ok else "NO")
        for label, chars, stock, ours, sb, ob, ok in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    # What settings.dkim adds to each build: one RSA 2048 signature, then RSA plus Ed25519,
    # against the unsigned build of the same real digest; and the plain alternative, the same
    # build then dkimpy's own dkim.sign (pure-Python RSA), with the same headers signed.
    rendered, digest, _ = cases[0]
    rsa, ed = generate_key("rsa"), generate_key("ed25519")
    keys = (DkimKey("rsa-sha256", "s1", Path("s1"), rsa.private_key),
            DkimKey("ed25519-sha256", "e1", Path("e1"), ed.private_key))
    plain = best_of(lambda: ours_build(rendered, digest, SETTINGS), args.n)
    print("\nDKIM (settings.dkim), CPU ms per message on the real digest:")
    print(f"  unsigned                          {plain * 1e3:7.3f}")
    for label, chosen in (("RSA 2048", keys[:1]), ("RSA 2048 + Ed25519", keys)):
        signed = replace(SETTINGS, dkim=DkimSettings("example.org", chosen))
        took = best_of(lambda: ours_build(rendered, digest, signed), max(1, args.n // 10))
        print(f"  ours, {label:<27} {took * 1e3:7.3f}  (+{(took - plain) * 1e3:.3f})")
    include = [h.encode() for h in SIGNED_HEADERS] * 2

    def dkimpy_sign() -> bytes:
        data = ours_build(rendered, digest, SETTINGS)
        return dkim.sign(data, b"s1", b"example.org", rsa.private_key, include_headers=include,
                         canonicalize=(b"relaxed", b"relaxed")) + data

    took = best_of(dkimpy_sign, max(1, args.n // 10))
    print(f"  dkimpy's dkim.sign, RSA 2048      {took * 1e3:7.3f}  (+{(took - plain) * 1e3:.3f})")
    # The embedded default's cost per message: an fsync'd Maildir write (file + directory),
    # by one writer and by the pool the outbox transport asks the service for.
    msg = build_message(cases[0][0], cases[0][1], SETTINGS, now=NOW)
    where = args.outbox_dir or tempfile.gettempdir()
    print(f"\noutbox (Maildir in {where}, fsync of file and directory per message):")
    for writers in sorted({1, OUTBOX_WRITERS}):
        count, took = outbox_rate(msg, writers, max(writers, args.n // 5), args.outbox_dir)
        print(f"  {writers} writer{'s' if writers > 1 else ''}: {count} messages in "
              f"{took:.2f} s = {count / took:,.0f} msg/s")
    print(f"build: best of 3 rounds, CPU time per message; stock = EmailMessage(policy=SMTP) set_content + add_alternative "
          f"+ as_bytes ({max(1, args.n // 10)} msgs/round), ours = digest.mailer.build_message "
          f"({args.n} msgs/round); Python {sys.version.split()[0]}")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
