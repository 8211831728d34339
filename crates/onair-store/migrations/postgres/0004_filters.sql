-- Sensitive-word lists: scope '' = the app's list, otherwise a room id.
CREATE TABLE filter_lists (
    scope   TEXT PRIMARY KEY,
    action  TEXT NOT NULL,
    words   TEXT NOT NULL
);
