//! The OpenAPI 3 document of the API, written by hand next to the handlers (a test checks that
//! its paths and methods are exactly the router's, and schemathesis fuzzes the API from it).

use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

pub async fn serve() -> impl IntoResponse {
    Json(document())
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": r(schema) } } })
}

fn answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn errors(codes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        let (d, s) = match *c {
            "400" => (
                "invalid input: each field named with the rule it breaks",
                "ValidationError",
            ),
            "401" => ("no token, or a wrong one", "Detail"),
            "403" => ("the user's role may not do this", "Detail"),
            "404" => ("no such object, or not one the user may see", "Detail"),
            _ => ("unsupported media type (send application/json)", "Detail"),
        };
        m.insert(c.to_string(), answer(d, r(s)));
    }
    m
}

fn pk_param() -> Value {
    json!({ "name": "pk", "in": "path", "required": true, "schema": { "type": "integer" } })
}

fn query(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } })
}

fn paging_params() -> Vec<Value> {
    vec![
        json!({ "name": "page", "in": "query", "required": false, "description": "page number (from 1); with page or page_size the answer is a page object, without both the whole list", "schema": { "type": "integer", "minimum": 1 } }),
        json!({ "name": "page_size", "in": "query", "required": false, "description": "items per page (default 50)", "schema": { "type": "integer", "minimum": 1, "maximum": super::MAX_PAGE_SIZE } }),
    ]
}

fn list_answer(item: &str) -> Value {
    json!({
        "description": "the objects the user may see: a list, or a page when page/page_size is given",
        "content": { "application/json": { "schema": { "oneOf": [
            { "type": "array", "items": r(item) },
            { "type": "object", "required": ["count", "next", "previous", "results"], "properties": {
                "count": { "type": "integer" },
                "next": { "type": ["string", "null"] },
                "previous": { "type": ["string", "null"] },
                "results": { "type": "array", "items": r(item) }
            } }
        ] } } }
    })
}

/// `/x/` (list, create) and `/x/{pk}/` (retrieve, put, patch, delete) of one resource.
fn collection(
    paths: &mut Map<String, Value>,
    name: &str,
    tag: &str,
    item: &str,
    write: &str,
    patch: &str,
    filters: &[(&str, &str)],
) {
    let mut params = paging_params();
    params.extend(filters.iter().map(|(n, d)| query(n, d)));
    let mut list_resp = errors(&["401", "404"]);
    list_resp.insert("200".into(), list_answer(item));
    let mut create_resp = errors(&["400", "401", "403", "415"]);
    create_resp.insert("201".into(), answer("created", r(item)));
    paths.insert(
        format!("/api/v1/{name}/"),
        json!({
            "get": { "tags": [tag], "operationId": format!("{name}_list"), "summary": format!("List {tag}"), "parameters": params, "responses": list_resp },
            "post": { "tags": [tag], "operationId": format!("{name}_create"), "summary": format!("Create one of {tag}"), "requestBody": body(write), "responses": create_resp },
        }),
    );
    let mut get_resp = errors(&["401", "404"]);
    get_resp.insert("200".into(), answer("the object", r(item)));
    let mut put_resp = errors(&["400", "401", "403", "404", "415"]);
    put_resp.insert("200".into(), answer("the object as changed", r(item)));
    let mut del_resp = errors(&["401", "403", "404"]);
    del_resp.insert("204".into(), json!({ "description": "deleted" }));
    paths.insert(
        format!("/api/v1/{name}/{{pk}}/"),
        json!({
            "parameters": [pk_param()],
            "get": { "tags": [tag], "operationId": format!("{name}_read"), "responses": get_resp },
            "put": { "tags": [tag], "operationId": format!("{name}_update"), "summary": "Replace (fields left out keep their value; required ones must be given)", "requestBody": body(write), "responses": put_resp.clone() },
            "patch": { "tags": [tag], "operationId": format!("{name}_partial_update"), "requestBody": body(patch), "responses": put_resp },
            "delete": { "tags": [tag], "operationId": format!("{name}_delete"), "responses": del_resp },
        }),
    );
}

