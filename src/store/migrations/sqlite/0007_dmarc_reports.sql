-- additive
-- DMARC aggregate reports (RFC 7489 appendix C) that receiving servers mailed about the hosted
-- domains: one row per report (who reported, the period, the policy they saw published), kept
-- once per organization, report id and domain, and one row per record of it (a source address
-- and what it sent as the domain: messages, the disposition applied, DKIM and SPF alignment).

CREATE TABLE modobox_dmarc_report (
    id integer PRIMARY KEY AUTOINCREMENT,
    domain varchar(253) NOT NULL,
    organization varchar(200) NOT NULL,
    report_id varchar(200) NOT NULL,
    begins_at datetime NOT NULL,
    ends_at datetime NOT NULL,
    policy varchar(20) NOT NULL,
    received_at datetime NOT NULL,
    UNIQUE (organization, report_id, domain)
);
CREATE INDEX modobox_dmarc_report_domain_idx ON modobox_dmarc_report (domain, ends_at);
CREATE TABLE modobox_dmarc_record (
    id integer PRIMARY KEY AUTOINCREMENT,
    dmarc_report_id integer NOT NULL REFERENCES modobox_dmarc_report (id) ON DELETE CASCADE,
    source_ip varchar(45) NOT NULL,
    messages bigint NOT NULL,
    disposition varchar(20) NOT NULL,
    dkim varchar(10) NOT NULL,
    spf varchar(10) NOT NULL,
    header_from varchar(253) NOT NULL,
    auth text NOT NULL
);
CREATE INDEX modobox_dmarc_record_report_idx ON modobox_dmarc_record (dmarc_report_id);
