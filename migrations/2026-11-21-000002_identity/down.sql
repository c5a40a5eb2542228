DROP TABLE refresh_tokens;
DROP TABLE gateway_clients;
DROP TABLE users;
