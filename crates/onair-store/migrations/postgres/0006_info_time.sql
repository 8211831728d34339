-- When the room's profile or attributes last changed (Unix ms; 0 = never since
-- creation): the cloud's `LastInfoTime`.
ALTER TABLE rooms ADD COLUMN info_changed_at BIGINT NOT NULL DEFAULT 0;