/// `schema` with no field required (PATCH bodies).
fn optional(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("required");
    }
    s
}

fn schemas() -> Map<String, Value> {
    // Sizes in MB as Modoboa 2.x takes them: a number, or text with the unit K, M or G.
    let size = json!({ "anyOf": [
        { "type": "integer", "minimum": 0, "maximum": i32::MAX },
        { "type": "string", "pattern": "^[0-9]+ *([KkMmGg][A-Za-z]*)?$" },
    ], "description": "MB, 0 = unlimited; or a size with the unit K, M or G (\"2G\" = 2048)" });
    let quota_out = json!({ "type": "string", "description": "MB (a number as text, as Modoboa answers), \"0\" = unlimited" });
    let message_limit = json!({ "type": ["integer", "null"], "minimum": 0, "maximum": i32::MAX, "description": "messages a day (Modoboa 2.x databases), null = no limit" });
    let domain_settings = json!({
        "quota": size, "default_mailbox_quota": size, "message_limit": message_limit,
        "enabled": { "type": "boolean", "default": true },
        "enable_dns_checks": { "type": "boolean", "default": true },
        "enable_dkim": { "type": "boolean", "default": false },
        "dkim_key_selector": { "type": "string", "maxLength": 30, "default": "modoboa" },
        "dkim_key_length": { "type": ["integer", "null"], "enum": [1024, 2048, 4096, null] },
    });
    let mut domain_write = json!({ "type": "object", "required": ["name"], "properties": {
        "name": { "type": "string", "maxLength": 100, "description": "cannot change after creation" },
        "type": { "type": "string", "enum": ["domain"] },
    } });
    extend(&mut domain_write, &domain_settings);
    let mut domain = json!({ "type": "object", "properties": {
        "pk": { "type": "integer" }, "name": { "type": "string" },
        "type": { "type": "string", "enum": ["domain", "relaydomain"] },
        "dkim_public_key": { "type": "string", "readOnly": true },
        "dkim_private_key_path": { "type": "string", "readOnly": true },
        "mailbox_count": { "type": "integer", "readOnly": true },
        "allocated_quota_in_percent": { "type": "integer", "readOnly": true },
        "mbalias_count": { "type": "integer", "readOnly": true },
        "domainalias_count": { "type": "integer", "readOnly": true },
        "dns_global_status": { "type": "string", "enum": ["disabled", "pending", "ok", "critical"], "readOnly": true },
        "creation": { "type": "string", "format": "date-time", "readOnly": true },
        "last_modification": { "type": ["string", "null"], "format": "date-time", "readOnly": true },
        "allocated_quota": { "type": "integer", "readOnly": true, "description": "MB given to mailboxes" },
    } });
    extend(&mut domain, &domain_settings);
    domain["properties"]["quota"] = quota_out.clone();
    domain["properties"]["default_mailbox_quota"] = quota_out.clone();
    let settings = json!({ "type": "object", "required": ["relay_target_host", "relay_target_port"], "properties": {
        "relay_target_host": { "type": "string" },
        "relay_target_port": { "type": "integer", "minimum": 1, "maximum": 65535 },
        "relay_verify_recipients": { "type": "boolean", "default": false },
    } });
    let transport = json!({ "type": "object", "required": ["_settings"], "properties": {
        "pk": { "type": ["integer", "null"], "readOnly": true },
        "service": { "type": "string", "default": "relay", "maxLength": 30 },
        "next_hop": { "type": ["string", "null"], "readOnly": true },
        "_settings": { "anyOf": [settings, { "type": "string", "description": "the same object as JSON text (what Modoboa's clients send)" }] },
    } });
    let mut relay_write = json!({ "type": "object", "required": ["name", "transport"], "properties": {
        "name": { "type": "string", "maxLength": 100 }, "transport": transport,
    } });
    extend(&mut relay_write, &domain_settings);
    let mut relay_patch = optional(&relay_write);
    relay_patch["properties"]["transport"] = optional(&transport);
    relay_patch["properties"]["transport"]["properties"]["_settings"] =
        json!({ "anyOf": [optional(&settings), { "type": "string" }] });
    let relay = json!({ "type": "object", "properties": {
        "pk": { "type": "integer" }, "name": { "type": "string" }, "enabled": { "type": "boolean" },
        "transport": transport, "enable_dkim": { "type": "boolean" },
        "dkim_key_selector": { "type": "string" }, "dkim_public_key": { "type": "string" },
        "quota": quota_out, "default_mailbox_quota": quota_out,
    } });
    let domain_alias_write = json!({ "type": "object", "required": ["name", "target"], "properties": {
        "name": { "type": "string", "maxLength": 100, "description": "cannot change after creation" },
        "target": { "anyOf": [{ "type": "integer" }, { "type": "string" }], "description": "the target domain's pk (or its name); cannot change after creation" },
        "enabled": { "type": "boolean", "default": true },
    } });
    let mut domain_alias = domain_alias_write.clone();
    domain_alias["properties"]["pk"] = json!({ "type": "integer" });
    domain_alias["properties"]["target"] =
        json!({ "type": "integer", "description": "the target domain's pk" });
    domain_alias.as_object_mut().map(|o| o.remove("required"));
    let role = json!({ "type": "string", "enum": ["SuperAdmins", "Resellers", "DomainAdmins", "SimpleUsers"] });
    // anyOf rather than `"type": ["object", "null"]`: schemathesis' generator trips on the latter.
    let mailbox_write = json!({ "anyOf": [{ "type": "object", "properties": {
        "full_address": { "type": "string", "description": "the mailbox's address: a simple user's username; an administrator's may differ (at creation)" },
        "quota": size,
        "use_domain_quota": { "type": "boolean", "description": "true = the domain's default mailbox quota" },
        "message_limit": message_limit,
        "is_send_only": { "type": "boolean", "description": "sends only: no IMAP/POP3, no delivery (Modoboa 2.x databases)" },
    } }, { "type": "null" }] });
    let account_write = json!({ "type": "object", "required": ["username"], "properties": {
        "username": { "type": "string", "maxLength": 254, "description": "an address for accounts with a mailbox" },
        "password": { "type": "string", "minLength": 8, "maxLength": 128, "writeOnly": true, "description": "required at creation unless random_password; in PUT/PATCH sets a new password" },
        "random_password": { "type": "boolean", "writeOnly": true, "description": "at creation: a random password nobody is told (as Modoboa)" },
        "language": { "type": "string", "enum": crate::store::accounts::LANGUAGES },
        "phone_number": { "type": ["string", "null"], "description": "international form, e.g. +33612345678" },
        "secondary_email": { "type": ["string", "null"] },
        "master_user": { "type": "boolean", "description": "only false: modobox sets up no Dovecot master logins" },
        "first_name": { "type": "string", "maxLength": 30 },
        "last_name": { "type": "string", "maxLength": 30 },
        "is_active": { "type": "boolean", "default": true },
        "role": role,
        "mailbox": mailbox_write,
        "domains": { "type": "array", "items": { "type": "string" }, "description": "domains a domain admin or reseller administers" },
    } });
    let account_put = account_write.clone();
    let account = json!({ "type": "object", "properties": {
        "pk": { "type": "integer" }, "username": { "type": "string" },
        "first_name": { "type": "string" }, "last_name": { "type": "string" },
        "email": { "type": "string" }, "is_active": { "type": "boolean" }, "role": role,
        "master_user": { "type": "boolean", "description": "only in superadmins' answers" },
        "language": { "type": "string" },
        "phone_number": { "type": ["string", "null"] },
        "secondary_email": { "type": ["string", "null"] },
        "tfa_enabled": { "type": "boolean" }, "totp_enabled": { "type": "boolean" },
        "webauthn_enabled": { "type": "boolean" },
        "last_login": { "type": ["string", "null"], "format": "date-time" },
        "date_joined": { "type": "string", "format": "date-time" },
        "mailbox": { "type": ["object", "null"], "properties": {
            "pk": { "type": "integer" }, "full_address": { "type": "string" },
            "quota": quota_out, "use_domain_quota": { "type": "boolean" },
            "message_limit": message_limit, "is_send_only": { "type": "boolean" },
            "sent_messages_in_percent": { "type": ["integer", "null"], "description": "of the daily limit, sent today" },
            "quota_usage": { "type": "integer", "description": "percent of the quota used" },
            "quota_usage_bytes": { "type": "integer" },
        } },
        "domains": { "type": "array", "items": { "type": "string" } },
    } });
    let alias_write = json!({ "type": "object", "required": ["address", "recipients"], "properties": {
        "address": { "type": "string", "description": "local@domain, or @domain for a catch-all; cannot change after creation" },
        "enabled": { "type": "boolean", "default": true },
        "recipients": { "type": "array", "minItems": 1, "items": { "type": "string" }, "description": "mailboxes, aliases, or addresses outside the hosted domains (forwards)" },
        "description": { "type": "string" },
        "expire_at": { "type": ["string", "null"], "format": "date-time" },
    } });
    let mut alias = alias_write.clone();
    alias["properties"]["pk"] = json!({ "type": "integer" });
    alias["properties"]["internal"] = json!({ "type": "boolean", "readOnly": true });
    alias.as_object_mut().map(|o| o.remove("required"));
    let sender_write = json!({ "type": "object", "required": ["address", "mailbox"], "properties": {
        "address": { "type": "string", "description": "an address the mailbox may send as" },
        "mailbox": { "type": "integer", "description": "a mailbox pk (accounts' mailbox.pk)" },
    } });
    let mut sender = sender_write.clone();
    sender["properties"]["pk"] = json!({ "type": "integer" });
    let mut limits = Map::new();
    for n in crate::store::access::LIMIT_NAMES {
        limits.insert(n.into(), json!({ "type": "integer", "minimum": -1, "maximum": i32::MAX, "description": "-1 unlimited, 0 none" }));
    }
    let resources = json!({ "type": "object", "required": crate::store::access::LIMIT_NAMES, "properties": limits });
    let mut m = Map::new();
    for (k, v) in [
        (
            "Detail",
            json!({ "type": "object", "required": ["detail"], "properties": { "detail": { "type": "string" } } }),
        ),
        (
            "ValidationError",
            json!({ "type": "object", "description": "field name → messages; a nested object's fields as a nested object of the same shape ({\"mailbox\": {\"quota\": [...]}}); non_field_errors for the whole object", "additionalProperties": { "anyOf": [{ "type": "array", "items": { "type": "string" } }, { "type": "object" }] } }),
        ),
        ("DomainPatch", optional(&domain_write)),
        ("DomainWrite", domain_write),
        ("Domain", domain),
        ("RelayDomainWrite", relay_write),
        ("RelayDomainPatch", relay_patch),
        ("RelayDomain", relay),
        ("DomainAliasPatch", optional(&domain_alias_write)),
        ("DomainAliasWrite", domain_alias_write),
        ("DomainAlias", domain_alias),
        ("AccountPatch", optional(&account_write)),
        ("AccountCreate", account_write),
        ("AccountWrite", account_put),
        ("Account", account),
        ("AliasPatch", optional(&alias_write)),
        ("AliasWrite", alias_write),
        ("Alias", alias),
        ("SenderAddressPatch", optional(&sender_write)),
        ("SenderAddressWrite", sender_write),
        ("SenderAddress", sender),
        ("ResourcesPatch", optional(&resources)),
        ("Resources", resources),
        (
            "PasswordChange",
            json!({ "type": "object", "required": ["password", "new_password"], "properties": {
            "password": { "type": "string", "description": "the account's current password" },
            "new_password": { "type": "string", "minLength": 8, "maxLength": 128 },
        } }),
        ),
    ] {
        m.insert(k.into(), v);
    }
    m
}

