//! Deterministic division of the input among `n` workers: the inputs are laid end to end and cut
//! into `n` equal byte ranges; a line belongs to the worker whose range holds its first byte.
//! Every worker computes the same cut from the same listing, so `n` processes on `n` machines
//! read disjoint lines and together read every line once.

use crate::storage::remote::Object;

/// The part of one input file a worker reads: lines starting in `[start, end)`.
#[derive(Debug, Clone)]
pub struct Part {
    pub object: Object,
    /// The object's index among the job's inputs.
    pub file: usize,
    pub start: u64,
    pub end: u64,
}

/// The parts of `objects` (in order) for worker `index` of `count`.
pub fn parts(objects: &[Object], index: usize, count: usize) -> Vec<Part> {
    let total: u64 = objects.iter().map(|o| o.size).sum();
    let cut = |i: usize| (total as u128 * i as u128 / count as u128) as u64;
    let (lo, hi) = (cut(index), cut(index + 1));
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (file, object) in objects.iter().enumerate() {
        let (fs, fe) = (offset, offset + object.size);
        offset = fe;
        let (s, e) = (lo.max(fs), hi.min(fe));
        if s < e {
            out.push(Part {
                object: object.clone(),
                file,
                start: s - fs,
                end: e - fs,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_byte_once() {
        let store: std::sync::Arc<dyn object_store::ObjectStore> =
            std::sync::Arc::new(object_store::memory::InMemory::new());
        let objects: Vec<Object> = [10u64, 0, 7, 30]
            .iter()
            .enumerate()
            .map(|(i, &size)| Object {
                location: crate::storage::remote::Location {
                    store: store.clone(),
                    path: format!("f{i}").into(),
                    uri: format!("mem://f{i}"),
                },
                size,
            })
            .collect();
        for count in 1..=5 {
            let mut covered = vec![0u32; 47];
            for index in 0..count {
                for p in parts(&objects, index, count) {
                    let base: u64 = objects
                        .iter()
                        .take_while(|o| o.location.uri != p.object.location.uri)
                        .map(|o| o.size)
                        .sum();
                    for b in p.start..p.end {
                        covered[(base + b) as usize] += 1;
                    }
                }
            }
            assert!(
                covered.iter().all(|&c| c == 1),
                "count {count}: {covered:?}"
            );
        }
    }
}
