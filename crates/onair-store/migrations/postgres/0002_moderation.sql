-- Mutes and bans per room, with their end (Unix ms; i64 max = permanent).
CREATE TABLE mutes (
    room_id   TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    until_ms  BIGINT  NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE bans (
    room_id   TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    until_ms  BIGINT  NOT NULL,
    reason    TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (room_id, user_id)
);
