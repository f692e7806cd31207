//! What an adopted Modoboa database holds beyond the 1.10 schema modobox itself creates, read
//! from the database's catalog once per store, on first use:
//! - NOT NULL columns later Modoboa versions added to tables modobox writes (Django keeps
//!   defaults in Python, so an INSERT that leaves them out fails): modobox fills them with
//!   Django's default;
//! - JSON columns (jsonb on PostgreSQL since Modoboa 2.2), written and read in their type;
//! - the tables of Modoboa's other applications whose rows point at accounts, mailboxes and
//!   domains (their foreign keys have no ON DELETE action: Django deletes them first).
//!
//! Modoboa's own migrations may run while modobox runs (a return to Modoboa): a restart, or
//! `Store::forget_schema`, reads the catalog again.

use std::sync::{Arc, RwLock};

use super::db::Tx;
use super::{Backend, StoreError};

/// Boolean flags of `core_user` added after 1.10, all `False` for a new account in Django.
const USER_FLAGS: &[&str] = &["tfa_enabled", "totp_enabled", "webauthn_enabled"];

/// Tables whose rows modobox's own code keeps (creates, updates, deletes).
pub const MANAGED_PARENTS: &[&str] = &[
    "core_user",
    "admin_domain",
    "admin_domainalias",
    "admin_mailbox",
    "admin_alias",
    "transport_transport",
];

/// The columns modobox writes in each Modoboa table it inserts into (the 1.10 schema), plus
/// the later columns it fills itself. Any other NOT NULL column without a default would make
/// its inserts fail: adoption refuses such a database, naming the column.
pub const WRITTEN: &[(&str, &[&str])] = &[
    (
        "core_user",
        &[
            "password",
            "last_login",
            "is_superuser",
            "username",
            "first_name",
            "last_name",
            "email",
            "is_staff",
            "is_active",
            "date_joined",
            "is_local",
            "master_user",
            "language",
            "phone_number",
            "secondary_email",
            "_parameters",
            "tfa_enabled",
            "totp_enabled",
            "webauthn_enabled",
        ],
    ),
    ("core_user_groups", &["user_id", "group_id"]),
    (
        "core_objectaccess",
        &["user_id", "content_type_id", "object_id", "is_owner"],
    ),
    ("core_log", &["date_created", "message", "level", "logger"]),
    (
        "admin_domain",
        &[
            "name",
            "quota",
            "default_mailbox_quota",
            "enabled",
            "type",
            "enable_dns_checks",
            "transport_id",
            "enable_dkim",
            "dkim_key_selector",
            "dkim_key_length",
            "dkim_public_key",
            "dkim_private_key_path",
            "creation",
            "last_modification",
        ],
    ),
    (
        "admin_domainalias",
        &[
            "name",
            "target_id",
            "enabled",
            "creation",
            "last_modification",
        ],
    ),
    (
        "admin_mailbox",
        &[
            "address",
            "quota",
            "use_domain_quota",
            "domain_id",
            "user_id",
            "creation",
            "last_modification",
            "is_send_only",
        ],
    ),
    ("admin_quota", &["username", "bytes", "messages"]),
    (
        "admin_alias",
        &[
            "address",
            "domain_id",
            "enabled",
            "internal",
            "description",
            "expire_at",
            "creation",
            "last_modification",
        ],
    ),
    (
        "modoboa_admin_aliasrecipient",
        &["address", "alias_id", "r_mailbox_id", "r_alias_id"],
    ),
    ("admin_senderaddress", &["address", "mailbox_id"]),
    (
        "admin_mailboxoperation",
        &["mailbox_id", "type", "argument"],
    ),
    (
        "admin_mxrecord",
        &["domain_id", "name", "address", "managed", "updated"],
    ),
    (
        "admin_dnsblresult",
        &["domain_id", "provider", "mx_id", "status"],
    ),
    (
        "transport_transport",
        &["pattern", "service", "next_hop", "_settings"],
    ),
    ("relaydomains_recipientaccess", &["pattern", "action"]),
    (
        "limits_userobjectlimit",
        &["user_id", "name", "content_type_id", "max_value"],
    ),
    (
        "limits_domainobjectlimit",
        &["domain_id", "name", "max_value"],
    ),
    ("auth_group", &["name"]),
    ("django_content_type", &["app_label", "model"]),
];

