-- The tables Modoboa 1.10 keeps and Postfix, Dovecot and OpenDKIM read, with Modoboa's names
-- and columns (MODOBOA-COMPAT.md §1). On an adopted Modoboa database this migration is
-- recorded as applied without running: the tables are already there.

CREATE TABLE django_content_type (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_label varchar(100) NOT NULL,
    model varchar(100) NOT NULL,
    CONSTRAINT django_content_type_app_label_model_uniq UNIQUE (app_label, model)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE auth_group (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name varchar(150) NOT NULL UNIQUE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE core_user (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    password varchar(256) NOT NULL,
    last_login datetime(6) NULL,
    is_superuser bool NOT NULL,
    username varchar(254) NOT NULL UNIQUE,
    first_name varchar(30) NOT NULL,
    last_name varchar(30) NOT NULL,
    email varchar(254) NOT NULL,
    is_staff bool NOT NULL,
    is_active bool NOT NULL,
    date_joined datetime(6) NOT NULL,
    is_local bool NOT NULL,
    master_user bool NOT NULL,
    language varchar(10) NOT NULL DEFAULT 'en',
    phone_number varchar(128) NULL,
    secondary_email varchar(254) NULL,
    _parameters text NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX core_user_email_idx ON core_user (email);
CREATE INDEX core_user_is_active_idx ON core_user (is_active);
CREATE INDEX core_user_is_staff_idx ON core_user (is_staff);
CREATE INDEX core_user_is_local_idx ON core_user (is_local);
CREATE INDEX core_user_email_is_active_idx ON core_user (email, is_active);

CREATE TABLE core_user_groups (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id integer NOT NULL,
    group_id integer NOT NULL,
    CONSTRAINT core_user_groups_user_id_group_id_uniq UNIQUE (user_id, group_id),
    FOREIGN KEY (user_id) REFERENCES core_user (id),
    FOREIGN KEY (group_id) REFERENCES auth_group (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE core_log (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    date_created datetime(6) NOT NULL,
    message varchar(255) NOT NULL,
    level varchar(15) NOT NULL,
    logger varchar(30) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX core_log_date_created_idx ON core_log (date_created);

CREATE TABLE core_objectaccess (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id integer NOT NULL,
    content_type_id integer NOT NULL,
    object_id integer NOT NULL CHECK (object_id >= 0),
    is_owner bool NOT NULL,
    CONSTRAINT core_objectaccess_user_ct_object_uniq UNIQUE (user_id, content_type_id, object_id),
    FOREIGN KEY (user_id) REFERENCES core_user (id),
    FOREIGN KEY (content_type_id) REFERENCES django_content_type (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX core_objectaccess_ct_object_idx ON core_objectaccess (content_type_id, object_id);

CREATE TABLE transport_transport (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pattern varchar(253) NOT NULL UNIQUE,
    service varchar(30) NOT NULL,
    next_hop varchar(100) NOT NULL,
    _settings text NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE admin_domain (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name varchar(100) NOT NULL UNIQUE,
    quota integer NOT NULL CHECK (quota >= 0),
    default_mailbox_quota integer NOT NULL CHECK (default_mailbox_quota >= 0),
    enabled bool NOT NULL,
    type varchar(20) NOT NULL,
    enable_dns_checks bool NOT NULL,
    transport_id integer NULL UNIQUE,
    enable_dkim bool NOT NULL,
    dkim_key_selector varchar(30) NOT NULL,
    dkim_key_length integer NULL CHECK (dkim_key_length >= 0),
    dkim_public_key text NOT NULL,
    dkim_private_key_path varchar(254) NOT NULL,
    creation datetime(6) NOT NULL,
    last_modification datetime(6) NULL,
    FOREIGN KEY (transport_id) REFERENCES transport_transport (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE admin_domainalias (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name varchar(100) NOT NULL UNIQUE,
    target_id integer NOT NULL,
    enabled bool NOT NULL,
    creation datetime(6) NOT NULL,
    last_modification datetime(6) NULL,
    FOREIGN KEY (target_id) REFERENCES admin_domain (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX admin_domainalias_target_idx ON admin_domainalias (target_id);

CREATE TABLE admin_mailbox (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address varchar(252) NOT NULL,
    quota integer NOT NULL CHECK (quota >= 0),
    use_domain_quota bool NOT NULL,
    domain_id integer NOT NULL,
    user_id integer NOT NULL UNIQUE,
    creation datetime(6) NOT NULL,
    last_modification datetime(6) NULL,
    FOREIGN KEY (domain_id) REFERENCES admin_domain (id),
    FOREIGN KEY (user_id) REFERENCES core_user (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX admin_mailbox_address_domain_idx ON admin_mailbox (address, domain_id);
CREATE INDEX admin_mailbox_domain_idx ON admin_mailbox (domain_id);

-- Written by Dovecot's quota dict: the defaults let its INSERT name only some columns.
CREATE TABLE admin_quota (
    username varchar(254) PRIMARY KEY,
    bytes bigint NOT NULL DEFAULT 0,
    messages integer NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE admin_alias (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address varchar(254) NOT NULL,
    domain_id integer NULL,
    enabled bool NOT NULL,
    internal bool NOT NULL,
    description text NOT NULL,
    expire_at datetime(6) NULL,
    creation datetime(6) NOT NULL,
    last_modification datetime(6) NULL,
    CONSTRAINT admin_alias_address_internal_uniq UNIQUE (address, internal),
    FOREIGN KEY (domain_id) REFERENCES admin_domain (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX admin_alias_address_idx ON admin_alias (address);
CREATE INDEX admin_alias_domain_idx ON admin_alias (domain_id);

CREATE TABLE modoboa_admin_aliasrecipient (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address varchar(254) NOT NULL,
    alias_id integer NOT NULL,
    r_mailbox_id integer NULL,
    r_alias_id integer NULL,
    CONSTRAINT modoboa_admin_aliasrecipient_alias_r_mailbox_uniq UNIQUE (alias_id, r_mailbox_id),
    CONSTRAINT modoboa_admin_aliasrecipient_alias_r_alias_uniq UNIQUE (alias_id, r_alias_id),
    FOREIGN KEY (alias_id) REFERENCES admin_alias (id),
    FOREIGN KEY (r_mailbox_id) REFERENCES admin_mailbox (id),
    FOREIGN KEY (r_alias_id) REFERENCES admin_alias (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modoboa_admin_aliasrecipient_alias_idx ON modoboa_admin_aliasrecipient (alias_id);
CREATE INDEX modoboa_admin_aliasrecipient_r_mailbox_idx ON modoboa_admin_aliasrecipient (r_mailbox_id);
CREATE INDEX modoboa_admin_aliasrecipient_r_alias_idx ON modoboa_admin_aliasrecipient (r_alias_id);

CREATE TABLE admin_senderaddress (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    address varchar(254) NOT NULL,
    mailbox_id integer NOT NULL,
    CONSTRAINT admin_senderaddress_address_mailbox_uniq UNIQUE (address, mailbox_id),
    FOREIGN KEY (mailbox_id) REFERENCES admin_mailbox (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX admin_senderaddress_address_idx ON admin_senderaddress (address);

CREATE TABLE admin_mailboxoperation (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    mailbox_id integer NULL,
    type varchar(20) NOT NULL,
    argument text NOT NULL,
    FOREIGN KEY (mailbox_id) REFERENCES admin_mailbox (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX admin_mailboxoperation_mailbox_idx ON admin_mailboxoperation (mailbox_id);

CREATE TABLE admin_mxrecord (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain_id integer NOT NULL,
    name varchar(254) NOT NULL,
    address char(39) NOT NULL,
    managed bool NOT NULL,
    updated datetime(6) NOT NULL,
    FOREIGN KEY (domain_id) REFERENCES admin_domain (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE admin_dnsblresult (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain_id integer NOT NULL,
    provider varchar(254) NOT NULL,
    mx_id integer NOT NULL,
    status varchar(45) NOT NULL,
    CONSTRAINT admin_dnsblresult_domain_provider_mx_uniq UNIQUE (domain_id, provider, mx_id),
    FOREIGN KEY (domain_id) REFERENCES admin_domain (id),
    FOREIGN KEY (mx_id) REFERENCES admin_mxrecord (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE relaydomains_recipientaccess (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pattern varchar(254) NOT NULL UNIQUE,
    action varchar(40) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE limits_userobjectlimit (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id integer NOT NULL,
    name varchar(254) NOT NULL,
    content_type_id integer NOT NULL,
    max_value integer NOT NULL,
    CONSTRAINT limits_userobjectlimit_user_name_uniq UNIQUE (user_id, name),
    FOREIGN KEY (user_id) REFERENCES core_user (id),
    FOREIGN KEY (content_type_id) REFERENCES django_content_type (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE limits_domainobjectlimit (
    id integer NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain_id integer NOT NULL,
    name varchar(254) NOT NULL,
    max_value integer NOT NULL,
    CONSTRAINT limits_domainobjectlimit_domain_name_uniq UNIQUE (domain_id, name),
    FOREIGN KEY (domain_id) REFERENCES admin_domain (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- What OpenDKIM reads (KeyTable by id, SigningTable by domain name); a domain whose key the
-- DKIM job has not written yet is left out, or OpenDKIM would refuse to start.
CREATE VIEW dkim AS
    SELECT id, name AS domain_name, dkim_private_key_path AS private_key_path, dkim_key_selector AS selector
    FROM admin_domain WHERE enable_dkim AND dkim_private_key_path <> '';

INSERT INTO django_content_type (app_label, model) VALUES
    ('core', 'user'), ('admin', 'domain'), ('admin', 'domainalias'), ('admin', 'mailbox'), ('admin', 'alias');
INSERT INTO auth_group (name) VALUES ('SimpleUsers'), ('DomainAdmins'), ('Resellers');
