-- Labels outside the old set fall back to 'multi' (every field allowed), the closest match.
ALTER TABLE machine_metadata DROP CONSTRAINT IF EXISTS machine_metadata_sensor_type_label;
UPDATE machine_metadata SET sensor_type = lower(sensor_type)
    WHERE lower(sensor_type) IN ('temperature', 'pressure', 'speed', 'multi');
UPDATE machine_metadata SET sensor_type = 'multi'
    WHERE sensor_type NOT IN ('temperature', 'pressure', 'speed', 'multi');
DROP INDEX IF EXISTS idx_machine_metadata_sensor_type;
ALTER TABLE machine_metadata ALTER COLUMN sensor_type TYPE VARCHAR(50);
ALTER TABLE machine_metadata ADD CONSTRAINT machine_metadata_sensor_type_check
    CHECK (sensor_type IN ('temperature', 'pressure', 'speed', 'multi'));
CREATE INDEX idx_machine_metadata_sensor_type ON machine_metadata (sensor_type);
