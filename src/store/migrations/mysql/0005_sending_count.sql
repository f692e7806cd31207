-- additive
-- Messages sent today by each login and each domain with a daily sending limit (Modoboa 2.x's
-- message_limit; Modoboa keeps these counters in Redis). The day is the UTC date as
-- YYYY-MM-DD: a row of an earlier day counts as zero, so the counters start again at 00:00 UTC.

CREATE TABLE modobox_sending_count (
    name varchar(254) PRIMARY KEY,
    day varchar(10) NOT NULL,
    sent integer NOT NULL
);
