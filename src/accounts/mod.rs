//! Account rules that are not SQL: Dovecot-compatible password schemes.

pub mod password;
