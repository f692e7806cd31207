//! Named steps of a long scenario: a failure inside a step panics with the step's name first,
//! so the report says which part of the scenario broke, not only which line.
#![allow(dead_code, unused_macros, unused_imports)]

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `future`; a panic inside it panics again as "step `name`: <the first message>".
pub async fn run<T>(name: &str, future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx: &mut Context<'_>| poll_naming_panics(name, future.as_mut(), cx)).await
}

fn poll_naming_panics<T>(
    name: &str,
    future: Pin<&mut impl Future<Output = T>>,
    cx: &mut Context<'_>,
) -> Poll<T> {
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(poll) => poll,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            match message {
                Some(message) => panic!("step `{name}`: {message}"),
                None => resume_unwind(payload),
            }
        }
    }
}

/// `step!(some_step(&ctx))` runs the step under its own function name.
macro_rules! step {
    ($step:ident ( $($arg:expr),* $(,)? )) => {
        $crate::common::steps::run(stringify!($step), $step($($arg),*)).await
    };
}
pub(crate) use step;
