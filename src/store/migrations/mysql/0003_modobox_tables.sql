-- modobox's own tables; the modobox_ prefix keeps them apart from Django's in an adopted database.

CREATE TABLE modobox_setting (
    name varchar(100) PRIMARY KEY,
    value text NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE modobox_session (
    id varchar(64) PRIMARY KEY,
    user_id integer NOT NULL,
    csrf_token varchar(64) NOT NULL,
    created_at datetime(6) NOT NULL,
    expires_at datetime(6) NOT NULL,
    FOREIGN KEY (user_id) REFERENCES core_user (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_session_expires_idx ON modobox_session (expires_at);

CREATE TABLE modobox_api_token (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id integer NOT NULL UNIQUE,
    token_hash varchar(64) NOT NULL UNIQUE,
    created_at datetime(6) NOT NULL,
    last_used_at datetime(6) NULL,
    FOREIGN KEY (user_id) REFERENCES core_user (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE modobox_task_run (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    task varchar(64) NOT NULL,
    node varchar(255) NOT NULL,
    started_at datetime(6) NOT NULL,
    finished_at datetime(6) NULL,
    outcome varchar(16) NOT NULL,
    message text NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_task_run_task_started_idx ON modobox_task_run (task, started_at);

CREATE TABLE modobox_service_event (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at datetime(6) NOT NULL,
    service varchar(64) NOT NULL,
    kind varchar(32) NOT NULL,
    message text NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_service_event_at_idx ON modobox_service_event (at);
