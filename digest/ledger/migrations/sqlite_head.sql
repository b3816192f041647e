-- The SQLite ledger at revision 0005, as its migrations build it: a new
-- file is made from this (digest/ledger/_migrate.py, create_sqlite). Written by
-- scripts/ledger-snapshot; tests/ledger/test_snapshot.py checks it.

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE suppressions (
    email      TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source     TEXT NOT NULL);
CREATE TABLE skips (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (email, edition));
CREATE TABLE preferences (
    email        TEXT PRIMARY KEY,
    paused_until TEXT,
    max_papers   INTEGER,
    updated_at   TEXT NOT NULL);
CREATE TABLE archive (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sent_at    TEXT NOT NULL,
    message    BLOB NOT NULL,
    PRIMARY KEY (email, edition));
CREATE TABLE "deliveries" (
    email              TEXT NOT NULL,
    edition            TEXT NOT NULL,
    state              TEXT NOT NULL
                       CHECK (state IN ('sending', 'sent', 'deferred', 'failed', 'uncertain')),
    message_id         TEXT,
    papers             TEXT NOT NULL DEFAULT '[]',
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    sent_at            TEXT,
    last_code          INTEGER,
    last_error         TEXT,
    possible_duplicate INTEGER NOT NULL DEFAULT 0,
    message            BLOB,
    ambiguous          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (email, edition));
CREATE INDEX deliveries_state ON deliveries (state);
CREATE INDEX deliveries_edition ON deliveries (edition);
CREATE TABLE feedback (
	email TEXT NOT NULL, 
	paper_id TEXT NOT NULL, 
	verdict TEXT NOT NULL, 
	title TEXT DEFAULT '' NOT NULL, 
	abstract TEXT DEFAULT '' NOT NULL, 
	created_at TEXT NOT NULL, 
	PRIMARY KEY (email, paper_id), 
	CONSTRAINT feedback_verdict_check CHECK (verdict IN ('more', 'less'))
);
CREATE TABLE left_out (
    email      TEXT NOT NULL,
    edition    TEXT NOT NULL,
    matches    BLOB NOT NULL,
    PRIMARY KEY (email, edition));
PRAGMA user_version = 2;
INSERT INTO alembic_version (version_num) VALUES ('0005');
