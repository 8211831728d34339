-- OnAir schema v1 (PostgreSQL). Mirrors migrations/sqlite/0001_init.sql: every
-- integer is BIGINT (the store reads and writes i64 and range-checks unsigned
-- values itself), flags are BOOLEAN, JSON stays in TEXT columns.

-- The app: exactly one row (id = 1), created on first start.
CREATE TABLE app (
    id          BIGINT  PRIMARY KEY CHECK (id = 1),
    sdkappid    BIGINT  NOT NULL,
    secret_key  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- User profiles stamped on messages.
CREATE TABLE users (
    user_id     TEXT    PRIMARY KEY,
    nick        TEXT    NOT NULL DEFAULT '',
    avatar      TEXT    NOT NULL DEFAULT '',
    level       BIGINT  NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL
);

-- Rooms (RoomProfile). The two maps are JSON objects in text columns.
CREATE TABLE rooms (
    id                TEXT    PRIMARY KEY,
    name              TEXT    NOT NULL,
    introduction      TEXT    NOT NULL,
    notification      TEXT    NOT NULL,
    face_url          TEXT    NOT NULL,
    owner             TEXT    NOT NULL,
    app_defined_data  TEXT    NOT NULL DEFAULT '{}',
    attrs             TEXT    NOT NULL DEFAULT '{}',
    mute_all          BOOLEAN NOT NULL DEFAULT FALSE,
    state             TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    info_seq          BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX rooms_by_created ON rooms (created_at, id);

-- Delivered messages (history). No foreign key to rooms on purpose: the history
-- writer may still commit a batch for a room that is being deleted, and one such
-- row must not fail every other room's batch; delete_room removes rows explicitly.
-- The (room_id, seq) primary key is the index every read uses.
CREATE TABLE messages (
    room_id            TEXT    NOT NULL,
    seq                BIGINT  NOT NULL,
    time_ms            BIGINT  NOT NULL,
    from_account       TEXT    NOT NULL,
    nick               TEXT    NOT NULL,
    avatar             TEXT    NOT NULL,
    level              BIGINT  NOT NULL,
    priority           BIGINT  NOT NULL,
    random             BIGINT  NOT NULL,
    body               TEXT    NOT NULL,
    cloud_custom_data  TEXT    NOT NULL,
    PRIMARY KEY (room_id, seq)
);
