DROP TABLE audit_log;
DROP TABLE system_config;
