-- additive
-- TLS reports (SMTP TLS Reporting, RFC 8460) that sending servers mailed about the hosted
-- domains: one row per policy of a report (its sessions counted, its failures as JSON), kept
-- once per organization, report id and policy (DANE reports carry one tlsa policy per MX).

CREATE TABLE modobox_tls_report (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    domain varchar(253) NOT NULL,
    organization varchar(200) NOT NULL,
    report_id varchar(200) NOT NULL,
    begins_at datetime(6) NOT NULL,
    ends_at datetime(6) NOT NULL,
    policy_type varchar(20) NOT NULL,
    policy text NOT NULL,
    policy_hash varchar(64) NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    failures mediumtext NOT NULL,
    received_at datetime(6) NOT NULL,
    UNIQUE KEY modobox_tls_report_once (organization, report_id, domain, policy_type, policy_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX modobox_tls_report_domain_idx ON modobox_tls_report (domain, ends_at);
