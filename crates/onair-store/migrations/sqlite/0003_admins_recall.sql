-- Room admins (the AVChatRoom's up to 5 admins) and recalled messages.
CREATE TABLE room_admins (
    room_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

ALTER TABLE messages ADD COLUMN recalled INTEGER NOT NULL DEFAULT 0;
