DROP TABLE machine_metadata;
DROP FUNCTION plantline_touch_updated_at();
