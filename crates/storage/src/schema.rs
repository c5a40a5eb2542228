//! Diesel table definitions matching `migrations/` (checked by the schema round-trip tests).
#![allow(missing_docs)]

diesel::table! {
    machine_metadata (id) {
        id -> Uuid,
        name -> Varchar,
        location -> Varchar,
        sensor_type -> Varchar,
        status -> Varchar,
        factory_id -> Varchar,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        username -> Varchar,
        email -> Nullable<Varchar>,
        password_hash -> Text,
        role -> Varchar,
        is_active -> Bool,
        last_login -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    gateway_clients (id) {
        id -> Uuid,
        client_id -> Varchar,
        name -> Varchar,
        secret_hash -> Text,
        is_active -> Bool,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        token_hash -> Varchar,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Varchar>,
    }
}

diesel::table! {
    system_config (name) {
        name -> Varchar,
        value -> Jsonb,
        version -> Int8,
        updated_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        actor_id -> Nullable<Uuid>,
        actor_name -> Varchar,
        action -> Varchar,
        resource_type -> Varchar,
        resource_id -> Nullable<Varchar>,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        request_id -> Nullable<Varchar>,
        client_ip -> Nullable<Varchar>,
    }
}

diesel::table! {
    alerts (id) {
        id -> Uuid,
        machine_id -> Uuid,
        factory_id -> Varchar,
        metric -> Varchar,
        severity -> Varchar,
        value -> Float8,
        threshold -> Float8,
        first_seen -> Timestamptz,
        last_seen -> Timestamptz,
        count -> Int4,
        closed_at -> Nullable<Timestamptz>,
        acknowledged_by -> Nullable<Uuid>,
        acknowledged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    machine_presence (machine_id) {
        machine_id -> Uuid,
        online -> Bool,
        since -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(machine_presence -> machine_metadata (machine_id));
diesel::joinable!(alerts -> machine_metadata (machine_id));
diesel::allow_tables_to_appear_in_same_query!(
    machine_metadata,
    users,
    gateway_clients,
    refresh_tokens,
    system_config,
    audit_log,
    alerts,
    machine_presence,
);