/// A column of one of the tables modobox writes, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub table: String,
    pub name: String,
    /// The engine's type name, lower case (`jsonb`, `longtext`, `bool`...).
    pub data_type: String,
    pub not_null: bool,
    pub has_default: bool,
}

/// A foreign key from another table into one modobox keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub table: String,
    pub column: String,
    pub parent: String,
}

/// What modobox learnt of the schema.
#[derive(Debug, Default)]
pub struct Schema {
    pub columns: Vec<Column>,
    pub references: Vec<Reference>,
}

impl Schema {
    fn has(&self, table: &str, column: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.table == table && c.name == column)
    }

    /// The later `core_user` flags this database has: ", flag, flag" for the column list
    /// and ", FALSE, FALSE" for the values of an INSERT.
    pub fn user_flags(&self) -> (String, String) {
        let mut cols = String::new();
        let mut vals = String::new();
        for f in USER_FLAGS {
            if self.has("core_user", f).is_some() {
                cols.push_str(", ");
                cols.push_str(f);
                vals.push_str(", FALSE");
            }
        }
        (cols, vals)
    }

    /// `core_user`'s two-factor flags as account columns: each one this database has, else
    /// FALSE (a 1.10 schema has none; 2.x renamed `tfa_enabled` to `totp_enabled`).
    pub fn user_flag_columns(&self) -> String {
        let col = |name: &str, alias: &str| {
            if self.has("core_user", name).is_some() {
                format!("u.{name} AS {alias}")
            } else {
                format!("FALSE AS {alias}")
            }
        };
        let totp = if self.has("core_user", "totp_enabled").is_some() {
            col("totp_enabled", "u_totp")
        } else {
            col("tfa_enabled", "u_totp")
        };
        format!("{totp}, {}", col("webauthn_enabled", "u_webauthn"))
    }

    /// The mailbox's Modoboa 2.x columns as account columns: `is_send_only` and
    /// `message_limit`, or FALSE and NULL where the schema has none.
    pub fn mailbox_columns(&self) -> String {
        let send_only = if self.mailbox_send_only() {
            "mb.is_send_only AS mb_send_only"
        } else {
            "FALSE AS mb_send_only"
        };
        let limit = if self.message_limits().0 {
            "mb.message_limit AS mb_message_limit"
        } else {
            "NULL AS mb_message_limit"
        };
        format!("{send_only}, {limit}")
    }

    /// Whether mailboxes have Modoboa 2.2's `is_send_only` flag.
    pub fn mailbox_send_only(&self) -> bool {
        self.has("admin_mailbox", "is_send_only").is_some()
    }

    /// Modoboa 2.x's daily sending limits (`message_limit`) on mailboxes and on domains.
    pub fn message_limits(&self) -> (bool, bool) {
        (
            self.has("admin_mailbox", "message_limit").is_some(),
            self.has("admin_domain", "message_limit").is_some(),
        )
    }

    /// The placeholder for a JSON value written into `table.column`: jsonb on PostgreSQL
    /// takes no text parameter without a cast.
    pub fn json_param(&self, table: &str, column: &str) -> &'static str {
        match self.has(table, column) {
            Some(c) if c.data_type == "jsonb" => "CAST(? AS jsonb)",
            Some(c) if c.data_type == "json" => "CAST(? AS json)",
            _ => "?",
        }
    }

    /// The later columns modobox fills on insert, as `table.column`.
    pub fn filled_columns(&self) -> Vec<String> {
        let mut v: Vec<String> = USER_FLAGS
            .iter()
            .filter(|f| self.has("core_user", f).is_some())
            .map(|f| format!("core_user.{f}"))
            .collect();
        if self.mailbox_send_only() {
            v.push("admin_mailbox.is_send_only".into());
        }
        v
    }

    /// JSON-typed columns of the tables modobox writes, as `table.column (type)`.
    pub fn json_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.data_type.starts_with("json"))
            .map(|c| format!("{}.{} ({})", c.table, c.name, c.data_type))
            .collect()
    }

    fn outside_references(&self) -> impl Iterator<Item = &Reference> {
        self.references.iter().filter(|r| {
            MANAGED_PARENTS.contains(&r.parent.as_str())
                && !WRITTEN.iter().any(|(t, _)| *t == r.table)
                && !r.table.starts_with("modobox_")
        })
    }

    /// Other applications' tables pointing at accounts, mailboxes or domains that modobox
    /// cleans as Django would, as `table.column → parent`.
    pub fn cleaned_tables(&self) -> Vec<String> {
        self.outside_references()
            .filter(|r| on_delete(&r.table, &r.column).is_some())
            .map(|r| format!("{}.{} → {}", r.table, r.column, r.parent))
            .collect()
    }

    /// Tables pointing at accounts, mailboxes or domains that modobox does not know.
    pub fn unknown_references(&self) -> Vec<String> {
        self.outside_references()
            .filter(|r| on_delete(&r.table, &r.column).is_none())
            .map(|r| format!("{}.{} → {}", r.table, r.column, r.parent))
            .collect()
    }

    /// NOT NULL columns without a default that modobox would leave out of its inserts.
    pub fn unwritable(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.not_null && !c.has_default && c.name != "id")
            .filter(|c| {
                WRITTEN
                    .iter()
                    .find(|(t, _)| *t == c.table)
                    .is_some_and(|(_, cols)| !cols.contains(&c.name.as_str()))
            })
            .map(|c| format!("{}.{}", c.table, c.name))
            .collect()
    }
}

