"""DKIM: every message the outbox and SMTP paths write verifies with dkimpy's own verifier
(against an in-memory DNS), for RSA and Ed25519; a tampered or added header fails; a re-send
from the ledger is byte-identical; keys are checked at config load with file:line messages;
``digest dkim keygen`` writes a 0600 key and the TXT record that verifies it. Also the EHLO
name (``smtp.helo``) and the warning ``digest validate`` gives for a bad one."""

from __future__ import annotations

import base64
import functools
import hashlib
import mailbox
import re
import stat
import textwrap
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from smtp_server import SmtpTestServer
from test_service import EDITION, NOW, make_config, run

from digest.cli import main
from digest.config import load_config
from digest.delivery import KeyPair, build_message, dns_record, generate_key, helo_problem
from digest.delivery._dkim import SIGNED_HEADERS, sign_message
from digest.errors import ConfigError
from digest.ledger import Ledger
from digest.models import (
    Config,
    Digest,
    DkimKey,
    DkimSettings,
    RenderedEmail,
    Settings,
    Subscriber,
    Topic,
)

DOMAIN = "example.org"


@functools.lru_cache(maxsize=None)
def keys() -> tuple[KeyPair, KeyPair]:
    return generate_key("rsa", 2048), generate_key("ed25519")


def dkim_settings() -> DkimSettings:
    rsa, ed = keys()
    return DkimSettings(domain=DOMAIN, keys=(
        DkimKey("rsa-sha256", "s2026", Path("s2026.private"), rsa.private_key),
        DkimKey("ed25519-sha256", "e2026", Path("e2026.private"), ed.private_key)))


def dns() -> dict[bytes, bytes]:
    """The zone as a receiver would look it up: selector._domainkey.domain -> TXT value."""
    rsa, ed = keys()
    return {f"s2026._domainkey.{DOMAIN}.".encode(): rsa.record.encode(),
            f"e2026._domainkey.{DOMAIN}.".encode(): ed.record.encode()}


def verify(data: bytes, index: int = 0, zone: dict[bytes, bytes] | None = None) -> bool:
    records = dns() if zone is None else zone

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException:  # what dkim.verify() turns into False, for signature ``index``
        return False


def signature_tags(data: bytes, index: int = 0) -> dict[str, str]:
    found = [v for k, v in dkim.DKIM(data).headers if k.lower() == b"dkim-signature"]
    value = re.sub(rb"\s+", b"", found[index]).decode()
    return dict(part.split("=", 1) for part in value.split(";") if part)


def message(settings: Settings, unsubscribe: str | None = "https://example.org/u/tok") -> bytes:
    sub = Subscriber(email="ada@example.com", name="Ada", timezone="UTC",
                     schedule="0 7 * * *", max_papers=5, topics=(Topic("ml", ("ml",)),))
    digest = Digest(subscriber=sub, edition=EDITION, generated_at=NOW, items=(),
                    unsubscribe_url=unsubscribe)
    rendered = RenderedEmail(subject="3 new papers on ML - Wed 25 Nov", html="<p>Hi</p>\n",
                             text="Hi\n.\n..leading dots survive\n", papers=("1",))
    return build_message(rendered, digest, settings, now=NOW).data


SIGNED = Settings(sender="Paper Digest <digest@example.org>", dkim=dkim_settings())


# --------------------------------------------------------------------------- the signature


