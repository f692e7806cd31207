-- modobox's own tables; the modobox_ prefix keeps them apart from Django's in an adopted database.

CREATE TABLE modobox_setting (
    name varchar(100) PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE modobox_session (
    id varchar(64) PRIMARY KEY,
    user_id integer NOT NULL REFERENCES core_user (id) ON DELETE CASCADE,
    csrf_token varchar(64) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL
);
CREATE INDEX modobox_session_expires_idx ON modobox_session (expires_at);

CREATE TABLE modobox_api_token (
    id serial PRIMARY KEY,
    user_id integer NOT NULL UNIQUE REFERENCES core_user (id) ON DELETE CASCADE,
    token_hash varchar(64) NOT NULL UNIQUE,
    created_at timestamp with time zone NOT NULL,
    last_used_at timestamp with time zone NULL
);

CREATE TABLE modobox_task_run (
    id bigserial PRIMARY KEY,
    task varchar(64) NOT NULL,
    node varchar(255) NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone NULL,
    outcome varchar(16) NOT NULL,
    message text NOT NULL
);
CREATE INDEX modobox_task_run_task_started_idx ON modobox_task_run (task, started_at);

CREATE TABLE modobox_service_event (
    id bigserial PRIMARY KEY,
    at timestamp with time zone NOT NULL,
    service varchar(64) NOT NULL,
    kind varchar(32) NOT NULL,
    message text NOT NULL
);
CREATE INDEX modobox_service_event_at_idx ON modobox_service_event (at);
