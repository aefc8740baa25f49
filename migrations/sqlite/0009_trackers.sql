-- Trackers (named groups of terms to look for in answers) and what the analysis pass derived
-- from each answer for each tracker. The derived rows are a cache: deleting them only makes
-- the analysis pass write them again. `terms` is JSON text: [{"name", "patterns": [...]}].
CREATE TABLE trackers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    terms       TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per answer analysed for a tracker, with the tracker version it was analysed under
-- (an answer with an older version, or none, is analysed again).
CREATE TABLE insight_answers (
    tracker_id   INTEGER NOT NULL,
    response_id  INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (tracker_id, response_id)
);
-- Retention deletes by answer.
CREATE INDEX insight_answers_response ON insight_answers (response_id);
-- Progress (a count) and the analysis pass's starting point (a max) under one version.
CREATE INDEX insight_answers_version ON insight_answers (tracker_id, version, response_id);

CREATE TABLE insight_mentions (
    tracker_id     INTEGER NOT NULL,
    response_id    INTEGER NOT NULL,
    term           TEXT NOT NULL,
    count          INTEGER NOT NULL,
    rank           INTEGER NOT NULL,
    list_position  INTEGER,
    PRIMARY KEY (tracker_id, response_id, term)
);
CREATE INDEX insight_mentions_response ON insight_mentions (response_id);

CREATE TABLE insight_citations (
    tracker_id   INTEGER NOT NULL,
    response_id  INTEGER NOT NULL,
    url          TEXT NOT NULL,
    domain       TEXT NOT NULL,
    structured   INTEGER NOT NULL,
    PRIMARY KEY (tracker_id, response_id, url)
);
CREATE INDEX insight_citations_response ON insight_citations (response_id);