/// What Django does to a row of another application's table when the row it points at is
/// deleted (`on_delete` of Modoboa 2.12's models: only CASCADE and SET_NULL occur).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDelete {
    Delete,
    SetNull,
}

/// Foreign keys whose rows Django keeps with NULL in place of the deleted parent.
const SET_NULL: &[(&str, &str)] = &[
    ("admin_alarm", "mailbox_id"),
    ("imap_migration_emailproviderdomain", "new_domain_id"),
    ("maillog_maillog", "from_domain_id"),
    ("maillog_maillog", "to_domain_id"),
    ("oauth2_provider_accesstoken", "source_refresh_token_id"),
    ("oauth2_provider_refreshtoken", "access_token_id"),
    ("reversion_revision", "user_id"),
];

/// Tables of Modoboa 2.x applications (and the Django applications it installs) whose rows
/// are deleted with the row they point at.
const CASCADE_TABLES: &[&str] = &[
    "admin_alarm",
    "authtoken_token",
    "core_user_user_permissions",
    "core_userfidokey",
    "dmarc_record",
    "dmarc_result",
    "dnstools_dnsrecord",
    "imap_migration_migration",
    "modoboa_contacts_addressbook",
    "modoboa_contacts_category",
    "modoboa_contacts_contact",
    "modoboa_contacts_contact_categories",
    "modoboa_contacts_emailaddress",
    "modoboa_contacts_phonenumber",
    "oauth2_provider_accesstoken",
    "oauth2_provider_application",
    "oauth2_provider_devicegrant",
    "oauth2_provider_grant",
    "oauth2_provider_idtoken",
    "oauth2_provider_refreshtoken",
    "otp_static_staticdevice",
    "otp_static_statictoken",
    "otp_totp_totpdevice",
    "postfix_autoreply_armessage",
    "radicale_accessrule",
    "radicale_calendarsubscription",
    "radicale_sharedcalendar",
    "radicale_usercalendar",
    "webmail_messageattachment",
    "webmail_scheduledmessage",
];

fn on_delete(table: &str, column: &str) -> Option<OnDelete> {
    if SET_NULL.contains(&(table, column)) {
        Some(OnDelete::SetNull)
    } else if CASCADE_TABLES.contains(&table) {
        Some(OnDelete::Delete)
    } else {
        None
    }
}

/// A name from the catalog, used as an identifier: only what Django and modobox name tables
/// and columns with.
fn identifier(name: &str) -> Result<&str, StoreError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(name)
    } else {
        Err(StoreError::Corrupt {
            what: format!("a table or column named {name:?} in the database's catalog"),
        })
    }
}

/// Before modobox deletes row `id` of `parent` (one of `MANAGED_PARENTS`): removes, or sets
/// to NULL, the rows of other Modoboa applications' tables that point at it, as Django would
/// (children first, recursively); tables modobox writes itself are its own code's business.
/// A table modobox does not know that holds such rows stops the deletion, named, with
/// nothing changed (the caller's transaction is dropped).
pub async fn clear_references(
    tx: &mut Tx,
    parent: &str,
    id: i32,
    what: &str,
) -> Result<(), StoreError> {
    let schema = tx.modoboa_schema().await?;
    clear(tx, &schema, parent, &[i64::from(id)], what, 0).await
}

