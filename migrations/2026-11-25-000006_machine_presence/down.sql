DROP TABLE IF EXISTS machine_presence;
