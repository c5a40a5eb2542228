-- Threshold and inactivity alerts. At most one open alert per machine and metric: repeated
-- breaches update it (count, last_seen, worst severity); a normal reading closes it.
CREATE TABLE alerts (
    id               UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    machine_id       UUID         NOT NULL REFERENCES machine_metadata (id) ON DELETE CASCADE,
    factory_id       VARCHAR(64)  NOT NULL,
    metric           VARCHAR(16)  NOT NULL CHECK (metric IN ('temperature', 'pressure', 'inactivity')),
    severity         VARCHAR(16)  NOT NULL CHECK (severity IN ('warning', 'critical')),
    value            DOUBLE PRECISION NOT NULL,
    threshold        DOUBLE PRECISION NOT NULL,
    first_seen       TIMESTAMPTZ  NOT NULL,
    last_seen        TIMESTAMPTZ  NOT NULL,
    count            INTEGER      NOT NULL DEFAULT 1 CHECK (count > 0),
    closed_at        TIMESTAMPTZ,
    acknowledged_by  UUID,
    acknowledged_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX idx_alerts_one_open ON alerts (machine_id, metric) WHERE closed_at IS NULL;
CREATE INDEX idx_alerts_last_seen ON alerts (last_seen DESC, id);
CREATE INDEX idx_alerts_machine ON alerts (machine_id, last_seen DESC);
