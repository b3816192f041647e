"""Where each command lives, and its one-line help for ``digest --help``.

Command modules are imported only when their command runs (or ``--help`` of that command is
asked for), so ``digest --help`` and a typo cost no YAML, HTTP, SQLite or rich import. The
one-line help here must equal the command's own (a test checks it).
"""

from __future__ import annotations

# name -> (module that registers it on ``main``, its one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("digest.cli.cmd_validate",
                 "Check a subscribers YAML file and report every problem at once."),
    "fetch": ("digest.cli.cmd_fetch", "Fetch papers and save them as our normalized JSON list."),
    "plan": ("digest.cli.cmd_plan", "Show what each subscriber would get now, and why."),
    "summarize": ("digest.cli.cmd_summarize", "Print each paper's key claims: the headline, "
                  "then up to two results with numbers."),
    "preview": ("digest.cli.cmd_preview", "Write each subscriber's next email as .html, .txt "
                "and the full .eml message."),
    "send": ("digest.cli.cmd_send",
             "Send the current edition to every subscriber now (once per edition)."),
    "history": ("digest.cli.cmd_send", "What went out (or is pending, or why nothing did), "
                "when, with which papers, newest first."),
    "resolve": ("digest.cli.cmd_send", 'Settle an edition held "uncertain": it arrived (--sent) '
                "or send it again (--resend)."),
    "unsubscribe": ("digest.cli.cmd_send",
                    "Stop sending to EMAIL (recorded in the ledger; wins over the YAML)."),
    "feedback": ("digest.cli.cmd_feedback",
                 "Record that EMAIL wants more, or fewer, papers like these."),
    "run": ("digest.cli.cmd_run",
            "Send each subscriber's digest on their own schedule, in their own timezone."),
    "schedule": ("digest.cli.cmd_run",
                 "Show each subscriber's next send times, in their local time and in UTC."),
    "serve": ("digest.cli.cmd_serve",
              "Serve the web pages behind the links in every email, at settings.base_url."),
    "prefs": ("digest.cli.cmd_serve",
              "What subscribers chose on the preferences page of digest serve."),
    "dkim": ("digest.cli.cmd_dkim", "DKIM signing keys (settings.dkim)."),
    "worker": ("digest.cli.cmd_worker", "Deliver queued digests: a Celery worker on settings.queue."),
    "status": ("digest.cli.cmd_worker", "Per edition across every sender: queued, sending, sent, "
               "deferred, failed, oldest lease."),
}