fn extend(target: &mut Value, props: &Value) {
    if let (Some(t), Some(p)) = (target["properties"].as_object_mut(), props.as_object()) {
        for (k, v) in p {
            t.insert(k.clone(), v.clone());
        }
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/api/v1/openapi.json".into(),
        json!({ "get": { "tags": ["meta"], "operationId": "openapi", "summary": "This document", "security": [], "responses": { "200": { "description": "the OpenAPI document", "content": { "application/json": { "schema": { "type": "object" } } } } } } }),
    );
    collection(
        &mut paths,
        "domains",
        "domains",
        "Domain",
        "DomainWrite",
        "DomainPatch",
        &[("search", "part of the name")],
    );
    collection(
        &mut paths,
        "domainaliases",
        "domain aliases",
        "DomainAlias",
        "DomainAliasWrite",
        "DomainAliasPatch",
        &[
            ("domain", "target domain name"),
            ("search", "part of the name or target"),
        ],
    );
    collection(
        &mut paths,
        "relaydomains",
        "relay domains",
        "RelayDomain",
        "RelayDomainWrite",
        "RelayDomainPatch",
        &[("search", "part of the name")],
    );
    collection(
        &mut paths,
        "accounts",
        "accounts",
        "Account",
        "AccountWrite",
        "AccountPatch",
        &[
            ("domain", "domain of the mailbox"),
            ("search", "terms (split on spaces and commas), each the start of the first name, last name or address, as Modoboa's"),
            (
                "role",
                "SuperAdmins, Resellers, DomainAdmins or SimpleUsers",
            ),
        ],
    );
    // Creation needs the password; PUT does not.
    paths["/api/v1/accounts/"]["post"]["requestBody"] = body("AccountCreate");
    collection(
        &mut paths,
        "aliases",
        "aliases",
        "Alias",
        "AliasWrite",
        "AliasPatch",
        &[
            ("domain", "domain name"),
            ("search", "part of the address or of a recipient"),
        ],
    );
    collection(
        &mut paths,
        "senderaddresses",
        "sender addresses",
        "SenderAddress",
        "SenderAddressWrite",
        "SenderAddressPatch",
        &[("mailbox", "mailbox pk"), ("search", "part of the address")],
    );
    let mut exists = errors(&["400", "401", "403"]);
    exists.insert("200".into(), answer("whether an account or alias uses the address", json!({ "type": "object", "required": ["exists"], "properties": { "exists": { "type": "boolean" } } })));
    paths.insert(
        "/api/v1/accounts/exists/".into(),
        json!({ "get": { "tags": ["accounts"], "operationId": "accounts_exists", "parameters": [{ "name": "email", "in": "query", "required": true, "schema": { "type": "string" } }], "responses": exists } }),
    );
    let mut pw = errors(&["400", "401", "404", "415"]);
    pw.insert(
        "200".into(),
        json!({ "description": "changed (an empty body, as Modoboa answers)" }),
    );
    paths.insert(
        "/api/v1/accounts/{pk}/password/".into(),
        json!({ "parameters": [pk_param()], "put": { "tags": ["accounts"], "operationId": "accounts_password", "summary": "Change a password, proving the current one", "requestBody": body("PasswordChange"), "responses": pw } }),
    );
    let mut get_resp = errors(&["401", "403", "404"]);
    get_resp.insert("200".into(), answer("the limits", r("Resources")));
    let mut put_resp = errors(&["400", "401", "403", "404", "415"]);
    put_resp.insert(
        "200".into(),
        answer("the limits as changed", r("Resources")),
    );
    paths.insert(
        "/api/v1/resources/{pk}/".into(),
        json!({ "parameters": [pk_param()],
            "get": { "tags": ["resources"], "operationId": "resources_read", "summary": "Limits of a reseller or domain admin (pk = its account)", "responses": get_resp },
            "put": { "tags": ["resources"], "operationId": "resources_update", "requestBody": body("Resources"), "responses": put_resp.clone() },
            "patch": { "tags": ["resources"], "operationId": "resources_partial_update", "requestBody": body("ResourcesPatch"), "responses": put_resp },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "modobox API (Modoboa-compatible REST API v1)",
            "version": "1.0",
            "description": "Every call needs the header `Authorization: Token <key>` (`modobox token create USERNAME`). Results are limited to the objects the token's user may access: others answer 404. Invalid input answers 400 with {\"field\": [\"message\"]} and changes nothing.",
        },
        "servers": [{ "url": "/" }],
        "security": [{ "TokenAuth": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "TokenAuth": { "type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>`" } },
            "schemas": schemas(),
        },
    })
}
