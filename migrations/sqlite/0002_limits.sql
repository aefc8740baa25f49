-- Limits shared by every process on this database (timestamps: ms since the epoch).

-- A provider or model that must not be called until `until` (a rate limit said so, or an
-- account-level error such as a bad key or no credit). Scope: 'provider:openai', 'model:12'.
CREATE TABLE pauses (
    scope       TEXT PRIMARY KEY,
    until       INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- GCRA state of a rate limit: the theoretical arrival time of the next request.
-- Scope: 'model:12:rpm', 'model:12:tpm'.
CREATE TABLE rate_limits (
    scope  TEXT PRIMARY KEY,
    tat    INTEGER NOT NULL
);