def test_both_signatures_verify_and_cover_the_one_click_headers() -> None:
    data = message(SIGNED)
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verify(data, 0) and verify(data, 1)
    rsa, ed = signature_tags(data, 0), signature_tags(data, 1)
    assert (rsa["a"], ed["a"]) == ("rsa-sha256", "ed25519-sha256")
    assert rsa["c"] == "relaxed/relaxed" and rsa["d"] == DOMAIN and rsa["s"] == "s2026"
    assert rsa["t"] == str(int(NOW.timestamp()))  # the build's now, not the wall clock
    assert "l" not in rsa and "x" not in rsa
    signed = rsa["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                 "list-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed.count(name) == 2, name  # present once, oversigned once
    assert all(len(line) <= 78 for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"))


def dkimpy_signed(data: bytes, key: DkimKey) -> bytes:
    """The same signature made by dkimpy alone (its pure-Python RSA, through ``gen_header``,
    where ``dkim.sign`` ends), with our tags: what ``sign_message`` must reproduce."""
    import nacl.encoding
    import nacl.signing
    from dkim.canonicalization import CanonicalizationPolicy
    from dkim.crypto import parse_pem_private_key

    algorithm = key.algorithm.encode()
    signer = dkim.DKIM(data, signature_algorithm=algorithm, linesep=b"\r\n")
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    present = {name.lower() for name, _ in signer.headers}
    signed = [h.encode() for h in SIGNED_HEADERS if h.encode() in present]
    include = signed + signed
    signer.hasher = hashlib.sha256
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(signer.body)).digest())
    fields = [(b"v", b"1"), (b"a", algorithm), (b"c", b"relaxed/relaxed"),
              (b"d", DOMAIN.encode()), (b"s", key.selector.encode()),
              (b"t", str(int(NOW.timestamp())).encode()), (b"h", b" : ".join(include)),
              (b"bh", body_hash), (b"b", b"0" * 60)]
    pk = nacl.signing.SigningKey(key.private_key.strip(), encoder=nacl.encoding.Base64Encoder) \
        if key.algorithm == "ed25519-sha256" else parse_pem_private_key(key.private_key)
    return b"DKIM-Signature: " + signer.gen_header(fields, include, policy, b"DKIM-Signature",
                                                   pk) + data


@pytest.mark.parametrize("index", [0, 1], ids=["rsa", "ed25519"])
def test_signatures_are_the_bytes_dkimpy_itself_would_write(index: int) -> None:
    key = dkim_settings().keys[index]
    unsigned = message(replace(SIGNED, dkim=None))
    assert sign_message(unsigned, DOMAIN, (key,), now=NOW) == dkimpy_signed(unsigned, key)


def test_the_same_edition_builds_the_same_bytes() -> None:
    assert message(SIGNED) == message(SIGNED)


def test_without_dkim_nothing_is_signed() -> None:
    assert b"DKIM-Signature" not in message(replace(SIGNED, dkim=None))


@pytest.mark.parametrize("tamper", [
    lambda d: d.replace(b"Subject: 3 new papers", b"Subject: 9 new papers"),
    lambda d: d.replace(b"List-Unsubscribe: <mailto:", b"List-Unsubscribe: <mailto:x"),
    lambda d: d.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
    # an added header is caught because each signed header is listed twice
    lambda d: d.replace(b"MIME-Version:", b"List-Unsubscribe: <https://evil.example/u>\r\n"
                                          b"MIME-Version:"),
    lambda d: d.replace(b"From: Paper Digest", b"From: Paper Digest <boss@evil.example>\r\n"
                                               b"From: Paper Digest"),
    lambda d: d.replace(b"leading dots survive", b"leading dots survivE"),
], ids=["subject", "unsubscribe", "post-removed", "unsubscribe-added", "from-added", "body"])
def test_a_tampered_message_fails(tamper: object) -> None:
    data = message(SIGNED)
    changed = tamper(data)  # type: ignore[operator]
    assert changed != data
    assert not verify(changed, 0) and not verify(changed, 1)


def test_a_wrong_key_in_dns_fails() -> None:
    other = generate_key("ed25519")
    zone = {**dns(), f"e2026._domainkey.{DOMAIN}.".encode(): other.record.encode()}
    data = message(SIGNED)
    assert verify(data, 0, zone) and not verify(data, 1, zone)


