//! Work spread over the machine's cores with scoped threads: a slice mapped item by item, each
//! thread taking the next item as soon as it is free, so items of uneven cost balance out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One thread per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` applied to every item on all cores: the results in the items' order, or an error of one
/// of them (the items not started yet are then skipped). A panic in `f` is passed on.
pub fn try_map<T, R, E>(items: &[T], f: impl Fn(&T) -> Result<R, E> + Sync) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<Vec<(usize, R)>, E> {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            match f(item) {
                Ok(r) => done.push((i, r)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(done)
    };
    let workers = threads().min(items.len());
    let parts: Vec<Result<Vec<(usize, R)>, E>> = if workers <= 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for part in parts {
        for (i, r) in part? {
            slots[i] = Some(r);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_and_stops_at_an_error() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = try_map(&items, |n| Ok::<_, String>(n * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let failed = try_map(&items, |n| {
            if *n == 500 {
                Err(format!("item {n}"))
            } else {
                Ok(*n)
            }
        });
        assert_eq!(failed, Err("item 500".to_string()));
        assert_eq!(try_map(&[] as &[u32], |n| Ok::<_, ()>(*n)), Ok(vec![]));
    }
}
