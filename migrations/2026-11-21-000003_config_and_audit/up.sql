-- Typed settings: the type, bounds and defaults live in the domain crate's registry; a row
-- exists only once a setting was changed from its default. `version` grows on every change.
CREATE TABLE system_config (
    name       VARCHAR(100) PRIMARY KEY,
    value      JSONB        NOT NULL,
    version    BIGINT       NOT NULL DEFAULT 1,
    updated_by UUID,
    updated_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- Append-only record of every administrative change. Secrets never appear in before/after.
CREATE TABLE audit_log (
    id            BIGSERIAL    PRIMARY KEY,
    occurred_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    actor_id      UUID,
    actor_name    VARCHAR(64)  NOT NULL,
    action        VARCHAR(64)  NOT NULL,
    resource_type VARCHAR(64)  NOT NULL,
    resource_id   VARCHAR(128),
    before        JSONB,
    after         JSONB,
    request_id    VARCHAR(128),
    client_ip     VARCHAR(64)
);
CREATE INDEX idx_audit_log_occurred_at ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX idx_audit_log_resource    ON audit_log (resource_type, resource_id);
CREATE INDEX idx_audit_log_actor       ON audit_log (actor_id);