fn clear<'a>(
    tx: &'a mut Tx,
    schema: &'a Schema,
    parent: &'a str,
    ids: &'a [i64],
    what: &'a str,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>> {
    Box::pin(async move {
        if ids.is_empty() {
            return Ok(());
        }
        if depth > 8 {
            return Err(StoreError::Corrupt {
                what: format!("foreign keys deeper than 8 tables below {parent}"),
            });
        }
        let values: Vec<super::Value> = ids.iter().map(|i| super::Value::I64(*i)).collect();
        for r in schema.references.iter().filter(|r| r.parent == parent) {
            let own = WRITTEN.iter().any(|(t, _)| *t == r.table) || r.table.starts_with("modobox_");
            if own {
                continue;
            }
            let (table, column) = (identifier(&r.table)?, identifier(&r.column)?);
            match on_delete(table, column) {
                Some(OnDelete::SetNull) => {
                    tx.exec_in(
                        &format!("UPDATE {table} SET {column} = NULL WHERE {column} IN ({{in}})"),
                        &values,
                    )
                    .await?;
                }
                Some(OnDelete::Delete) => {
                    // The children's own children first, when something points at them.
                    if schema.references.iter().any(|c| c.parent == table) {
                        let child_ids: Vec<i64> = tx
                            .rows_in(
                                &format!("SELECT id FROM {table} WHERE {column} IN ({{in}})"),
                                &[],
                                &values,
                            )
                            .await?
                            .iter()
                            .map(|row| row.any_int("id"))
                            .collect::<Result<_, _>>()?;
                        clear(tx, schema, table, &child_ids, what, depth + 1).await?;
                    }
                    tx.exec_in(
                        &format!("DELETE FROM {table} WHERE {column} IN ({{in}})"),
                        &values,
                    )
                    .await?;
                }
                None => {
                    let n = tx
                        .rows_in(
                            &format!("SELECT {column} FROM {table} WHERE {column} IN ({{in}})"),
                            &[],
                            &values,
                        )
                        .await?
                        .len();
                    if n > 0 {
                        return Err(StoreError::Refused {
                            field: what.to_string(),
                            rule: format!(
                                "{n} row(s) of table {table} ({column}) refer to it, and modobox does not know what Modoboa does with them: remove them first (with Modoboa, or by hand), nothing was changed"
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    })
}

/// The expression reading a JSON (or text) column as text on every engine: jsonb has no
/// text decoding, and MariaDB's JSON is a binary-collated longtext.
pub fn json_text(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => format!("CAST({column} AS text)"),
        Backend::Mysql => format!("CAST({column} AS CHAR)"),
        Backend::Sqlite => column.to_string(),
    }
}

/// The shared, lazily filled copy a store and its transactions hold.
#[derive(Debug, Clone, Default)]
pub struct Cache(Arc<RwLock<Option<Arc<Schema>>>>);

impl Cache {
    pub fn clear(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

impl Tx {
    /// The schema as the catalog describes it, read once per store.
    pub async fn modoboa_schema(&mut self) -> Result<Arc<Schema>, StoreError> {
        if let Some(s) = self.schema.0.read().ok().and_then(|g| g.clone()) {
            return Ok(s);
        }
        let s = Arc::new(read(self).await?);
        if let Ok(mut g) = self.schema.0.write() {
            *g = Some(s.clone());
        }
        Ok(s)
    }
}

/// Reads the catalog: the columns of the tables modobox writes and the foreign keys into the
/// tables it keeps.
pub async fn read(tx: &mut Tx) -> Result<Schema, StoreError> {
    let tables: Vec<&str> = WRITTEN.iter().map(|(t, _)| *t).collect();
    let mut columns = Vec::new();
    let mut references = Vec::new();
    match tx.backend() {
        Backend::Sqlite => {
            for t in &tables {
                for r in tx
                    .rows(
                        "SELECT name, lower(type) AS data_type, \"notnull\" AS not_null, \
                         dflt_value IS NOT NULL AS has_default FROM pragma_table_info(?)",
                        crate::args![*t],
                    )
                    .await?
                {
                    columns.push(Column {
                        table: t.to_string(),
                        name: r.text("name")?,
                        data_type: r.text("data_type")?,
                        not_null: r.any_int("not_null")? != 0,
                        has_default: r.any_int("has_default")? != 0,
                    });
                }
            }
            let all = tx
                .rows(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'",
                    &[],
                )
                .await?;
            for t in all {
                let table = t.text("name")?;
                for r in tx
                    .rows(
                        "SELECT \"table\" AS parent, \"from\" AS col FROM pragma_foreign_key_list(?)",
                        crate::args![table.as_str()],
                    )
                    .await?
                {
                    references.push(Reference {
                        table: table.clone(),
                        column: r.text("col")?,
                        parent: r.text("parent")?,
                    });
                }
            }
        }
        Backend::Postgres | Backend::Mysql => {
            let pg = tx.backend() == Backend::Postgres;
            let (schema, text) = if pg {
                ("current_schema()", "text")
            } else {
                ("DATABASE()", "CHAR")
            };
            let marks = vec!["?"; tables.len()].join(", ");
            let args: Vec<super::Value> = tables.iter().map(|t| (*t).into()).collect();
            let sql = format!(
                "SELECT CAST(table_name AS {text}) AS t, CAST(column_name AS {text}) AS c, \
                 CAST(lower(data_type) AS {text}) AS data_type, \
                 CAST(is_nullable AS {text}) AS nullable, \
                 CASE WHEN column_default IS NULL THEN 0 ELSE 1 END AS has_default \
                 FROM information_schema.columns \
                 WHERE table_schema = {schema} AND table_name IN ({marks})"
            );
            for r in tx.rows(&sql, &args).await? {
                columns.push(Column {
                    table: r.text("t")?,
                    name: r.text("c")?,
                    data_type: r.text("data_type")?,
                    not_null: r.text("nullable")? == "NO",
                    has_default: r.any_int("has_default")? != 0,
                });
            }
            let sql = if pg {
                "SELECT CAST(cl.relname AS text) AS t, CAST(att.attname AS text) AS c, \
                 CAST(pcl.relname AS text) AS parent \
                 FROM pg_constraint con \
                 JOIN pg_class cl ON cl.oid = con.conrelid \
                 JOIN pg_class pcl ON pcl.oid = con.confrelid \
                 JOIN pg_namespace n ON n.oid = cl.relnamespace \
                 JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = con.conkey[1] \
                 WHERE con.contype = 'f' AND n.nspname = current_schema()"
            } else {
                "SELECT CAST(table_name AS CHAR) AS t, CAST(column_name AS CHAR) AS c, \
                 CAST(referenced_table_name AS CHAR) AS parent \
                 FROM information_schema.key_column_usage \
                 WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL"
            };
            for r in tx.rows(sql, &[]).await? {
                references.push(Reference {
                    table: r.text("t")?,
                    column: r.text("c")?,
                    parent: r.text("parent")?,
                });
            }
        }
    }
    references.sort_by(|a, b| (&a.table, &a.column).cmp(&(&b.table, &b.column)));
    Ok(Schema {
        columns,
        references,
    })
}

/// The Modoboa release a database was last migrated by, told by the newest migration of its
/// `admin` and `core` applications in `django_migrations` (Modoboa's release notes and
/// wheels: each release line below changed at least one of the two).
const RELEASES: &[(u32, u32, &str)] = &[
    (13, 16, "1.10–1.11"),
    (14, 16, "1.12–1.13"),
    (14, 17, "1.14"),
    (15, 21, "1.15"),
    (17, 21, "1.16"),
    (17, 22, "1.17"),
    (20, 22, "2.0.0–2.0.4"),
    (20, 23, "2.0.5"),
    (20, 24, "2.1"),
    (21, 26, "2.2"),
    (23, 29, "2.3"),
    (23, 30, "2.4–2.6"),
    (24, 30, "2.7–2.8"),
    (24, 31, "2.9"),
    (24, 32, "2.10"),
    (25, 32, "2.11"),
    (26, 32, "2.12"),
];

/// What `django_migrations` says of the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    /// "2.12", "1.10–1.11"...; None when the pair of migrations is no release's.
    pub version: Option<String>,
    pub admin_migration: String,
    pub core_migration: String,
    /// Why modobox cannot adopt it, when it cannot.
    pub unsupported: Option<String>,
}

fn migration_number(name: &str) -> Option<u32> {
    name.get(..4)?.parse().ok()
}

/// The release of a Modoboa database (None: no `django_migrations`, or no admin/core rows).
pub async fn release(tx: &mut Tx) -> Result<Option<Release>, StoreError> {
    if !tx.table_exists("django_migrations").await? {
        return Ok(None);
    }
    let newest = |rows: Vec<super::Row>| -> Result<String, StoreError> {
        let mut best = String::new();
        for r in rows {
            let n = r.text("name")?;
            if migration_number(&n) > migration_number(&best) {
                best = n;
            }
        }
        Ok(best)
    };
    let admin = newest(
        tx.rows(
            "SELECT name FROM django_migrations WHERE app = ?",
            crate::args!["admin"],
        )
        .await?,
    )?;
    let core = newest(
        tx.rows(
            "SELECT name FROM django_migrations WHERE app = ?",
            crate::args!["core"],
        )
        .await?,
    )?;
    if admin.is_empty() || core.is_empty() {
        return Ok(None);
    }
    Ok(Some(identify(&admin, &core)))
}

/// The release a pair of newest migrations belongs to, and whether modobox supports it.
pub fn identify(admin: &str, core: &str) -> Release {
    let (a, c) = (
        migration_number(admin).unwrap_or(0),
        migration_number(core).unwrap_or(0),
    );
    let version = RELEASES
        .iter()
        .find(|(ra, rc, _)| *ra == a && *rc == c)
        .map(|(_, _, v)| v.to_string());
    let (newest_a, newest_c, newest) = RELEASES[RELEASES.len() - 1];
    let unsupported = if a < RELEASES[0].0 || c < RELEASES[0].1 {
        Some(format!(
            "Modoboa older than 1.10 (admin migration {admin}, core migration {core}): upgrade it to 1.10 or later with Modoboa first"
        ))
    } else if a > newest_a || c > newest_c {
        Some(format!(
            "Modoboa newer than {newest} (admin migration {admin}, core migration {core}): this modobox knows Modoboa's schema up to {newest} only; a newer modobox is needed"
        ))
    } else if version.is_none() {
        Some(format!(
            "admin migration {admin} with core migration {core} is no Modoboa release: finish Modoboa's own migrations (`manage.py migrate`) first"
        ))
    } else {
        None
    };
    Release {
        version,
        admin_migration: admin.to_string(),
        core_migration: core.to_string(),
        unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_told_by_their_newest_migrations() {
        let r = identify("0013_auto_20180124_2311", "0016_auto_20180713_1014");
        assert_eq!(r.version.as_deref(), Some("1.10–1.11"));
        assert!(r.unsupported.is_none());
        let r = identify(
            "0026_mailbox_shares",
            "0032_objectaccess_core_object_content_6b9cf4_idx",
        );
        assert_eq!(r.version.as_deref(), Some("2.12"));
        assert!(r.unsupported.is_none());
        let r = identify(
            "0021_mailbox_is_send_only",
            "0026_alter_localconfig__parameters_and_more",
        );
        assert_eq!(r.version.as_deref(), Some("2.2"));
        let r = identify("0027_something_new", "0032_x");
        assert!(r.unsupported.unwrap().contains("newer than 2.12"));
        let r = identify("0012_x", "0016_x");
        assert!(r.unsupported.unwrap().contains("older than 1.10"));
        // Half-way through Modoboa's own migrations.
        let r = identify("0021_mailbox_is_send_only", "0024_alter_user_language");
        assert!(r.version.is_none());
        assert!(r.unsupported.unwrap().contains("manage.py migrate"));
    }

    #[test]
    fn only_catalog_names_are_used_as_identifiers() {
        assert!(identifier("otp_static_statictoken").is_ok());
        for bad in ["", "a;b", "A", "x y", "t\"", "é"] {
            assert!(identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_not_null_columns_are_named() {
        let col = |t: &str, n: &str, not_null: bool, has_default: bool| Column {
            table: t.into(),
            name: n.into(),
            data_type: "bool".into(),
            not_null,
            has_default,
        };
        let s = Schema {
            columns: vec![
                col("core_user", "id", true, false),
                col("core_user", "totp_enabled", true, false),
                col("core_user", "new_flag", true, false),
                col("core_user", "nullable", false, false),
                col("core_user", "defaulted", true, true),
                col("admin_mailbox", "is_send_only", true, false),
                col("dmarc_report", "whatever", true, false),
            ],
            references: vec![],
        };
        assert_eq!(s.unwritable(), vec!["core_user.new_flag"]);
        assert_eq!(s.user_flags(), (", totp_enabled".into(), ", FALSE".into()));
        assert!(s.mailbox_send_only());
    }
}
