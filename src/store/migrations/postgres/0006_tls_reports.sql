-- additive
-- TLS reports (SMTP TLS Reporting, RFC 8460) that sending servers mailed about the hosted
-- domains: one row per policy of a report (its sessions counted, its failures as JSON), kept
-- once per organization, report id and policy (DANE reports carry one tlsa policy per MX).

CREATE TABLE modobox_tls_report (
    id bigserial PRIMARY KEY,
    domain varchar(253) NOT NULL,
    organization varchar(200) NOT NULL,
    report_id varchar(200) NOT NULL,
    begins_at timestamp with time zone NOT NULL,
    ends_at timestamp with time zone NOT NULL,
    policy_type varchar(20) NOT NULL,
    policy text NOT NULL,
    policy_hash varchar(64) NOT NULL,
    successful bigint NOT NULL,
    failed bigint NOT NULL,
    failures text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    UNIQUE (organization, report_id, domain, policy_type, policy_hash)
);
CREATE INDEX modobox_tls_report_domain_idx ON modobox_tls_report (domain, ends_at);
