//! Periodic jobs (Modoboa's cron jobs). Local stub: the scheduler and the other jobs live on
//! another branch; the merge reconciles this file.

pub mod check_mx;
pub mod public_api;
