-- The tables Modoboa 1.10 keeps and Postfix, Dovecot and OpenDKIM read, with Modoboa's names
-- and columns (MODOBOA-COMPAT.md §1). On an adopted Modoboa database this migration is
-- recorded as applied without running: the tables are already there.

CREATE TABLE django_content_type (
    id integer PRIMARY KEY AUTOINCREMENT,
    app_label varchar(100) NOT NULL,
    model varchar(100) NOT NULL,
    CONSTRAINT django_content_type_app_label_model_uniq UNIQUE (app_label, model)
);

CREATE TABLE auth_group (
    id integer PRIMARY KEY AUTOINCREMENT,
    name varchar(150) NOT NULL UNIQUE
);

CREATE TABLE core_user (
    id integer PRIMARY KEY AUTOINCREMENT,
    password varchar(256) NOT NULL,
    last_login datetime NULL,
    is_superuser bool NOT NULL,
    username varchar(254) NOT NULL UNIQUE,
    first_name varchar(30) NOT NULL,
    last_name varchar(30) NOT NULL,
    email varchar(254) NOT NULL,
    is_staff bool NOT NULL,
    is_active bool NOT NULL,
    date_joined datetime NOT NULL,
    is_local bool NOT NULL,
    master_user bool NOT NULL,
    language varchar(10) NOT NULL DEFAULT 'en',
    phone_number varchar(128) NULL,
    secondary_email varchar(254) NULL,
    _parameters text NOT NULL
);
CREATE INDEX core_user_email_idx ON core_user (email);
CREATE INDEX core_user_is_active_idx ON core_user (is_active);
CREATE INDEX core_user_is_staff_idx ON core_user (is_staff);
CREATE INDEX core_user_is_local_idx ON core_user (is_local);
CREATE INDEX core_user_email_is_active_idx ON core_user (email, is_active);

