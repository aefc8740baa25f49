-- The outbox of webhook alerts (ALERT_WEBHOOK_URL). An alert is written once, whatever
-- duplicate checks or concurrent processes do (`dedupe_key` is unique, inserts skip a taken
-- key), then delivered through the same claim → call → fenced mark cycle as a job: a claim
-- moves it to `delivering` with a lease and one more attempt, a 2xx marks it `delivered`, a
-- retryable failure puts it back to `pending` at `next_attempt_at`, and the last attempt's
-- failure leaves it `failed` with its error. An expired lease makes it claimable again.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    batch_key       TEXT,
    message         TEXT NOT NULL,
    -- What the alert is about, as JSON (the payload's `details`).
    details         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_expires_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
-- The claim reads only what is still to deliver.
CREATE INDEX alerts_undelivered ON alerts (next_attempt_at)
    WHERE status IN ('pending', 'delivering');
