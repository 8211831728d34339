-- The live-room business layer: live state, gifts and wallets, activity and
-- statistics, lotteries.

ALTER TABLE rooms ADD COLUMN scheduled_at     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN state_changed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN stream           TEXT    NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN replay_url       TEXT    NOT NULL DEFAULT '';

-- The gift catalog.
CREATE TABLE gifts (
    gift_id    TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    price      INTEGER NOT NULL CHECK (price > 0),
    icon       TEXT    NOT NULL,
    animation  TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Wallets: coins to spend (balance) and coins received as an anchor (earnings).
-- The CHECK is the last line of defence; the code never tries to go negative.
CREATE TABLE wallets (
    user_id   TEXT    PRIMARY KEY,
    balance   INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    earnings  INTEGER NOT NULL DEFAULT 0 CHECK (earnings >= 0)
);

-- Every movement of coins. amount is signed: + in, - out.
CREATE TABLE ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,   -- topup | gift | earning
    amount          INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    gift_id         TEXT    NOT NULL DEFAULT '',
    gift_count      INTEGER NOT NULL DEFAULT 0,
    room_id         TEXT    NOT NULL DEFAULT '',
    counterparty    TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT    NOT NULL DEFAULT '',
    at              INTEGER NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);

-- Idempotency keys of money-moving requests: the same key with the same request
-- returns the first answer; with a different request it is refused.
CREATE TABLE idempotency (
    scope        TEXT    NOT NULL,   -- e.g. gift:<user> or topup:<user>
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    ledger_id    INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Coins each user spent in each room (the room leaderboard).
CREATE TABLE room_gift_totals (
    room_id  TEXT    NOT NULL,
    user_id  TEXT    NOT NULL,
    total    INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_gift_totals_rank ON room_gift_totals (room_id, total DESC);

-- Coins each anchor earned in each room.
CREATE TABLE anchor_earnings (
    anchor   TEXT    NOT NULL,
    room_id  TEXT    NOT NULL,
    total    INTEGER NOT NULL,
    PRIMARY KEY (anchor, room_id)
);

-- Per-user activity behind levels.
CREATE TABLE user_activity (
    user_id     TEXT    PRIMARY KEY,
    online_ms   INTEGER NOT NULL DEFAULT 0,
    messages    INTEGER NOT NULL DEFAULT 0,
    likes       INTEGER NOT NULL DEFAULT 0,
    gift_value  INTEGER NOT NULL DEFAULT 0,
    member      INTEGER NOT NULL DEFAULT 0
);

-- Per-room statistics and the exact like total.
CREATE TABLE room_stats (
    room_id      TEXT    PRIMARY KEY,
    peak_online  INTEGER NOT NULL DEFAULT 0,
    messages     INTEGER NOT NULL DEFAULT 0,
    likes        INTEGER NOT NULL DEFAULT 0,
    gifts        INTEGER NOT NULL DEFAULT 0,
    gift_value   INTEGER NOT NULL DEFAULT 0,
    watch_ms     INTEGER NOT NULL DEFAULT 0
);

-- Lotteries: the pool is a JSON array of user ids in entry order, winners in draw
-- order; seed is the published draw seed (hex).
CREATE TABLE lotteries (
    id            TEXT    PRIMARY KEY,
    room_id       TEXT    NOT NULL,
    keyword       TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    ends_at       INTEGER NOT NULL,
    winner_count  INTEGER NOT NULL,
    min_level     INTEGER NOT NULL,
    status        TEXT    NOT NULL,   -- running | drawn
    seed          TEXT    NOT NULL DEFAULT '',
    pool          TEXT    NOT NULL DEFAULT '[]',
    winners       TEXT    NOT NULL DEFAULT '[]',
    created_by    TEXT    NOT NULL,
    drawn_at      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX lotteries_by_room ON lotteries (room_id, started_at);
