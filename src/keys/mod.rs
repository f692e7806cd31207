//! Keys and certificates: DKIM keys (`dkim`: RSA keys and their DNS values; `dkim_files`: key
//! files and OpenDKIM's file tables) and TLS certificates (`tls`: self-signed, inspection).

pub mod acme;
pub mod dkim;
pub mod dkim_files;
pub mod dkim_verify;
pub mod mobileconfig;
pub mod tls;
