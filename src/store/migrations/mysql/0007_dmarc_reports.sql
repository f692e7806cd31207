-- additive
-- DMARC aggregate reports (RFC 7489 appendix C) that receiving servers mailed about the hosted
-- domains: one row per report (who reported, the period, the policy they saw published), kept
-- once per organization, report id and domain, and one row per record of it (a source address
-- and what it sent as the domain: messages, the disposition applied, DKIM and SPF alignment).

CREATE TABLE modobox_dmarc_report (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain varchar(253) NOT NULL,
    organization varchar(200) NOT NULL,
    report_id varchar(200) NOT NULL,
    begins_at datetime(6) NOT NULL,
    ends_at datetime(6) NOT NULL,
    policy varchar(20) NOT NULL,
    received_at datetime(6) NOT NULL,
    UNIQUE KEY modobox_dmarc_report_once (organization, report_id, domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_dmarc_report_domain_idx ON modobox_dmarc_report (domain, ends_at);
CREATE TABLE modobox_dmarc_record (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    dmarc_report_id bigint NOT NULL,
    source_ip varchar(45) NOT NULL,
    messages bigint NOT NULL,
    disposition varchar(20) NOT NULL,
    dkim varchar(10) NOT NULL,
    spf varchar(10) NOT NULL,
    header_from varchar(253) NOT NULL,
    auth text NOT NULL,
    FOREIGN KEY (dmarc_report_id) REFERENCES modobox_dmarc_report (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_dmarc_record_report_idx ON modobox_dmarc_record (dmarc_report_id);