def test_dns_record_is_split_into_255_character_strings() -> None:
    record = dns_record("s2026", DOMAIN, keys()[0].record)
    strings = re.findall(r'"([^"]*)"', record)
    assert record.startswith("s2026._domainkey.example.org. IN TXT ( ")
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == keys()[0].record


# --------------------------------------------------------------------------- both paths


def signed_config(tmp_path: Path, server: SmtpTestServer | None = None) -> Config:
    cfg = make_config(tmp_path, ["ada@example.org", "bob@example.org"], server)
    return replace(cfg, settings=replace(cfg.settings, dkim=dkim_settings()))


def test_every_message_the_outbox_writes_verifies(tmp_path: Path) -> None:
    cfg = signed_config(tmp_path)
    assert run(cfg).sent == 2
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 2
    for path in files:
        data = path.read_bytes()  # Maildir files have LF line ends
        assert b"\r\n" not in data
        assert verify(data, 0) and verify(data, 1)
        assert verify(data.replace(b"\n", b"\r\n"), 0)  # as an MDA hands it on
    assert len(mailbox.Maildir(tmp_path / "outbox")) == 2


def test_every_message_the_smtp_path_sends_verifies(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        assert run(signed_config(tmp_path, server)).sent == 2
        assert len(server.messages) == 2
        for received in server.messages:
            assert verify(received.data, 0) and verify(received.data, 1)
            assert received.message["DKIM-Signature"] is not None


def test_a_resend_from_the_ledger_is_byte_identical_and_still_verifies(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        server.add_rule("rcpt", "451 4.3.0 Try again later", recipient="bob@example.org",
                        times=3)
        cfg = signed_config(tmp_path, server)
        first = run(cfg)
        assert (first.sent, first.deferred) == (1, 1)
        stored = Ledger(cfg.settings.database).stored_message("bob@example.org", EDITION)
        assert stored is not None and verify(stored)
        later = run(cfg, now=NOW + timedelta(hours=3))
        assert later.sent == 1
        bob = [m for m in server.messages if m.rcpt_tos == ("bob@example.org",)]
        assert len(bob) == 1 and bob[0].data == stored  # not re-signed with a new t=
        assert signature_tags(bob[0].data)["t"] == str(int(NOW.timestamp()))
        assert verify(bob[0].data, 0) and verify(bob[0].data, 1)


# --------------------------------------------------------------------------- config


def write_config(tmp_path: Path, dkim_block: str, sender: str = "digest@example.org") -> Path:
    block = "".join(f"    {line}\n" for line in textwrap.dedent(dkim_block).splitlines())
    path = tmp_path / "subscribers.yaml"
    path.write_text(f'settings:\n  sender: "Paper Digest <{sender}>"\n  dkim:\n{block}'
                    "subscribers:\n  - email: ada@example.org\n    topics: [ml]\n",
                    encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_config_reads_both_keys(tmp_path: Path) -> None:
    rsa, ed = keys()
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "s.private").write_bytes(rsa.private_key)
    (tmp_path / "k" / "e.private").write_bytes(ed.private_key)
    path = write_config(tmp_path, """\
        domain: example.org
        selector: s2026
        private_key_file: k/s.private
        ed25519: {selector: e2026, private_key_file: k/e.private}
        """)
    found = load_config(path).settings.dkim
    assert found is not None and found.domain == DOMAIN
    assert [(k.algorithm, k.selector) for k in found.keys] == [
        ("rsa-sha256", "s2026"), ("ed25519-sha256", "e2026")]
    assert found.keys[0].private_key == rsa.private_key
    assert "BEGIN" not in repr(found)  # the key stays out of logs
    settings = replace(SIGNED, dkim=found)
    assert verify(message(settings), 0) and verify(message(settings), 1)


def test_validate_warns_about_a_key_others_can_read(tmp_path: Path) -> None:
    key = tmp_path / "s.private"
    key.write_bytes(keys()[0].private_key)
    key.chmod(0o644)
    path = write_config(tmp_path, "domain: example.org\nselector: s1\n"
                                  "private_key_file: s.private\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0
    assert (f"{path}: settings.dkim.private_key_file: warning: {key} is readable by others "
            f"(mode 0644); anyone who reads it can sign mail as example.org: chmod 600 {key}"
            ) in result.stderr
    key.chmod(0o600)
    assert "warning" not in CliRunner().invoke(main, ["validate", str(path)]).stderr


def test_missing_key_file_and_bad_names_are_reported_with_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        domain: "not a domain"
        selector: "bad selector"
        private_key_file: nope.private
        """)
    file = str(path)
    assert problems(path) == [
        f"{file}:4: settings.dkim.domain: expected a domain name such as example.org, "
        "got 'not a domain'",
        f"{file}:5: settings.dkim.selector: expected a selector (letters, digits and "
        "hyphens, e.g. digest2026), got 'bad selector'",
        f"{file}:6: settings.dkim.private_key_file: no such file: {tmp_path / 'nope.private'}",
    ]


def test_a_weak_rsa_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    (tmp_path / "weak.private").write_bytes(weak)
    path = write_config(tmp_path, """\
        domain: example.org
        selector: s1
        private_key_file: weak.private
        """)
    assert problems(path) == [
        f"{path}:6: settings.dkim.private_key_file: {tmp_path / 'weak.private'}: the RSA key "
        "has 1024 bits; DKIM needs at least 2048 (receivers ignore or distrust shorter keys); "
        "make one with: digest dkim keygen"]


def test_a_file_that_is_not_a_key_and_a_bad_ed25519_key(tmp_path: Path) -> None:
    (tmp_path / "junk.private").write_text("hello\n")
    path = write_config(tmp_path, """\
        domain: example.org
        selector: s1
        private_key_file: junk.private
        ed25519: {selector: e1, private_key_file: junk.private}
        """)
    junk = tmp_path / "junk.private"
    assert problems(path) == [
        f"{path}:6: settings.dkim.private_key_file: {junk}: not a private key in PEM form; "
        "make one with: digest dkim keygen",
        f"{path}:7: settings.dkim.ed25519.private_key_file: {junk}: not an Ed25519 key "
        "(expected the base64 32-byte seed that 'digest dkim keygen --type ed25519' writes)"]


def test_an_encrypted_key_and_a_non_rsa_pem_key_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    pem = serialization.Encoding.PEM
    (tmp_path / "locked.private").write_bytes(rsa.generate_private_key(
        public_exponent=65537, key_size=2048).private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    (tmp_path / "ed.pem").write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    locked = write_config(tmp_path, "domain: example.org\nselector: s1\n"
                                    "private_key_file: locked.private\n")
    assert problems(locked) == [
        f"{locked}:6: settings.dkim.private_key_file: {tmp_path / 'locked.private'}: the key "
        "is protected by a passphrase, which cannot be given; make one with: digest dkim keygen"]
    wrong = write_config(tmp_path, "domain: example.org\nselector: s1\n"
                                   "private_key_file: ed.pem\n")
    assert problems(wrong) == [
        f"{wrong}:6: settings.dkim.private_key_file: {tmp_path / 'ed.pem'}: not an RSA key "
        "(Ed25519); make one with: digest dkim keygen"]


def test_a_signing_domain_that_does_not_align_with_from_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.private").write_bytes(keys()[0].private_key)
    block = "domain: {}\nselector: s1\nprivate_key_file: s.private\n"
    ok = write_config(tmp_path, block.format("example.org"), sender="digest@news.example.org")
    assert load_config(ok).settings.dkim is not None  # a parent domain aligns (relaxed)
    path = write_config(tmp_path, block.format("other.org"))
    assert problems(path) == [
        f"{path}:3: settings.dkim.domain: other.org does not align with the sender's domain "
        "example.org: DMARC checks that the signing domain is the From domain or a parent "
        "of it"]


# --------------------------------------------------------------------------- keygen


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_keygen_writes_a_private_key_and_prints_a_record_that_verifies(
        tmp_path: Path, kind: str) -> None:
    result = CliRunner().invoke(main, ["dkim", "keygen", "--domain", "Example.org",
                                       "--selector", "k1", "--type", kind,
                                       "--out", str(tmp_path / "dkim")])
    assert result.exit_code == 0, result.output
    private = tmp_path / "dkim" / "k1.private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    printed = result.stdout.strip()
    assert printed == (tmp_path / "dkim" / "k1.txt").read_text().strip()
    assert printed.startswith("k1._domainkey.example.org. IN TXT ( ")
    record = "".join(re.findall(r'"([^"]*)"', printed))
    assert record.startswith(f"v=DKIM1; k={kind}; p=")
    algorithm = "rsa-sha256" if kind == "rsa" else "ed25519-sha256"
    settings = replace(SIGNED, dkim=DkimSettings(DOMAIN, (
        DkimKey(algorithm, "k1", private, private.read_bytes()),)))  # type: ignore[arg-type]
    data = message(settings)
    assert verify(data, 0, {f"k1._domainkey.{DOMAIN}.".encode(): record.encode()})
    again = CliRunner().invoke(main, ["dkim", "keygen", "-d", "example.org", "-s", "k1",
                                      "--type", kind, "--out", str(tmp_path / "dkim")])
    assert again.exit_code == 1 and "already exists" in again.output
    assert private.read_bytes() == settings.dkim.keys[0].private_key  # type: ignore[union-attr]


def test_keygen_refuses_short_rsa_keys() -> None:
    result = CliRunner().invoke(main, ["dkim", "keygen", "-d", "example.org", "-s", "k",
                                       "--bits", "1024"])
    assert result.exit_code == 2 and "1024" in result.output


# --------------------------------------------------------------------------- EHLO


def test_ehlo_uses_smtp_helo(tmp_path: Path) -> None:
    with SmtpTestServer() as server:
        cfg = make_config(tmp_path, ["ada@example.org"], server, helo="mail.example.org")
        assert run(cfg).sent == 1
        assert server.messages[0].helo == "mail.example.org"


@pytest.mark.parametrize("name,server,bad", [
    ("localhost", "smtp.example.org", True),
    ("localhost.localdomain", "smtp.example.org", True),
    ("buildbox", "smtp.example.org", True),
    ("mail.example.org", "smtp.example.org", False),
    ("[192.0.2.1]", "smtp.example.org", False),
    ("localhost", "127.0.0.1", False),  # a local relay takes any name
    ("buildbox", "localhost", False),
])
def test_helo_problem(name: str, server: str, bad: bool) -> None:
    assert (helo_problem(name, server) is not None) is bad


def test_validate_warns_about_a_bare_greeting_name(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text(textwrap.dedent("""\
        settings:
          delivery: smtp
          smtp: {host: smtp.example.org, security: none, helo: buildbox}
        subscribers:
          - email: ada@example.org
            topics: [ml]
        """), encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0
    assert (f"{path}: settings.smtp.helo: warning: the SMTP greeting (EHLO) would be "
            "'buildbox', a bare name") in result.stderr
    path.write_text(path.read_text().replace("helo: buildbox", "helo: mail.example.org"))
    assert "warning" not in CliRunner().invoke(main, ["validate", str(path)]).stderr


def test_helo_must_be_a_host_name(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    path.write_text(textwrap.dedent("""\
        settings:
          smtp:
            host: smtp.example.org
            helo: "mail example org"
        subscribers:
          - email: ada@example.org
            topics: [ml]
        """), encoding="utf-8")
    assert problems(path) == [
        f"{path}:4: settings.smtp.helo: expected a host name such as mail.example.org (or an "
        "address literal such as [192.0.2.1]), got 'mail example org'"]