CREATE TABLE core_user_groups (
    id integer PRIMARY KEY AUTOINCREMENT,
    user_id integer NOT NULL REFERENCES core_user (id) DEFERRABLE INITIALLY DEFERRED,
    group_id integer NOT NULL REFERENCES auth_group (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT core_user_groups_user_id_group_id_uniq UNIQUE (user_id, group_id)
);

CREATE TABLE core_log (
    id integer PRIMARY KEY AUTOINCREMENT,
    date_created datetime NOT NULL,
    message varchar(255) NOT NULL,
    level varchar(15) NOT NULL,
    logger varchar(30) NOT NULL
);
CREATE INDEX core_log_date_created_idx ON core_log (date_created);

CREATE TABLE core_objectaccess (
    id integer PRIMARY KEY AUTOINCREMENT,
    user_id integer NOT NULL REFERENCES core_user (id) DEFERRABLE INITIALLY DEFERRED,
    content_type_id integer NOT NULL REFERENCES django_content_type (id) DEFERRABLE INITIALLY DEFERRED,
    object_id integer NOT NULL CHECK (object_id >= 0),
    is_owner bool NOT NULL,
    CONSTRAINT core_objectaccess_user_ct_object_uniq UNIQUE (user_id, content_type_id, object_id)
);
CREATE INDEX core_objectaccess_ct_object_idx ON core_objectaccess (content_type_id, object_id);

CREATE TABLE transport_transport (
    id integer PRIMARY KEY AUTOINCREMENT,
    pattern varchar(253) NOT NULL UNIQUE,
    service varchar(30) NOT NULL,
    next_hop varchar(100) NOT NULL,
    _settings text NOT NULL
);

CREATE TABLE admin_domain (
    id integer PRIMARY KEY AUTOINCREMENT,
    name varchar(100) NOT NULL UNIQUE,
    quota integer NOT NULL CHECK (quota >= 0),
    default_mailbox_quota integer NOT NULL CHECK (default_mailbox_quota >= 0),
    enabled bool NOT NULL,
    type varchar(20) NOT NULL,
    enable_dns_checks bool NOT NULL,
    transport_id integer NULL UNIQUE REFERENCES transport_transport (id) DEFERRABLE INITIALLY DEFERRED,
    enable_dkim bool NOT NULL,
    dkim_key_selector varchar(30) NOT NULL,
    dkim_key_length integer NULL CHECK (dkim_key_length >= 0),
    dkim_public_key text NOT NULL,
    dkim_private_key_path varchar(254) NOT NULL,
    creation datetime NOT NULL,
    last_modification datetime NULL
);

CREATE TABLE admin_domainalias (
    id integer PRIMARY KEY AUTOINCREMENT,
    name varchar(100) NOT NULL UNIQUE,
    target_id integer NOT NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    enabled bool NOT NULL,
    creation datetime NOT NULL,
    last_modification datetime NULL
);
CREATE INDEX admin_domainalias_target_idx ON admin_domainalias (target_id);

CREATE TABLE admin_mailbox (
    id integer PRIMARY KEY AUTOINCREMENT,
    address varchar(252) NOT NULL,
    quota integer NOT NULL CHECK (quota >= 0),
    use_domain_quota bool NOT NULL,
    domain_id integer NOT NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    user_id integer NOT NULL UNIQUE REFERENCES core_user (id) DEFERRABLE INITIALLY DEFERRED,
    creation datetime NOT NULL,
    last_modification datetime NULL
);
CREATE INDEX admin_mailbox_address_domain_idx ON admin_mailbox (address, domain_id);
CREATE INDEX admin_mailbox_domain_idx ON admin_mailbox (domain_id);

-- Written by Dovecot's quota dict: the defaults let its INSERT name only some columns.
CREATE TABLE admin_quota (
    username varchar(254) PRIMARY KEY,
    bytes bigint NOT NULL DEFAULT 0,
    messages integer NOT NULL DEFAULT 0
);

CREATE TABLE admin_alias (
    id integer PRIMARY KEY AUTOINCREMENT,
    address varchar(254) NOT NULL,
    domain_id integer NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    enabled bool NOT NULL,
    internal bool NOT NULL,
    description text NOT NULL,
    expire_at datetime NULL,
    creation datetime NOT NULL,
    last_modification datetime NULL,
    CONSTRAINT admin_alias_address_internal_uniq UNIQUE (address, internal)
);
CREATE INDEX admin_alias_address_idx ON admin_alias (address);
CREATE INDEX admin_alias_domain_idx ON admin_alias (domain_id);

CREATE TABLE modoboa_admin_aliasrecipient (
    id integer PRIMARY KEY AUTOINCREMENT,
    address varchar(254) NOT NULL,
    alias_id integer NOT NULL REFERENCES admin_alias (id) DEFERRABLE INITIALLY DEFERRED,
    r_mailbox_id integer NULL REFERENCES admin_mailbox (id) DEFERRABLE INITIALLY DEFERRED,
    r_alias_id integer NULL REFERENCES admin_alias (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT modoboa_admin_aliasrecipient_alias_r_mailbox_uniq UNIQUE (alias_id, r_mailbox_id),
    CONSTRAINT modoboa_admin_aliasrecipient_alias_r_alias_uniq UNIQUE (alias_id, r_alias_id)
);
CREATE INDEX modoboa_admin_aliasrecipient_alias_idx ON modoboa_admin_aliasrecipient (alias_id);
CREATE INDEX modoboa_admin_aliasrecipient_r_mailbox_idx ON modoboa_admin_aliasrecipient (r_mailbox_id);
CREATE INDEX modoboa_admin_aliasrecipient_r_alias_idx ON modoboa_admin_aliasrecipient (r_alias_id);

CREATE TABLE admin_senderaddress (
    id integer PRIMARY KEY AUTOINCREMENT,
    address varchar(254) NOT NULL,
    mailbox_id integer NOT NULL REFERENCES admin_mailbox (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT admin_senderaddress_address_mailbox_uniq UNIQUE (address, mailbox_id)
);
CREATE INDEX admin_senderaddress_address_idx ON admin_senderaddress (address);

CREATE TABLE admin_mailboxoperation (
    id integer PRIMARY KEY AUTOINCREMENT,
    mailbox_id integer NULL REFERENCES admin_mailbox (id) DEFERRABLE INITIALLY DEFERRED,
    type varchar(20) NOT NULL,
    argument text NOT NULL
);
CREATE INDEX admin_mailboxoperation_mailbox_idx ON admin_mailboxoperation (mailbox_id);

CREATE TABLE admin_mxrecord (
    id integer PRIMARY KEY AUTOINCREMENT,
    domain_id integer NOT NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    name varchar(254) NOT NULL,
    address char(39) NOT NULL,
    managed bool NOT NULL,
    updated datetime NOT NULL
);

CREATE TABLE admin_dnsblresult (
    id integer PRIMARY KEY AUTOINCREMENT,
    domain_id integer NOT NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    provider varchar(254) NOT NULL,
    mx_id integer NOT NULL REFERENCES admin_mxrecord (id) DEFERRABLE INITIALLY DEFERRED,
    status varchar(45) NOT NULL,
    CONSTRAINT admin_dnsblresult_domain_provider_mx_uniq UNIQUE (domain_id, provider, mx_id)
);

CREATE TABLE relaydomains_recipientaccess (
    id integer PRIMARY KEY AUTOINCREMENT,
    pattern varchar(254) NOT NULL UNIQUE,
    action varchar(40) NOT NULL
);

CREATE TABLE limits_userobjectlimit (
    id integer PRIMARY KEY AUTOINCREMENT,
    user_id integer NOT NULL REFERENCES core_user (id) DEFERRABLE INITIALLY DEFERRED,
    name varchar(254) NOT NULL,
    content_type_id integer NOT NULL REFERENCES django_content_type (id) DEFERRABLE INITIALLY DEFERRED,
    max_value integer NOT NULL,
    CONSTRAINT limits_userobjectlimit_user_name_uniq UNIQUE (user_id, name)
);

CREATE TABLE limits_domainobjectlimit (
    id integer PRIMARY KEY AUTOINCREMENT,
    domain_id integer NOT NULL REFERENCES admin_domain (id) DEFERRABLE INITIALLY DEFERRED,
    name varchar(254) NOT NULL,
    max_value integer NOT NULL,
    CONSTRAINT limits_domainobjectlimit_domain_name_uniq UNIQUE (domain_id, name)
);

-- What OpenDKIM reads (KeyTable by id, SigningTable by domain name); a domain whose key the
-- DKIM job has not written yet is left out, or OpenDKIM would refuse to start.
CREATE VIEW dkim AS
    SELECT id, name AS domain_name, dkim_private_key_path AS private_key_path, dkim_key_selector AS selector
    FROM admin_domain WHERE enable_dkim AND dkim_private_key_path <> '';

INSERT INTO django_content_type (app_label, model) VALUES
    ('core', 'user'), ('admin', 'domain'), ('admin', 'domainalias'), ('admin', 'mailbox'), ('admin', 'alias');
INSERT INTO auth_group (name) VALUES ('SimpleUsers'), ('DomainAdmins'), ('Resellers');
