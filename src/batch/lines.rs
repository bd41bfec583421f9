//! Reading the lines of one part of a file as a stream of chunks: skip the line that began before
//! the part (it belongs to the previous worker), then yield every line that starts before the
//! part's end, reading past the end to finish the last one.

use anyhow::Result;
use futures::StreamExt;

use super::split::Part;

/// Calls `emit` with every non-blank line of `part`, in order.
pub async fn for_each_line(part: &Part, mut emit: impl FnMut(String) -> Result<()>) -> Result<()> {
    // Start one byte early: if that byte ends a line, the part begins on a line start.
    let read_start = part.start.saturating_sub(1);
    let mut skipping = part.start > 0;
    let mut pos = read_start;
    let mut line_start = part.start;
    let mut pending: Vec<u8> = Vec::new();
    let mut stream = part.object.location.read_from(read_start).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let end = pos + i as u64 + 1;
                    if skipping {
                        skipping = false;
                    } else {
                        pending.extend_from_slice(&rest[..i]);
                        emit_line(&mut pending, &mut emit)?;
                    }
                    pending.clear();
                    rest = &rest[i + 1..];
                    pos = end;
                    line_start = end;
                    if line_start >= part.end {
                        return Ok(());
                    }
                }
                None => {
                    if !skipping {
                        pending.extend_from_slice(rest);
                    }
                    pos += rest.len() as u64;
                    rest = &[];
                }
            }
        }
    }
    if !skipping && line_start < part.end {
        emit_line(&mut pending, &mut emit)?;
    }
    Ok(())
}

fn emit_line(bytes: &mut Vec<u8>, emit: &mut impl FnMut(String) -> Result<()>) -> Result<()> {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let line = String::from_utf8_lossy(bytes).into_owned();
    emit(line)
}

#[cfg(test)]
mod tests {
    use super::super::split::parts;
    use super::*;
    use crate::storage::remote::{Location, Object};

    #[test]
    fn every_line_read_once_for_any_worker_count() {
        let dir = tempfile::tempdir().unwrap();
        let text_a = "l1\nline-2\n\nl4 with spaces\n";
        let text_b = "m1\nm2 no newline at end";
        std::fs::write(dir.path().join("a"), text_a).unwrap();
        std::fs::write(dir.path().join("b"), text_b).unwrap();
        let objects: Vec<Object> = ["a", "b"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                Object {
                    location: crate::storage::remote::open(p.to_str().unwrap()).unwrap(),
                    size: std::fs::metadata(&p).unwrap().len(),
                }
            })
            .collect();
        let _: Option<Location> = None;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for count in 1..=7 {
            let mut all = Vec::new();
            for index in 0..count {
                for part in parts(&objects, index, count) {
                    rt.block_on(for_each_line(&part, |l| {
                        all.push(l);
                        Ok(())
                    }))
                    .unwrap();
                }
            }
            assert_eq!(
                all,
                [
                    "l1",
                    "line-2",
                    "l4 with spaces",
                    "m1",
                    "m2 no newline at end"
                ],
                "{count} workers"
            );
        }
    }
}
