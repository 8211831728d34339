-- Room admins (the AVChatRoom's up to 5 admins) and recalled messages.
CREATE TABLE room_admins (
    room_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- 0/1 like SQLite's column (not BOOLEAN), so the same `recalled = 0` reads both.
ALTER TABLE messages ADD COLUMN recalled BIGINT NOT NULL DEFAULT 0;
