-- Machine registry: the seed's columns, plus `version` for optimistic concurrency (ETag).
CREATE OR REPLACE FUNCTION plantline_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TABLE machine_metadata (
    id          UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    name        VARCHAR(255) NOT NULL CHECK (btrim(name) <> ''),
    location    VARCHAR(255) NOT NULL,
    sensor_type VARCHAR(50)  NOT NULL
        CHECK (sensor_type IN ('temperature', 'pressure', 'speed', 'multi')),
    status      VARCHAR(20)  NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'inactive', 'maintenance', 'error')),
    factory_id  VARCHAR(64)  NOT NULL DEFAULT 'A',
    version     BIGINT       NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE INDEX idx_machine_metadata_location    ON machine_metadata (location);
CREATE INDEX idx_machine_metadata_status      ON machine_metadata (status);
CREATE INDEX idx_machine_metadata_sensor_type ON machine_metadata (sensor_type);
CREATE INDEX idx_machine_metadata_factory_id  ON machine_metadata (factory_id);
-- Two machines in one factory may not share a name (the registry answers 409).
CREATE UNIQUE INDEX uq_machine_metadata_factory_name ON machine_metadata (factory_id, lower(name));

CREATE TRIGGER trg_machine_metadata_updated_at
    BEFORE UPDATE ON machine_metadata
    FOR EACH ROW EXECUTE FUNCTION plantline_touch_updated_at();
