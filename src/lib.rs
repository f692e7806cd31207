//! modobox as a library: the binary (`main.rs`) and the integration tests use these modules.

pub mod backup;
pub mod cli;
pub mod config;
pub mod distro;
pub mod dns;
pub mod fault;
pub mod health;
pub mod image;
pub mod install;
pub mod jobs;
pub mod keys;
pub mod milter;
pub mod names;
pub mod password;
pub mod policy;
pub mod render;
pub mod reports;
pub mod secrets;
pub mod service;
pub mod stats;
pub mod store;
pub mod supervisor;
pub mod system;
pub mod upgrade;
pub mod web;
