-- People, gateways and refresh tokens. Secrets are stored only as hashes.
CREATE TABLE users (
    id            UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    username      VARCHAR(64)  NOT NULL CHECK (username ~ '^[A-Za-z0-9._-]{3,64}$'),
    email         VARCHAR(255),
    password_hash TEXT         NOT NULL,
    role          VARCHAR(20)  NOT NULL CHECK (role IN ('operator', 'supervisor', 'management')),
    is_active     BOOLEAN      NOT NULL DEFAULT true,
    last_login    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX uq_users_username ON users (lower(username));
CREATE TRIGGER trg_users_updated_at
    BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION plantline_touch_updated_at();

CREATE TABLE gateway_clients (
    id           UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id    VARCHAR(64)  NOT NULL UNIQUE CHECK (client_id ~ '^[A-Za-z0-9._-]{3,64}$'),
    name         VARCHAR(255) NOT NULL,
    secret_hash  TEXT         NOT NULL,
    is_active    BOOLEAN      NOT NULL DEFAULT true,
    last_used_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE TRIGGER trg_gateway_clients_updated_at
    BEFORE UPDATE ON gateway_clients FOR EACH ROW EXECUTE FUNCTION plantline_touch_updated_at();

-- One row per issued refresh token; rotation marks the old row and inserts a new one in the
-- same family, so presenting a rotated token again can revoke the whole family.
CREATE TABLE refresh_tokens (
    id             UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id      UUID        NOT NULL,
    token_hash     VARCHAR(64) NOT NULL UNIQUE,
    issued_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    rotated_at     TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ,
    revoked_reason VARCHAR(64)
);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX idx_refresh_tokens_user   ON refresh_tokens (user_id);
