-- sensor_type is the plant's own label ("Temperature", "Vibration", "Flow meter"), as the
-- seed's schema has it: kept as given, matched case-insensitively. Existing rows keep their
-- values, which are valid labels.
ALTER TABLE machine_metadata DROP CONSTRAINT IF EXISTS machine_metadata_sensor_type_check;
ALTER TABLE machine_metadata ALTER COLUMN sensor_type TYPE VARCHAR(64);
ALTER TABLE machine_metadata ADD CONSTRAINT machine_metadata_sensor_type_label
    CHECK (btrim(sensor_type) <> '' AND sensor_type !~ '[[:cntrl:]]');
DROP INDEX IF EXISTS idx_machine_metadata_sensor_type;
CREATE INDEX idx_machine_metadata_sensor_type ON machine_metadata (lower(sensor_type));
