-- Amavis' SQL quarantine and log (msgs, msgrcpt, quarantine, maddr), in the modobox database.
-- IF NOT EXISTS: an adopted Modoboa database may already hold them.

CREATE TABLE IF NOT EXISTS maddr (
    partition_tag integer DEFAULT 0,
    id bigserial PRIMARY KEY,
    email bytea NOT NULL,
    domain varchar(255) NOT NULL,
    CONSTRAINT maddr_partition_email_uniq UNIQUE (partition_tag, email)
);

CREATE TABLE IF NOT EXISTS msgs (
    partition_tag integer DEFAULT 0,
    mail_id bytea NOT NULL,
    secret_id bytea DEFAULT '',
    am_id varchar(20) NOT NULL,
    time_num integer NOT NULL CHECK (time_num >= 0),
    time_iso timestamp with time zone NOT NULL,
    sid bigint NOT NULL REFERENCES maddr (id) ON DELETE RESTRICT,
    policy varchar(255) DEFAULT '',
    client_addr varchar(255) DEFAULT '',
    size integer NOT NULL CHECK (size >= 0),
    originating char(1) DEFAULT ' ' NOT NULL,
    content char(1),
    quar_type char(1),
    quar_loc varchar(255) DEFAULT '',
    dsn_sent char(1),
    spam_level real,
    message_id varchar(255) DEFAULT '',
    from_addr varchar(255) DEFAULT '',
    subject varchar(255) DEFAULT '',
    host varchar(255) NOT NULL,
    PRIMARY KEY (partition_tag, mail_id)
);
CREATE INDEX IF NOT EXISTS msgs_time_num_idx ON msgs (time_num);
CREATE INDEX IF NOT EXISTS msgs_sid_idx ON msgs (sid);

CREATE TABLE IF NOT EXISTS msgrcpt (
    partition_tag integer DEFAULT 0,
    mail_id bytea NOT NULL,
    rseqnum integer DEFAULT 0 NOT NULL,
    rid bigint NOT NULL REFERENCES maddr (id) ON DELETE RESTRICT,
    is_local char(1) DEFAULT ' ' NOT NULL,
    content char(1) DEFAULT ' ' NOT NULL,
    ds char(1) NOT NULL,
    rs char(1) NOT NULL,
    bl char(1) DEFAULT ' ',
    wl char(1) DEFAULT ' ',
    bspam_level real,
    smtp_resp varchar(255) DEFAULT '',
    PRIMARY KEY (partition_tag, mail_id, rseqnum),
    FOREIGN KEY (partition_tag, mail_id) REFERENCES msgs (partition_tag, mail_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS msgrcpt_rid_idx ON msgrcpt (rid);

CREATE TABLE IF NOT EXISTS quarantine (
    partition_tag integer DEFAULT 0,
    mail_id bytea NOT NULL,
    chunk_ind integer NOT NULL CHECK (chunk_ind >= 0),
    mail_text bytea NOT NULL,
    PRIMARY KEY (partition_tag, mail_id, chunk_ind),
    FOREIGN KEY (partition_tag, mail_id) REFERENCES msgs (partition_tag, mail_id) ON DELETE CASCADE
);
